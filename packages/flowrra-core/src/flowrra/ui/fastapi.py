"""``from flowrra.ui.fastapi import create_router``, as in flowrra 0.1.8: the router of
``flowrra-ui-fastapi`` (``pip install flowrra-ui-fastapi``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowrra.plugins import EXTENSIONS, find_plugin

if TYPE_CHECKING:
    from flowrra.app import Flowrra

__all__ = ["create_router"]


def create_router(app: Flowrra, **options: Any) -> Any:
    """See ``flowrra_ui_fastapi.create_router``."""
    return find_plugin(EXTENSIONS, "ui_fastapi")(app, **options)
