"""The Flask blueprint: the shared UI contract through Flask's test client, auth before
every request (the event stream's too), live events as Server-Sent Events, and the 0.1.8
import path for Flask and Quart apps.

The app runs in the test's event loop (``running_ui_app``), so sync Flask views, whose
service calls go to that loop, are called from a thread (``asyncio.to_thread``), as a
WSGI server's threads call them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask, Response, request
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
from flowrra_ui_flask import create_blueprint

from flowrra import Flowrra

TOKEN = "let-me-in"


def is_admin() -> bool:
    return request.headers.get("X-Token") == TOKEN or request.args.get("token") == TOKEN


def build(ui_app: Flowrra) -> Flask:
    """Every mount the contract reads, each under its own prefix."""
    web = Flask(__name__)
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
def web(ui_app: Flowrra) -> Flask:
    return build(ui_app)


def _headers(base: dict[str, str], extra: dict[str, str] | None) -> dict[str, str]:
    given = {name.lower() for name in extra or {}}
    return {**{k: v for k, v in base.items() if k.lower() not in given}, **(extra or {})}


def _client(web: Flask, prefix: str, headers: dict[str, str]) -> Client:
    async def call(
        method: str, path: str, body: Any, extra: dict[str, str] | None
    ) -> tuple[int, Any]:
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

        def send() -> tuple[int, Any]:
            response = web.test_client().open(prefix + path, **options)
            return response.status_code, decoded_body(response.mimetype, response.get_data())

        return await asyncio.to_thread(send)

    return call


@pytest.fixture
def client(web: Flask) -> Client:
    return _client(web, "/flowrra", {"X-Token": TOKEN})


@pytest.fixture
def stranger(web: Flask) -> Client:
    return _client(web, "/flowrra", {})


@pytest.fixture
def readonly(web: Flask) -> Client:
    return _client(web, "/open", {})


@pytest.fixture
def private(web: Flask) -> Client:
    return _client(web, "/private", {})


@pytest.fixture
def redacted(web: Flask) -> Client:
    return _client(web, "/redacted", {"X-Token": TOKEN})


MOUNTS = {
    "client": f"/flowrra/events?token={TOKEN}",
    "stranger": "/flowrra/events",
    "readonly": "/open/events",
    "private": "/private/events",
}


def _open(web: Flask, path: str, headers: dict[str, str]) -> Any:
    return web.test_client().get(path, headers=headers, buffered=False)


@contextlib.contextmanager
def _stream(web: Flask, path: str, headers: dict[str, str]) -> Iterator[Any]:
    """The event stream's response, unbuffered, closed (its thread freed) at the end.
    From a thread: the view waits for the app's loop."""
    response = _open(web, path, headers)
    try:
        yield response
    finally:
        response.close()


@contextlib.asynccontextmanager
async def _astream(web: Flask, path: str, headers: dict[str, str]) -> AsyncIterator[Any]:
    """:func:`_stream` from the app's loop."""
    response = await asyncio.to_thread(_open, web, path, headers)
    try:
        assert response.status_code == 200, response.get_data()
        yield response
    finally:
        await asyncio.to_thread(response.close)


def _messages(response: Any) -> Iterator[Any]:
    """The decoded ``data:`` messages of an event stream (keep-alive comments skipped)."""
    for chunk in response.response:
        for line in chunk.decode().splitlines():
            if line.startswith("data: "):
                yield json.loads(line[len("data: ") :])


@pytest.fixture
def websocket(web: Flask) -> WebSocketProbe:
    """The contract's WebSocket probe, over the event stream (``/events``) that stands for
    the WebSocket on WSGI: the same refusals (401, 403 cross-site), the same first message."""

    async def probe(mount: str, origin: str | None) -> Any:
        headers = {} if origin is None else {"Origin": origin}
        if origin == SAME_ORIGIN:
            headers["Origin"] = "http://localhost"  # the test client's Host

        def first() -> Any:
            with _stream(web, MOUNTS[mount], headers) as response:
                if response.status_code != 200:
                    return None
                assert response.mimetype == "text/event-stream"
                return next(_messages(response))

        return await asyncio.wait_for(asyncio.to_thread(first), 10)

    return probe


@pytest.fixture
def live(web: Flask) -> LiveSocket:
    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Any]:
        async with _astream(web, MOUNTS["client"], {}) as response:
            messages = _messages(response)

            async def receive() -> Any:
                return await asyncio.to_thread(next, messages)

            try:
                yield receive
            finally:
                await asyncio.to_thread(messages.close)

    return connect


@pytest.fixture
async def redis_ui(tmp_path: Path) -> AsyncIterator[RedisMount]:
    async with redis_ui_app(tmp_path / "redis") as (app, url):
        yield RedisMount(app, _client(build(app), "/flowrra", {"X-Token": TOKEN}), url)


class TestFlaskContract(UIApiContract):
    pass


