"""The app the metrics tests run in worker processes: ``flowrra worker metrics_app:app
--metrics-port N``.

Its Redis server and key prefix come from the environment the test sets, so each test
gets its own queue. It has no middleware of its own: the ``--metrics-port`` flag adds it.
"""

from __future__ import annotations

import os
import time

import redis
from flowrra_redis import RedisBackend, RedisBroker

from flowrra import Flowrra

URL = os.environ["FLOWRRA_TEST_REDIS_URL"]
PREFIX = os.environ["FLOWRRA_TEST_PREFIX"]

app = Flowrra(
    broker=RedisBroker(URL, prefix=PREFIX),
    backend=RedisBackend(URL, prefix=PREFIX),
)
_sync = redis.Redis.from_url(URL, protocol=2)


@app.task()
async def ok(n: int) -> int:
    return n


@app.task(max_retries=0)
async def boom() -> None:
    raise RuntimeError("boom")


@app.task(max_retries=3, retry_delay=0.2)
async def flaky(label: str) -> int:
    """Fails on its first run, succeeds on the second."""
    runs = int(_sync.hincrby(f"{PREFIX}:runs", label, 1))
    if runs == 1:
        raise RuntimeError("first attempt fails")
    return runs


@app.task()
async def spawn(n: int) -> int:
    """Submits ``n`` ``ok`` tasks from the worker (counted as submitted there)."""
    for i in range(n):
        await ok.submit(i)
    return n


@app.task(max_retries=0)
def hold(gate: str, wait: float = 30.0) -> int:
    """A thread task that runs until the test sets ``<prefix>:<gate>``; returns the pid."""
    deadline = time.monotonic() + wait
    while not _sync.exists(f"{PREFIX}:{gate}"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} was never opened")
        time.sleep(0.02)
    return os.getpid()
