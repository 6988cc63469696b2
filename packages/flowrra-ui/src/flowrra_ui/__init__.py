"""flowrra-ui: the monitoring UI of Flowrra, without a web framework.

This distribution holds what every adapter shares: the JSON API and its access rules
(:mod:`flowrra_ui.service`: :class:`UIService`, the :data:`ROUTES` table, :func:`dispatch`
and :func:`websocket_refusal`), what is masked of the data shown
(:mod:`flowrra_ui.redaction`: :func:`redact_secrets`, :func:`redact_keys`) and the dashboard
page with its files (:mod:`flowrra_ui.assets`: :func:`serve_asset`). The FastAPI, Quart and
Django adapters (``flowrra-ui-fastapi``, ``flowrra-ui-quart``, ``flowrra-ui-django``) mount
it; they hold routing, auth and WebSocket wiring only.
"""

from __future__ import annotations

from flowrra_ui._version import __version__
from flowrra_ui.assets import INDEX, serve_asset
from flowrra_ui.redaction import REDACTED, SECRET_KEYS, Redact, redact_keys, redact_secrets
from flowrra_ui.service import (
    PRIVATE,
    ROUTES,
    Access,
    ApiError,
    Route,
    UIService,
    dispatch,
    websocket_refusal,
)

__all__ = [
    "INDEX",
    "PRIVATE",
    "REDACTED",
    "ROUTES",
    "SECRET_KEYS",
    "Access",
    "ApiError",
    "Redact",
    "Route",
    "UIService",
    "__version__",
    "dispatch",
    "redact_keys",
    "redact_secrets",
    "serve_asset",
    "websocket_refusal",
]