async def test_live_events_as_server_sent_events(ui_app: Flowrra, live: LiveSocket) -> None:
    async with live() as receive:
        assert await receive() == {"type": "ready"}  # subscribed from here
        task_id = await ui_app.submit("add", 3, 4)
        seen = []
        async with asyncio.timeout(10):
            while "success" not in seen:
                for event in frame_events(await receive()):
                    assert event["task_id"] == task_id
                    seen.append(event["status"])
    assert seen == ["pending", "running", "success"]


async def test_one_event_subscription_for_every_stream_of_the_process(
    ui_app: Flowrra, web: Flask
) -> None:
    """Two pages (and two mounts) share one subscription; it ends with the last stream."""
    from flowrra_ui.live import fanout_here

    fanout = fanout_here(ui_app)  # the app's sync loop is this test's
    async with (
        _astream(web, MOUNTS["client"], {}) as first,
        _astream(web, MOUNTS["readonly"], {}) as second,
    ):
        one, two = _messages(first), _messages(second)
        assert await asyncio.to_thread(next, one) == {"type": "ready"}
        assert await asyncio.to_thread(next, two) == {"type": "ready"}
        assert fanout.clients == 2 and fanout.running
        task_id = await ui_app.submit("add", 1, 1)
        assert frame_events(await asyncio.to_thread(next, one))[0]["task_id"] == task_id
        assert frame_events(await asyncio.to_thread(next, two))[0]["task_id"] == task_id
        await asyncio.to_thread(one.close)
        await asyncio.to_thread(two.close)
    for _ in range(100):  # each stream leaves through the loop (call_soon_threadsafe)
        if not fanout.clients:
            break
        await asyncio.sleep(0.05)
    assert fanout.clients == 0 and not fanout.running


async def test_the_event_stream_without_a_token_is_refused(web: Flask) -> None:
    response = await asyncio.to_thread(web.test_client().get, "/flowrra/events")
    assert response.status_code == 401


async def test_an_auth_hook_may_answer_with_its_own_response(ui_app: Flowrra) -> None:
    """What HTTP basic auth needs: a 401 carrying ``WWW-Authenticate``, so the browser
    asks for a name and password."""

    def basic() -> bool | Response:
        auth = request.authorization
        if auth is not None and (auth.username, auth.password) == ("ada", "s3cret"):
            return True
        return Response("sign in", 401, {"WWW-Authenticate": 'Basic realm="Flowrra"'})

    web = Flask(__name__)
    web.register_blueprint(create_blueprint(ui_app, auth=basic), url_prefix="/flowrra")
    client = web.test_client()
    refused = await asyncio.to_thread(client.get, "/flowrra/api/meta")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="Flowrra"'
    allowed = await asyncio.to_thread(client.get, "/flowrra/api/meta", auth=("ada", "s3cret"))
    assert allowed.status_code == 200 and allowed.get_json()["writable"] is True


async def test_an_async_auth_hook(ui_app: Flowrra) -> None:
    async def token() -> bool:
        return request.headers.get("X-Token") == TOKEN

    web = Flask(__name__)
    web.register_blueprint(create_blueprint(ui_app, auth=token), url_prefix="/flowrra")
    client = web.test_client()
    refused = await asyncio.to_thread(client.get, "/flowrra/api/meta")
    assert refused.status_code == 401
    allowed = await asyncio.to_thread(client.get, "/flowrra/api/meta", headers={"X-Token": TOKEN})
    assert allowed.status_code == 200


async def test_the_page_is_told_to_use_server_sent_events(client: Client) -> None:
    """app.js connects an EventSource to /events, not a WebSocket, on /api/meta's word."""
    status, meta = await client("GET", "/api/meta", None, None)
    assert status == 200 and meta["live"] == "sse"
    status, _ = await client("GET", "/static/flask-live.js", None, None)
    assert status == 404  # the WebSocket stand-in is gone


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


def test_the_0_1_8_import_path_serves_flask_and_quart(tmp_path: Path) -> None:
    """``flowrra.ui.flask.create_blueprint`` as the seeds use it: the blueprint registers on
    a Flask app (the Flask one) and on a Quart app (the Quart one); ``web=`` picks one."""
    import quart

    from flowrra.ui.flask import create_blueprint as create_blueprint_018

    app = make_ui_app(tmp_path)
    blueprint = create_blueprint_018(app, public=True)
    assert isinstance(blueprint, quart.Blueprint)  # what flowrra-ui-quart's tests check
    web = Flask(__name__)
    web.register_blueprint(blueprint, url_prefix="/flowrra")
    assert web.test_client().get("/flowrra/").status_code == 200
    assert {r.endpoint for r in web.url_map.iter_rules()} >= {"flowrra_ui.events"}
    quart_web = quart.Quart(__name__)
    quart_web.register_blueprint(blueprint, url_prefix="/flowrra")
    assert "/flowrra/ws" in {r.rule for r in quart_web.url_map.iter_rules()}

    assert isinstance(create_blueprint_018(app, web=Flask(__name__)), Blueprint)
    assert isinstance(create_blueprint_018(app, web=quart_web), quart.Blueprint)
