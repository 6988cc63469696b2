"""The app the Redis tests run in worker processes: ``flowrra worker redis_app:app``.

Its server, key prefix and lease come from the environment the test sets, so every test
gets its own queue. Tasks note each execution in Redis (``<prefix>:ran``, a hash of
task argument → times run), so a test can count executions from outside the worker.
"""

from __future__ import annotations

import asyncio
import os
import time

import redis
from flowrra_redis import RedisBackend, RedisBroker

from flowrra import Flowrra

URL = os.environ["FLOWRRA_TEST_REDIS_URL"]
PREFIX = os.environ["FLOWRRA_TEST_PREFIX"]
LEASE = float(os.environ.get("FLOWRRA_TEST_LEASE", "30"))

app = Flowrra(
    broker=RedisBroker(URL, prefix=PREFIX, lease_seconds=LEASE),
    backend=RedisBackend(URL, prefix=PREFIX),
)
# RESP2: over a unix socket, redis-py 8.0's sync client fails every RESP3 connection (it
# asks the connection for a host, to set up maintenance notifications).
_sync = redis.Redis.from_url(URL, protocol=2)
RAN = f"{PREFIX}:ran"


def _note(key: object) -> None:
    _sync.hincrby(RAN, str(key), 1)


@app.task()
async def record(n: int, pause: float = 0.0) -> int:
    """Note that it ran, optionally pause, return ``n``."""
    if pause:
        await asyncio.sleep(pause)
    _note(n)
    return n


@app.task()
async def stamp(label: str) -> float:
    _note(label)
    return time.time()


@app.task(max_retries=3, retry_delay=1.5)
async def fails_once(label: str) -> str:
    """Fails on its first run, succeeds on the next (counted in ``ran``)."""
    runs = _sync.hincrby(RAN, label, 1)
    if runs == 1:
        raise RuntimeError("first attempt fails")
    return f"{label} ok after {runs} runs"


@app.task(max_retries=1, retry_delay=0.2)
async def always_fails(label: str) -> str:
    """Fails on every run: retried once, then FAILED."""
    _note(label)
    raise RuntimeError(f"{label} fails")


@app.task(max_retries=0)
def meet_in_thread(group: str, size: int, wait: float) -> int:
    """A blocking task (a plain def: a thread of the worker's pool) that waits until
    ``size`` tasks of ``group`` are inside at once; raises if they never are."""
    key = f"{PREFIX}:meet:{group}"
    arrived = _sync.incr(key)
    deadline = time.monotonic() + wait
    while int(_sync.get(key) or 0) < size:
        if time.monotonic() > deadline:
            _sync.decr(key)  # gone: one arriving later does not count it
            raise TimeoutError(f"only {int(_sync.get(key) or 0) + 1} of {size} met")
        time.sleep(0.01)
    return int(arrived)


@app.task(cpu_bound=True)
def square_in_pool(n: int) -> list[int]:
    """CPU task: returns ``[n*n, pid]`` so the test sees it ran in another process."""
    return [n * n, os.getpid()]


@app.task(cpu_bound=True, max_retries=0)
def spin(seconds: float) -> float:
    """CPU task: busy for ``seconds`` (no sleep: a pool process computing), then return it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sum(range(1000))
    return seconds
