"""The FastAPI adapter: the shared UI contract through an ASGI client (and its WebSocket
rules over a real uvicorn server), the OpenAPI document, and live events over a real
WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from fastapi import Depends, FastAPI, HTTPException
from fastapi.requests import HTTPConnection
from flowrra_ui.testing import (
    SAME_ORIGIN,
    Client,
    LiveSocket,
    RedisMount,
    UIApiContract,
    WebSocketProbe,
    decoded_body,
    frame_events,
    make_ui_app,
    redact_for_tests,
    redis_ui_app,
    running_ui_app,
)
from flowrra_ui_fastapi import create_router

from flowrra import Flowrra

TOKEN = "let-me-in"


def require_token(connection: HTTPConnection) -> None:
    supplied = connection.headers.get("x-token") or connection.query_params.get("token")
    if supplied != TOKEN:
        raise HTTPException(status_code=401, detail="token required")


GUARD = [Depends(require_token)]


def build(ui_app: Flowrra) -> FastAPI:
    """Every mount the contract reads, each under its own prefix."""
    api = FastAPI()
    api.include_router(create_router(ui_app, dependencies=GUARD), prefix="/flowrra")
    api.include_router(create_router(ui_app, public=True), prefix="/open")
    api.include_router(create_router(ui_app), prefix="/private")  # no auth hook
    redacted = create_router(ui_app, dependencies=GUARD, redact=redact_for_tests)
    api.include_router(redacted, prefix="/redacted")
    return api


@pytest.fixture
async def ui_app(tmp_path: Path) -> AsyncIterator[Flowrra]:
    async with running_ui_app(tmp_path) as app:
        yield app


def _headers(base: dict[str, str], extra: dict[str, str] | None) -> dict[str, str]:
    given = {name.lower() for name in extra or {}}
    return {**{k: v for k, v in base.items() if k.lower() not in given}, **(extra or {})}


def _client(api: FastAPI, prefix: str, headers: dict[str, str]) -> Client:
    async def call(
        method: str, path: str, body: Any, extra: dict[str, str] | None
    ) -> tuple[int, Any]:
        base = dict(headers)
        options: dict[str, Any] = {"json": body} if body is not None else {}
        if body is None and method != "GET":  # as the page sends a bodiless write
            base["Content-Type"] = "application/json"
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.request(
                method, prefix + path, headers=_headers(base, extra), **options
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


@pytest.fixture
def private(api: FastAPI) -> Client:
    return _client(api, "/private", {})


@pytest.fixture
def redacted(api: FastAPI) -> Client:
    return _client(api, "/redacted", {"x-token": TOKEN})


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


MOUNTS = {
    "client": f"/flowrra/ws?token={TOKEN}",
    "stranger": "/flowrra/ws",
    "readonly": "/open/ws",
    "private": "/private/ws",
}


@pytest.fixture
async def websocket(api: FastAPI) -> AsyncIterator[WebSocketProbe]:
    async with serve(api) as port:

        async def probe(mount: str, origin: str | None) -> Any:
            if origin == SAME_ORIGIN:
                origin = f"http://127.0.0.1:{port}"
            url = f"ws://127.0.0.1:{port}{MOUNTS[mount]}"
            try:
                async with websockets.connect(url, origin=origin) as ws:  # type: ignore[arg-type]
                    async with asyncio.timeout(10):
                        return json.loads(await ws.recv())
            except websockets.exceptions.InvalidStatus:
                return None

        yield probe


@pytest.fixture
async def live(api: FastAPI) -> AsyncIterator[LiveSocket]:
    async with serve(api) as port:

        @contextlib.asynccontextmanager
        async def connect() -> AsyncIterator[Any]:
            url = f"ws://127.0.0.1:{port}{MOUNTS['client']}"
            async with websockets.connect(url) as ws:

                async def receive() -> Any:
                    return json.loads(await ws.recv())

                yield receive

        yield connect


@pytest.fixture
async def redis_ui(tmp_path: Path) -> AsyncIterator[RedisMount]:
    async with redis_ui_app(tmp_path / "redis") as (app, url):
        yield RedisMount(app, _client(build(app), "/flowrra", {"x-token": TOKEN}), url)


class TestFastAPIContract(UIApiContract):
    pass


def test_openapi_lists_every_endpoint_with_its_schema(tmp_path: Path) -> None:
    spec = build(make_ui_app(tmp_path)).openapi()
    paths = spec["paths"]
    for path, method in [
        ("/flowrra/api/stats", "get"),
        ("/flowrra/api/meta", "get"),
        ("/flowrra/api/workers", "get"),
        ("/flowrra/api/queues", "get"),
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
        ("/flowrra/api/schedules/{schedule_id}/run", "post"),
        ("/flowrra/api/dead-letters", "get"),
        ("/flowrra/api/dead-letters/requeue", "post"),
        ("/flowrra/api/dead-letters/purge", "post"),
    ]:
        assert method in paths[path], path
    cron = paths["/flowrra/api/schedules/cron"]["post"]
    body = cron["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["task_name", "cron"] and "timezone" in body["properties"]
    listing = paths["/flowrra/api/executions"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"status", "task", "limit", "cursor"}
    assert {"401", "404"} <= set(paths["/flowrra/api/tasks/{name}"]["get"]["responses"])
    assert "415" in cron["responses"]
    purge = paths["/flowrra/api/dead-letters/purge"]["post"]
    assert "501" in purge["responses"]
    ids = purge["requestBody"]["content"]["application/json"]["schema"]
    assert set(ids["properties"]) == {"ids", "all"}


async def test_live_events_over_a_real_websocket(ui_app: Flowrra, api: FastAPI) -> None:
    async with serve(api) as port:
        url = f"ws://127.0.0.1:{port}/flowrra/ws?token={TOKEN}"
        async with websockets.connect(url) as ws:
            assert json.loads(await ws.recv()) == {"type": "ready"}  # subscribed from here
            task_id = await ui_app.submit("add", 2, 2)
            seen = []
            async with asyncio.timeout(10):
                while "success" not in seen:
                    for event in frame_events(json.loads(await ws.recv())):
                        assert event["task_id"] == task_id and event["task_name"] == "add"
                        seen.append(event["status"])
        assert seen == ["pending", "running", "success"]

        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(f"ws://127.0.0.1:{port}/flowrra/ws"):
                pass  # no token: refused before the handshake completes


def test_public_true_opens_the_ui_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flowrra.ui"):
        create_router(make_ui_app(tmp_path), dependencies=GUARD)
        create_router(make_ui_app(tmp_path))
    assert caplog.records == []  # guarded, or private: nothing to warn about
    with caplog.at_level(logging.WARNING, logger="flowrra.ui"):
        create_router(make_ui_app(tmp_path), public=True)
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING and "public" in warning.getMessage()


async def test_the_0_1_8_import_path_gives_the_same_router(ui_app: Flowrra) -> None:
    from fastapi.routing import APIRouter

    from flowrra.ui.fastapi import create_router as create_router_018

    router = create_router_018(ui_app)  # the 0.1.8 call: it mounts, and is private
    assert isinstance(router, APIRouter)
    assert {r.path for r in router.routes} >= {"/api/stats", "/ws"}  # type: ignore[attr-defined]
    api = FastAPI()
    api.include_router(router, prefix="/flowrra")
    anyone = _client(api, "/flowrra", {})
    assert (await anyone("GET", "/", None, None))[0] == 200
    status, stats = await anyone("GET", "/api/stats", None, None)
    assert status == 401 and "private" in stats["error"]


async def test_a_hundred_websockets_on_a_pool_of_ten(tmp_path: Path) -> None:
    """One event subscription for every WebSocket of the process: 100 pages open on a
    Redis pool of 10 connections all get every event, and the list API still answers."""
    import redis.asyncio as aioredis
    from flowrra_ui.testing import redis_test_url

    base = redis_test_url()
    url = f"{base}?prefix=flowrra-ui-fastapi-{uuid.uuid4().hex[:8]}"
    app = Flowrra.from_urls(broker=url, backend=url, max_connections=10)

    @app.task()
    async def add(a: int, b: int) -> int:
        return a + b

    api = FastAPI()
    api.include_router(create_router(app, dependencies=GUARD), prefix="/flowrra")
    async with app.producer(), serve(api) as port:
        target = f"ws://127.0.0.1:{port}/flowrra/ws?token={TOKEN}"
        async with contextlib.AsyncExitStack() as stack:
            sockets = await asyncio.gather(
                *(stack.enter_async_context(websockets.connect(target)) for _ in range(100))
            )
            async with asyncio.timeout(30):
                for ws in sockets:
                    assert json.loads(await ws.recv()) == {"type": "ready"}
            watcher = aioredis.Redis.from_url(base)
            [(_, subscribed)] = await watcher.pubsub_numsub(app.backend.keys.events)  # type: ignore[attr-defined]
            await watcher.aclose()
            assert subscribed == 1

            task_id = await app.submit("add", 1, 2)  # no worker: its "pending" event
            async with asyncio.timeout(30):
                for ws in sockets:
                    event = json.loads(await ws.recv())
                    assert event["task_id"] == task_id and event["status"] == "pending"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                answer = await http.get(
                    "/flowrra/api/executions", headers={"x-token": TOKEN}, timeout=10
                )
            assert answer.status_code == 200
            assert task_id in [item["task_id"] for item in answer.json()["items"]]
    await app.close()
    cleaner = aioredis.Redis.from_url(base)
    keys = [key async for key in cleaner.scan_iter(match=f"*{url.rsplit('=', 1)[1]}*")]
    if keys:
        await cleaner.delete(*keys)
    await cleaner.aclose()
