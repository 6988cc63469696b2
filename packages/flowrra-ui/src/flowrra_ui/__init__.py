"""flowrra-ui: the monitoring UI of Flowrra, without a web framework.

This distribution holds what every adapter shares: the JSON API (:mod:`flowrra_ui.service`:
:class:`UIService`, the :data:`ROUTES` table and :func:`dispatch`) and the dashboard page
with its files (:mod:`flowrra_ui.assets`: :func:`serve_asset`). The FastAPI, Quart and
Django adapters (``flowrra-ui-fastapi``, ``flowrra-ui-quart``, ``flowrra-ui-django``) mount
it; they hold routing, auth and WebSocket wiring only.
"""

from __future__ import annotations

from flowrra_ui._version import __version__
from flowrra_ui.assets import INDEX, serve_asset
from flowrra_ui.service import ROUTES, ApiError, Route, UIService, dispatch

__all__ = [
    "INDEX",
    "ROUTES",
    "ApiError",
    "Route",
    "UIService",
    "__version__",
    "dispatch",
    "serve_asset",
]
