"""The FastAPI adapter: the shared UI contract through an ASGI client, the OpenAPI
document, and live events over a real WebSocket served by uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from fastapi import Depends, FastAPI, HTTPException
from fastapi.requests import HTTPConnection
from flowrra_ui.testing import Client, UIApiContract, decoded_body, make_ui_app, running_ui_app
from flowrra_ui_fastapi import create_router

from flowrra import Flowrra

TOKEN = "let-me-in"


def require_token(connection: HTTPConnection) -> None:
    supplied = connection.headers.get("x-token") or connection.query_params.get("token")
    if supplied != TOKEN:
        raise HTTPException(status_code=401, detail="token required")


def build(ui_app: Flowrra) -> FastAPI:
    api = FastAPI()
    api.include_router(
        create_router(ui_app, dependencies=[Depends(require_token)]), prefix="/flowrra"
    )
    api.include_router(create_router(ui_app), prefix="/open")  # no auth hook: read-only
    return api


@pytest.fixture
async def ui_app(tmp_path: Path) -> AsyncIterator[Flowrra]:
    async with running_ui_app(tmp_path) as app:
        yield app


def _client(api: FastAPI, prefix: str, headers: dict[str, str]) -> Client:
    async def call(
        method: str, path: str, body: Any, extra: dict[str, str] | None
    ) -> tuple[int, Any]:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.request(
                method, prefix + path, json=body, headers={**headers, **(extra or {})}
            )
        return response.status_code, decoded_body(
            response.headers.get("content-type"), response.content
        )

    return call


@pytest.fixture
def api(ui_app: Flowrra) -> FastAPI:
    return build(ui_app)


@pytest.fixture
def client(api: FastAPI) -> Client:
    return _client(api, "/flowrra", {"x-token": TOKEN})


@pytest.fixture
def stranger(api: FastAPI) -> Client:
    return _client(api, "/flowrra", {})


@pytest.fixture
def readonly(api: FastAPI) -> Client:
    return _client(api, "/open", {})


class TestFastAPIContract(UIApiContract):
    pass


def test_openapi_lists_every_endpoint_with_its_schema(tmp_path: Path) -> None:
    spec = build(make_ui_app(tmp_path)).openapi()
    paths = spec["paths"]
    for path, method in [
        ("/flowrra/api/stats", "get"),
        ("/flowrra/api/health", "get"),
        ("/flowrra/api/tasks", "get"),
        ("/flowrra/api/tasks/{name}", "get"),
        ("/flowrra/api/executions", "get"),
        ("/flowrra/api/executions/{task_id}", "get"),
        ("/flowrra/api/executions/{task_id}/retry", "post"),
        ("/flowrra/api/schedules", "get"),
        ("/flowrra/api/schedules/cron", "post"),
        ("/flowrra/api/schedules/interval", "post"),
        ("/flowrra/api/schedules/once", "post"),
        ("/flowrra/api/schedules/{schedule_id}/enable", "put"),
        ("/flowrra/api/schedules/{schedule_id}/disable", "put"),
        ("/flowrra/api/schedules/{schedule_id}", "delete"),
    ]:
        assert method in paths[path], path
    cron = paths["/flowrra/api/schedules/cron"]["post"]
    body = cron["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["task_name", "cron"] and "timezone" in body["properties"]
    listing = paths["/flowrra/api/executions"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"status", "task", "limit", "offset"}
    assert "404" in paths["/flowrra/api/tasks/{name}"]["get"]["responses"]


@contextlib.asynccontextmanager
async def serve(api: FastAPI) -> AsyncIterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
    running = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        await running


async def test_live_events_over_a_real_websocket(ui_app: Flowrra, api: FastAPI) -> None:
    async with serve(api) as port:
        url = f"ws://127.0.0.1:{port}/flowrra/ws?token={TOKEN}"
        async with websockets.connect(url) as ws:
            assert json.loads(await ws.recv()) == {"type": "ready"}  # subscribed from here
            task_id = await ui_app.submit("add", 2, 2)
            seen = []
            async with asyncio.timeout(10):
                while "success" not in seen:
                    event = json.loads(await ws.recv())
                    assert event["task_id"] == task_id and event["task_name"] == "add"
                    seen.append(event["status"])
        assert seen == ["pending", "running", "success"]

        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(f"ws://127.0.0.1:{port}/flowrra/ws"):
                pass  # no token: refused before the handshake completes


def test_the_0_1_8_import_path_gives_the_same_router(tmp_path: Path) -> None:
    from fastapi.routing import APIRouter

    from flowrra.ui.fastapi import create_router as create_router_018

    router = create_router_018(make_ui_app(tmp_path))
    assert isinstance(router, APIRouter)
    assert {r.path for r in router.routes} >= {"/api/stats", "/ws"}  # type: ignore[attr-defined]
