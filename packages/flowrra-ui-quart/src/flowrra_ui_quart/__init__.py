"""flowrra-ui-quart: mount Flowrra's monitoring UI into a Quart app.

::

    from quart import Quart, session
    from flowrra_ui_quart import create_blueprint

    web = Quart(__name__)
    web.register_blueprint(
        create_blueprint(app, auth=lambda: session.get("staff") is True),
        url_prefix="/flowrra",
    )

The blueprint holds routing, auth and WebSocket wiring only; every endpoint's behaviour
and access rule lives in :mod:`flowrra_ui.service`. ``auth`` is called before every
request *and* before the WebSocket is accepted (Quart's ``before_request`` and
``before_websocket``); it reads ``quart.request`` or ``quart.websocket`` and returns
whether to let it through, or a response to send instead (a 401 with
``WWW-Authenticate`` for HTTP basic auth, a redirect to your sign-in page). Without it the
UI is private (no task data; the page says how to add auth), unless ``public=True`` opens
it (read-only, with a warning in the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from flowrra_ui import INDEX, ROUTES, Route, UIService, dispatch, serve_asset
from flowrra_ui.live import DROPPED_CODE, stream_text
from flowrra_ui.redaction import Redact, redact_secrets
from flowrra_ui.service import websocket_refusal
from quart import Blueprint, Response, request, websocket

from flowrra_ui_quart._version import __version__

if TYPE_CHECKING:
    from flowrra.app import Flowrra

__all__ = ["Auth", "__version__", "create_blueprint"]

#: Seconds to close a WebSocket the server ends (a client too slow may not read it).
CLOSE_TIMEOUT = 5.0

#: The ``auth`` hook: plain or async, ``() -> bool | Response`` (see the module docs).
Auth = Callable[[], bool | Response | Awaitable[bool | Response]]


def _json(body: Any, status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _view(service: UIService, route: Route) -> Callable[..., Awaitable[Response]]:
    async def view(**params: str) -> Response:
        raw = await request.get_data(as_text=False)
        status, body = await dispatch(
            service,
            request.method,
            route.path.format(**params),
            dict(request.args),
            raw if isinstance(raw, bytes) else raw.encode(),
            dict(request.headers),
        )
        return _json(body, status)

    return view


def _asset(name: str) -> Response:
    status, headers, body = serve_asset(name, request.headers.get("If-None-Match"))
    return Response(body, status=status, headers=headers)


def create_blueprint(
    app: Flowrra,
    *,
    auth: Auth | None = None,
    public: bool = False,
    writable: bool | None = None,
    redact: Redact | None = redact_secrets,
    name: str = "flowrra_ui",
) -> Blueprint:
    """A Quart ``Blueprint`` serving the UI for ``app``: the dashboard page (``/``, with its
    files under ``/static/``), the JSON API (``/api/...``) and live events (``/ws``).

    ``auth`` guards every request and the WebSocket (see the module docs). Without it the
    UI is private, unless ``public=True`` opens it to anyone who can reach it (a warning is
    logged). Changes (retries, schedules) are accepted on a guarded UI only, unless
    ``writable`` says otherwise. ``redact`` masks what is shown
    (:func:`flowrra_ui.redact_secrets` by default; ``None`` shows everything). Each call
    builds its own state; give each mount its own ``name``."""
    service = UIService(
        app, guarded=auth is not None, public=public, writable=writable, redact=redact
    )
    blueprint = Blueprint(name, __name__)

    if auth is not None:

        async def check() -> Response | None:
            allowed = auth()
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if isinstance(allowed, Response):
                return allowed  # the hook's own answer: a challenge, a redirect
            if not allowed:
                return _json({"error": "authentication required"}, 401)
            return None

        blueprint.before_request(check)
        blueprint.before_websocket(check)  # rejected before the handshake is accepted

    for route in ROUTES:
        rule = re.sub(r"\{(\w+)\}", r"<\1>", route.path)
        endpoint = route.method.lower() + route.path.replace("/", "_").replace("{", "").replace(
            "}", ""
        )
        blueprint.add_url_rule(
            rule, endpoint=endpoint, view_func=_view(service, route), methods=[route.method]
        )

    async def page() -> Response:
        return _asset(INDEX)

    async def static(name: str) -> Response:
        return _asset(name)

    blueprint.add_url_rule("/", endpoint="page", view_func=page, methods=["GET"])
    blueprint.add_url_rule("/static/<name>", endpoint="asset", view_func=static, methods=["GET"])

    @blueprint.websocket("/ws")
    async def live() -> Response | None:
        refusal = websocket_refusal(service, dict(websocket.headers))
        if refusal is not None:
            status, message = refusal
            return _json({"error": message}, status)  # sent instead of accepting
        await websocket.accept()

        # Quart cancels this handler when the client goes away.
        ended = await stream_text(service, websocket.send, websocket.receive)
        if ended is not None:  # no subscription, or a client too slow: say why
            with contextlib.suppress(Exception):
                await asyncio.wait_for(websocket.close(DROPPED_CODE, ended), CLOSE_TIMEOUT)
        return None

    return blueprint
