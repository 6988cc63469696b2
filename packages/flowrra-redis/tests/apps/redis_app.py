"""The app the Redis tests run in worker processes: ``flowrra worker redis_app:app``.

Its server, key prefix and lease come from the environment the test sets, so every test
gets its own queue. Tasks note each execution in Redis (``<prefix>:ran``, a hash of
task argument → times run), so a test can count executions from outside the worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable

from flowrra_redis import RedisBackend, RedisBroker
from local_servers import sync_client

from flowrra import Flowrra, TaskResult, TaskStatus

URL = os.environ["FLOWRRA_TEST_REDIS_URL"]
PREFIX = os.environ["FLOWRRA_TEST_PREFIX"]
LEASE = float(os.environ.get("FLOWRRA_TEST_LEASE", "30"))


class DiesAfterRecording(RedisBackend):
    """The Redis backend, except that the worker SIGKILLs itself the first time (per key
    prefix) a ``dies_after_success`` task's SUCCESS record is stored: after the record,
    before the ack (and, for a chain step, before its next step is queued)."""

    def store(self, task_id: str, result: TaskResult) -> Awaitable[None]:
        stored = super().store(task_id, result)
        if (
            result.task_name == "dies_after_success"
            and result.status is TaskStatus.SUCCESS
            and _sync.set(f"{PREFIX}:died", 1, nx=True)
        ):
            return _then_die(stored)
        return stored


async def _then_die(stored: Awaitable[None]) -> None:
    await stored
    os.kill(os.getpid(), signal.SIGKILL)


app = Flowrra(
    broker=RedisBroker(URL, prefix=PREFIX, lease_seconds=LEASE),
    backend=DiesAfterRecording(URL, prefix=PREFIX),
)
# RESP2: over a unix socket, redis-py 8.0's sync client fails every RESP3 connection (it
# asks the connection for a host, to set up maintenance notifications).
_sync = sync_client(URL)
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
async def pid_of(n: int, pause: float = 0.0) -> int:
    """The pid of the worker process that ran it (``flowrra worker --processes``)."""
    if pause:
        await asyncio.sleep(pause)
    return os.getpid()


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


@app.task()
async def step(x: int, label: str, pause: float = 0.0) -> int:
    """A chain step: notes ``<label>:start`` and, after ``pause``, ``label``; returns
    ``x + 1``."""
    _note(f"{label}:start")
    if pause:
        await asyncio.sleep(pause)
    _note(label)
    return x + 1


@app.task(max_retries=0)
async def boom(x: int, label: str) -> int:
    """Notes ``label`` and fails."""
    _note(label)
    raise ValueError(f"boom at {x}")


@app.task()
async def dies_after_success(x: int, label: str) -> int:
    """Notes ``label`` and returns ``x * 10``; the first time, its worker is SIGKILLed
    once the SUCCESS record is stored (:class:`DiesAfterRecording`)."""
    _note(label)
    return x * 10


@app.task()
async def interruptible(label: str, seconds: float) -> str:
    """Note when it starts (``<prefix>:started``) and when ``CancelledError`` reaches it
    (``<prefix>:interrupted``, Unix seconds), else note that it ran (``ran``)."""
    _sync.hset(f"{PREFIX}:started", label, f"{time.time()} {os.getpid()}")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _sync.hset(f"{PREFIX}:interrupted", label, time.time())
        raise
    _note(label)
    return label
