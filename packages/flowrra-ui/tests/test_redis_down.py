"""With Redis unreachable, every endpoint that reads the broker or the result backend
answers 503 with the reason (naming the server, never its password), and the live stream
ends instead of pretending to be live: the Redis plugin raises BrokerError / BackendError
from every public method, which the service maps to 503."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from flowrra_redis import RedisBackend, RedisBroker
from flowrra_ui import UIService, dispatch
from flowrra_ui.service import stream_events

from flowrra import Flowrra

PASSWORD = "ui-s3cret"


@pytest.fixture
def app() -> Flowrra:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://flowrra:{PASSWORD}@127.0.0.1:{port}/0"
    app = Flowrra(
        broker=RedisBroker(url, socket_timeout=1.0, retries=0),
        backend=RedisBackend(url, socket_timeout=1.0, retries=0),
    )

    @app.task()
    async def add(a: int, b: int) -> int:
        return a + b

    return app


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/stats"),
        ("GET", "/api/workers"),
        ("GET", "/api/queues"),
        ("GET", "/api/dead-letters"),
        ("GET", "/api/health"),
        ("GET", "/api/executions"),
        ("GET", "/api/executions/some-id"),
        ("POST", "/api/executions/some-id/retry"),
        ("POST", "/api/executions/some-id/cancel"),
    ],
)
async def test_every_endpoint_reading_redis_answers_503(
    app: Flowrra, method: str, path: str
) -> None:
    ui = UIService(app, guarded=True)  # writable: the retry reaches the backend
    headers = {"Content-Type": "application/json", "Host": "ui"}
    status, body = await asyncio.wait_for(dispatch(ui, method, path, {}, None, headers), 30)
    assert status == 503, body
    assert "127.0.0.1" in body["error"] and PASSWORD not in body["error"]


async def test_endpoints_that_do_not_read_redis_still_answer(app: Flowrra) -> None:
    ui = UIService(app, public=True)
    headers = {"Host": "ui"}
    assert (await dispatch(ui, "GET", "/api/tasks", {}, None, headers))[0] == 200
    assert (await dispatch(ui, "GET", "/api/meta", {}, None, headers))[0] == 200


async def test_the_live_stream_ends_when_redis_is_unreachable(app: Flowrra) -> None:
    ui = UIService(app, public=True)
    sent: list[dict[str, Any]] = []
    gone = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> Any:
        await gone.wait()  # the client stays connected
        return None

    await asyncio.wait_for(stream_events(ui, send, receive), 30)
    assert sent == []  # never "ready": the page does not claim to be live
