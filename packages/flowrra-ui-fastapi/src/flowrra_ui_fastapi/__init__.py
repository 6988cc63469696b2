"""flowrra-ui-fastapi: mount Flowrra's monitoring UI into a FastAPI app.

::

    from fastapi import Depends, FastAPI
    from flowrra_ui_fastapi import create_router

    api = FastAPI()
    api.include_router(create_router(app, dependencies=[Depends(require_admin)]),
                       prefix="/flowrra")

The router holds routing, auth and WebSocket wiring only; every endpoint's behaviour
lives in :mod:`flowrra_ui.service`. Without ``dependencies`` the UI is read-only (writes
answer 403 and say how to enable them). Dependencies typed on ``HTTPConnection`` cover the
WebSocket (``/ws``) too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.params import Depends
from fastapi.responses import JSONResponse, Response
from flowrra_ui import INDEX, ROUTES, Route, UIService, dispatch, serve_asset
from flowrra_ui.service import openapi_operation, stream_events

from flowrra_ui_fastapi._version import __version__

__all__ = ["__version__", "create_router"]


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


def create_router(
    app: Any,
    *,
    dependencies: Sequence[Depends] | None = None,
    writable: bool | None = None,
    tags: Sequence[str] = ("flowrra",),
) -> APIRouter:
    """An ``APIRouter`` serving the UI for ``app``: the dashboard page (``/``, with its files
    under ``/static/``), the JSON API (``/api/...``) and live events (``/ws``). ``dependencies``
    guard every route (your auth); the UI accepts changes (retries, schedules) only when some
    are given, unless ``writable`` says otherwise. Each call builds its own state, so the router
    can be mounted twice."""
    service = UIService(app, writable=bool(dependencies) if writable is None else writable)
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
        await websocket.accept()

        async def receive() -> Any:
            try:
                return await websocket.receive_text()
            except WebSocketDisconnect:
                return None

        async def send(message: dict[str, Any]) -> None:
            await websocket.send_json(message)

        await stream_events(service, send, receive)

    router.add_api_websocket_route("/ws", live, name="flowrra_live")
    return router
