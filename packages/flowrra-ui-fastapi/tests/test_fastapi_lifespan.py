"""docs/fastapi.md's example (``example/fastapi_app.py``) on a real Redis: the lifespan
connects at startup and closes at shutdown, the dependency hands the app to endpoints, and
``TestClient`` works twice in one process (each runs the app in an event loop of its own,
which hung before the loop-safe client)."""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

pytest.importorskip("flowrra_redis")
import redis

REDIS_URL = os.environ.get("FLOWRRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
EXAMPLE = Path(__file__).parent / "example" / "fastapi_app.py"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The example module, imported afresh on a key prefix of this test's own."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        if os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis at {REDIS_URL} is unreachable: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable: {exc}")
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("APP_REDIS_URL", f"{REDIS_URL}?prefix={prefix}")
    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fastapi_app", module)
    spec.loader.exec_module(module)
    yield module
    for pattern in (f"{{{prefix}}}*", f"{prefix}:*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    client.close()


def submit_and_wait(client: TestClient, a: int, b: int) -> dict[str, Any]:
    task_id = client.post("/add", params={"a": a, "b": b}).json()["task_id"]
    response = client.get(f"/tasks/{task_id}", params={"wait": 10})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_two_test_clients_in_one_process(example: ModuleType) -> None:
    for a in (1, 2):  # each TestClient runs the lifespan in an event loop of its own
        with TestClient(example.api) as client:
            assert example.flowrra.is_running
            assert submit_and_wait(client, a, 40) == {"status": "success", "result": a + 40}
        assert not example.flowrra.is_running  # closed at shutdown


def test_an_unknown_task_is_404(example: ModuleType) -> None:
    with TestClient(example.api) as client:
        assert client.get("/tasks/nope").status_code == 404


def test_a_producer_lifespan_connects_and_closes(example: ModuleType) -> None:
    """The lifespan for a web process in front of ``flowrra worker`` processes."""
    flowrra = example.flowrra

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with flowrra.producer():
            yield {"flowrra": flowrra}

    api = FastAPI(lifespan=lifespan)
    api.router.routes.extend(example.api.router.routes)
    for _ in range(2):
        with TestClient(api) as client:
            task_id = client.post("/add", params={"a": 1, "b": 2}).json()["task_id"]
            # No worker runs here: the task waits in Redis for one.
            assert client.get(f"/tasks/{task_id}").json() == {"status": "pending", "result": None}
            assert not flowrra.is_running
        assert not flowrra._connected  # closed at shutdown
