"""``from flowrra.ui.django import get_urls``, as in flowrra 0.1.8:
``path("flowrra/", include(get_urls(app)))`` with ``flowrra-ui-django``
(``pip install flowrra-ui-django``; add ``"flowrra_ui_django"`` to ``INSTALLED_APPS``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowrra.plugins import EXTENSIONS, find_plugin

if TYPE_CHECKING:
    from flowrra.app import Flowrra

__all__ = ["get_urls"]


def get_urls(app: Flowrra, **options: Any) -> Any:
    """See ``flowrra_ui_django.get_urls``."""
    return find_plugin(EXTENSIONS, "ui_django")(app, **options)
