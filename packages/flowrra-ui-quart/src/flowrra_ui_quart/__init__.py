"""flowrra-ui-quart: mount Flowrra's monitoring UI into a Quart app.

::

    from quart import Quart, request
    from flowrra_ui_quart import create_blueprint

    web = Quart(__name__)
    web.register_blueprint(
        create_blueprint(app, auth=lambda: request.headers.get("X-Token") == TOKEN),
        url_prefix="/flowrra",
    )

The blueprint holds routing, auth and WebSocket wiring only; every endpoint's behaviour
lives in :mod:`flowrra_ui.service`. ``auth`` is called before every request *and* before
the WebSocket is accepted (Quart's ``before_request`` and ``before_websocket``); it reads
``quart.request`` or ``quart.websocket`` and returns whether to let it through. Without
it the UI is read-only.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from flowrra_ui import INDEX, ROUTES, Route, UIService, dispatch, serve_asset
from flowrra_ui.service import stream_events
from quart import Blueprint, Response, request, websocket

from flowrra_ui_quart._version import __version__

__all__ = ["__version__", "create_blueprint"]

Auth = Callable[[], bool | Awaitable[bool]]


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
    app: Any,
    *,
    auth: Auth | None = None,
    writable: bool | None = None,
    name: str = "flowrra_ui",
) -> Blueprint:
    """A Quart ``Blueprint`` serving the UI for ``app``: the dashboard page (``/``, with its
    files under ``/static/``), the JSON API (``/api/...``) and live events (``/ws``). Changes
    (retries, schedules) are accepted only when ``auth`` is given, unless ``writable`` says
    otherwise. Each call builds its own state; give each mount its own ``name``."""
    service = UIService(app, writable=auth is not None if writable is None else writable)
    blueprint = Blueprint(name, __name__)

    if auth is not None:

        async def check() -> Response | None:
            allowed = auth()
            if inspect.isawaitable(allowed):
                allowed = await allowed
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
    async def live() -> None:
        await websocket.accept()

        async def send(message: dict[str, Any]) -> None:
            await websocket.send(json.dumps(message))

        # Quart cancels this handler when the client goes away.
        await stream_events(service, send, websocket.receive)

    return blueprint
