"""The Quart adapter: the shared UI contract through Quart's test client, auth before
requests and before the WebSocket, and live events over the WebSocket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from flowrra_ui.testing import Client, UIApiContract, decoded_body, make_ui_app, running_ui_app
from flowrra_ui_quart import create_blueprint
from quart import Quart, request, websocket

from flowrra import Flowrra

TOKEN = "let-me-in"


def is_admin() -> bool:
    if websocket:  # the WebSocket handshake: a token in the query string
        return websocket.args.get("token") == TOKEN
    return request.headers.get("X-Token") == TOKEN


def build(ui_app: Flowrra) -> Quart:
    web = Quart(__name__)
    web.register_blueprint(create_blueprint(ui_app, auth=is_admin), url_prefix="/flowrra")
    web.register_blueprint(create_blueprint(ui_app, name="open_ui"), url_prefix="/open")
    return web


@pytest.fixture
async def ui_app(tmp_path: Path) -> AsyncIterator[Flowrra]:
    async with running_ui_app(tmp_path) as app:
        yield app


@pytest.fixture
def web(ui_app: Flowrra) -> Quart:
    return build(ui_app)


def _client(web: Quart, prefix: str, headers: dict[str, str]) -> Client:
    async def call(
        method: str, path: str, body: Any, extra: dict[str, str] | None
    ) -> tuple[int, Any]:
        client = web.test_client()
        path, _, query = path.partition("?")
        options: dict[str, Any] = {"method": method, "headers": {**headers, **(extra or {})}}
        if query:
            options["query_string"] = dict(p.split("=", 1) for p in query.split("&"))
        if body is not None:
            options["json"] = body
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


class TestQuartContract(UIApiContract):
    pass


async def test_live_events_over_the_websocket(ui_app: Flowrra, web: Quart) -> None:
    client = web.test_client()
    async with client.websocket(f"/flowrra/ws?token={TOKEN}") as ws:
        assert json.loads(await ws.receive()) == {"type": "ready"}  # subscribed from here
        task_id = await ui_app.submit("add", 3, 4)
        seen = []
        async with asyncio.timeout(10):
            while "success" not in seen:
                event = json.loads(await ws.receive())
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


def test_the_0_1_8_import_path_gives_the_same_blueprint(tmp_path: Path) -> None:
    from quart import Blueprint

    from flowrra.ui.flask import create_blueprint as create_blueprint_018

    assert isinstance(create_blueprint_018(make_ui_app(tmp_path)), Blueprint)
