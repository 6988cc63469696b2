"""``from flowrra.ui.flask import create_blueprint``, as in flowrra 0.1.8 (which meant Quart
for live updates): the blueprint of ``flowrra-ui-quart`` (``pip install flowrra-ui-quart``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowrra.plugins import EXTENSIONS, find_plugin

if TYPE_CHECKING:
    from flowrra.app import Flowrra

__all__ = ["create_blueprint"]


def create_blueprint(app: Flowrra, **options: Any) -> Any:
    """See ``flowrra_ui_quart.create_blueprint``."""
    return find_plugin(EXTENSIONS, "ui_quart")(app, **options)
