"""The Quart adapter: the shared UI contract through Quart's test client, auth before
requests and before the WebSocket, and live events over the WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
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
from flowrra_ui_quart import create_blueprint
from quart import Quart, Response, request, websocket

from flowrra import Flowrra

TOKEN = "let-me-in"


def is_admin() -> bool:
    if websocket:  # the WebSocket handshake: a token in the query string
        return websocket.args.get("token") == TOKEN
    return request.headers.get("X-Token") == TOKEN


def build(ui_app: Flowrra) -> Quart:
    """Every mount the contract reads, each under its own prefix."""
    web = Quart(__name__)
    web.register_blueprint(create_blueprint(ui_app, auth=is_admin), url_prefix="/flowrra")
    web.register_blueprint(
        create_blueprint(ui_app, public=True, name="open_ui"), url_prefix="/open"
    )
    web.register_blueprint(create_blueprint(ui_app, name="private_ui"), url_prefix="/private")
    redacted = create_blueprint(ui_app, auth=is_admin, redact=redact_for_tests, name="redacted")
    web.register_blueprint(redacted, url_prefix="/redacted")
    return web


@pytest.fixture
async def ui_app(tmp_path: Path) -> AsyncIterator[Flowrra]:
    async with running_ui_app(tmp_path) as app:
        yield app


@pytest.fixture
def web(ui_app: Flowrra) -> Quart:
    return build(ui_app)


def _headers(base: dict[str, str], extra: dict[str, str] | None) -> dict[str, str]:
    given = {name.lower() for name in extra or {}}
    return {**{k: v for k, v in base.items() if k.lower() not in given}, **(extra or {})}


def _client(web: Quart, prefix: str, headers: dict[str, str]) -> Client:
    async def call(
        method: str, path: str, body: Any, extra: dict[str, str] | None
    ) -> tuple[int, Any]:
        client = web.test_client()
        path, _, query = path.partition("?")
        base = dict(headers)
        options: dict[str, Any] = {"method": method}
        if query:
            options["query_string"] = dict(p.split("=", 1) for p in query.split("&"))
        if body is not None:
            options["json"] = body
        elif method != "GET":  # as the page sends a bodiless write
            base["Content-Type"] = "application/json"
        options["headers"] = _headers(base, extra)
        response = await client.open(prefix + path, **options)
        return response.status_code, decoded_body(response.mimetype, await response.get_data())

    return call


@pytest.fixture
def client(web: Quart) -> Client:
    return _client(web, "/flowrra", {"X-Token": TOKEN})


@pytest.fixture
def stranger(web: Quart) -> Client:
    return _client(web, "/flowrra", {})


@pytest.fixture
def readonly(web: Quart) -> Client:
    return _client(web, "/open", {})


@pytest.fixture
def private(web: Quart) -> Client:
    return _client(web, "/private", {})


@pytest.fixture
def redacted(web: Quart) -> Client:
    return _client(web, "/redacted", {"X-Token": TOKEN})


MOUNTS = {
    "client": f"/flowrra/ws?token={TOKEN}",
    "stranger": "/flowrra/ws",
    "readonly": "/open/ws",
    "private": "/private/ws",
}


@pytest.fixture
def websocket_probe(web: Quart) -> WebSocketProbe:
    from quart.testing.connections import WebsocketResponseError

    async def probe(mount: str, origin: str | None) -> Any:
        headers = {} if origin is None else {"Origin": origin}
        if origin == SAME_ORIGIN:
            headers["Origin"] = "http://localhost"  # the test client's Host
        try:
            async with web.test_client().websocket(MOUNTS[mount], headers=headers) as ws:
                async with asyncio.timeout(10):
                    return json.loads(await ws.receive())
        except WebsocketResponseError:
            return None

    return probe


@pytest.fixture
def live(web: Quart) -> LiveSocket:
    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Any]:
        async with web.test_client().websocket(MOUNTS["client"]) as ws:

            async def receive() -> Any:
                return json.loads(await ws.receive())

            yield receive

    return connect


@pytest.fixture
async def redis_ui(tmp_path: Path) -> AsyncIterator[RedisMount]:
    async with redis_ui_app(tmp_path / "redis") as (app, url):
        yield RedisMount(app, _client(build(app), "/flowrra", {"X-Token": TOKEN}), url)


class TestQuartContract(UIApiContract):
    @pytest.fixture
    def websocket(self, websocket_probe: WebSocketProbe) -> WebSocketProbe:
        return websocket_probe  # (``websocket`` is Quart's name in this module)


async def test_live_events_over_the_websocket(ui_app: Flowrra, web: Quart) -> None:
    client = web.test_client()
    async with client.websocket(f"/flowrra/ws?token={TOKEN}") as ws:
        assert json.loads(await ws.receive()) == {"type": "ready"}  # subscribed from here
        task_id = await ui_app.submit("add", 3, 4)
        seen = []
        async with asyncio.timeout(10):
            while "success" not in seen:
                for event in frame_events(json.loads(await ws.receive())):
                    assert event["task_id"] == task_id
                    seen.append(event["status"])
    assert seen == ["pending", "running", "success"]


async def test_the_websocket_without_a_token_is_refused(web: Quart) -> None:
    from quart.testing.connections import WebsocketResponseError

    client = web.test_client()
    with pytest.raises(WebsocketResponseError) as refused:
        async with client.websocket("/flowrra/ws") as ws:
            await ws.receive()
    assert refused.value.response.status_code == 401


async def test_an_auth_hook_may_answer_with_its_own_response(ui_app: Flowrra) -> None:
    """What HTTP basic auth needs: a 401 carrying ``WWW-Authenticate``, so the browser
    asks for a name and password."""

    def basic() -> bool | Response:
        auth = request.authorization
        if auth is not None and (auth.username, auth.password) == ("ada", "s3cret"):
            return True
        return Response("sign in", 401, {"WWW-Authenticate": 'Basic realm="Flowrra"'})

    web = Quart(__name__)
    web.register_blueprint(create_blueprint(ui_app, auth=basic), url_prefix="/flowrra")
    client = web.test_client()
    refused = await client.get("/flowrra/api/meta")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="Flowrra"'
    allowed = await client.get("/flowrra/api/meta", auth=("ada", "s3cret"))
    assert allowed.status_code == 200 and (await allowed.get_json())["writable"] is True


def test_public_true_opens_the_ui_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flowrra.ui"):
        create_blueprint(make_ui_app(tmp_path), auth=is_admin)
        create_blueprint(make_ui_app(tmp_path))
    assert caplog.records == []  # guarded, or private: nothing to warn about
    with caplog.at_level(logging.WARNING, logger="flowrra.ui"):
        create_blueprint(make_ui_app(tmp_path), public=True)
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING and "public" in warning.getMessage()


def test_the_0_1_8_import_path_gives_the_same_blueprint(tmp_path: Path) -> None:
    from quart import Blueprint

    from flowrra.ui.flask import create_blueprint as create_blueprint_018

    assert isinstance(create_blueprint_018(make_ui_app(tmp_path)), Blueprint)
