"""flowrra-ui-fastapi: mount Flowrra's monitoring UI into a FastAPI app.

::

    from fastapi import Depends, FastAPI
    from flowrra_ui_fastapi import create_router

    api = FastAPI()
    api.include_router(create_router(app, dependencies=[Depends(staff_only)]),
                       prefix="/flowrra")

The router holds routing, auth and WebSocket wiring only; every endpoint's behaviour and
access rule lives in :mod:`flowrra_ui.service`. Dependencies typed on ``HTTPConnection``
cover the WebSocket (``/ws``) too. Without ``dependencies`` the UI is private: the page
says how to add auth and the API answers 401, unless ``public=True`` opens it (read-only,
with a warning in the log).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.params import Depends
from fastapi.responses import JSONResponse, Response
from flowrra_ui import INDEX, ROUTES, Route, UIService, dispatch, serve_asset
from flowrra_ui.live import DROPPED_CODE, stream_text
from flowrra_ui.redaction import Redact, redact_secrets
from flowrra_ui.service import openapi_operation, websocket_refusal

from flowrra_ui_fastapi._version import __version__

if TYPE_CHECKING:
    from flowrra.app import Flowrra

__all__ = ["__version__", "create_router"]

#: Seconds to close a WebSocket the server ends (a client too slow may not read it).
CLOSE_TIMEOUT = 5.0


def _endpoint(service: UIService, route: Route) -> Any:
    async def endpoint(request: Request) -> JSONResponse:
        path = route.path.format(**request.path_params)
        status, body = await dispatch(
            service,
            request.method,
            path,
            dict(request.query_params),
            await request.body(),
            dict(request.headers),
        )
        return JSONResponse(body, status_code=status)

    endpoint.__name__ = (
        "flowrra_"
        + route.method.lower()
        + route.path.replace("/", "_").replace("{", "").replace("}", "")
    )
    return endpoint


def _asset(name: str, request: Request) -> Response:
    status, headers, body = serve_asset(name, request.headers.get("if-none-match"))
    return Response(body, status_code=status, headers=headers)


async def _refuse(websocket: WebSocket, status: int, message: str) -> None:
    """Refuse the handshake: with an HTTP answer where the server can send one (uvicorn,
    hypercorn), else by closing it (the client sees 403)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse({"error": message}, status))
    else:
        await websocket.close(code=1008)


def create_router(
    app: Flowrra,
    *,
    dependencies: Sequence[Depends] | None = None,
    public: bool = False,
    writable: bool | None = None,
    redact: Redact | None = redact_secrets,
    tags: Sequence[str] = ("flowrra",),
) -> APIRouter:
    """An ``APIRouter`` serving the UI for ``app``: the dashboard page (``/``, with its files
    under ``/static/``), the JSON API (``/api/...``) and live events (``/ws``).

    ``dependencies`` guard every route, the WebSocket included (your auth: type them on
    ``HTTPConnection``). Without them the UI is private (no task data; the page says how
    to add auth), unless ``public=True`` opens it to anyone who can reach it (a warning is
    logged). Changes (retries, schedules) are accepted on a guarded UI only, unless
    ``writable`` says otherwise. ``redact`` masks what is shown
    (:func:`flowrra_ui.redact_secrets` by default; ``None`` shows everything). Each call
    builds its own state, so the router can be mounted twice."""
    service = UIService(
        app, guarded=bool(dependencies), public=public, writable=writable, redact=redact
    )
    router = APIRouter(dependencies=list(dependencies or []), tags=list(tags))
    for route in ROUTES:
        router.add_api_route(
            route.path,
            _endpoint(service, route),
            methods=[route.method],
            summary=route.summary,
            openapi_extra=openapi_operation(route),
            response_class=JSONResponse,
        )

    async def page(request: Request) -> Response:
        return _asset(INDEX, request)

    async def static(name: str, request: Request) -> Response:
        return _asset(name, request)

    router.add_api_route("/", page, methods=["GET"], include_in_schema=False, name="flowrra_ui")
    router.add_api_route(
        "/static/{name}", static, methods=["GET"], include_in_schema=False, name="flowrra_static"
    )

    async def live(websocket: WebSocket) -> None:
        refusal = websocket_refusal(service, dict(websocket.headers))
        if refusal is not None:
            await _refuse(websocket, *refusal)
            return
        await websocket.accept()

        async def receive() -> Any:
            try:
                return await websocket.receive_text()
            except WebSocketDisconnect:
                return None

        ended = await stream_text(service, websocket.send_text, receive)
        if ended is not None:  # no subscription, or a client too slow: say why
            with contextlib.suppress(Exception):
                await asyncio.wait_for(websocket.close(DROPPED_CODE, ended), CLOSE_TIMEOUT)

    router.add_api_websocket_route("/ws", live, name="flowrra_live")
    return router
