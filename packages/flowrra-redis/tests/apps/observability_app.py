"""The app of test_observability_redis.py's worker processes: ``flowrra worker
observability_app:app``. Server and key prefix come from the environment, as in
redis_app.py. With ``FLOWRRA_TEST_OWN_LOGGING=1`` the module configures logging itself
(lines starting ``OWN``), for ``--no-configure-logging``."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any

from flowrra_redis import RedisBackend, RedisBroker
from local_servers import sync_client

from flowrra import Flowrra, current_task

URL = os.environ["FLOWRRA_TEST_REDIS_URL"]
PREFIX = os.environ["FLOWRRA_TEST_PREFIX"]

if os.environ.get("FLOWRRA_TEST_OWN_LOGGING") == "1":
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("OWN %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)

app = Flowrra(
    broker=RedisBroker(URL, prefix=PREFIX, lease_seconds=30),
    backend=RedisBackend(URL, prefix=PREFIX),
)
_sync = sync_client(URL)
log = logging.getLogger("observability_app")


def _seen() -> dict[str, Any]:
    task = current_task()
    return {"headers": dict(task.headers), "attempt": task.attempt, "id": task.id}


@app.task(name="obs.echo")
async def echo() -> dict[str, Any]:
    """What the task sees of its own message."""
    return _seen()


@app.task(name="obs.fails_once", max_retries=2, retry_delay=0.2)
async def fails_once() -> dict[str, Any]:
    """Fails on its first attempt; returns what the second one sees."""
    if current_task().attempt == 1:
        raise ConnectionError("first attempt fails")
    return _seen()


@app.task(name="obs.own_headers")
async def own_headers(headers: dict[str, str]) -> dict[str, Any]:
    """A task with a ``headers`` parameter of its own (as 0.1.8 allowed)."""
    return {"argument": headers, "message": dict(current_task().headers)}


@app.task(name="obs.progress")
async def progress(go_on: str) -> str:
    """Reports progress, then waits until the Redis key ``go_on`` exists."""
    current_task().set_progress(0.5, "half way")
    deadline = time.monotonic() + 60
    while not _sync.exists(go_on):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{go_on} never appeared")
        await asyncio.sleep(0.02)
    return "done"


@app.task(name="obs.logs")
async def logs(word: str) -> str:
    """Logs a WARNING of its own, with ``word`` in it."""
    log.warning("own record %s", word)
    return word
