"""``redis_app``'s app with rate-limited and concurrency-limited tasks:
``flowrra worker limits_app:app``.

A separate module, so the other tests' workers (``redis_app:app``) have no limits. Each
limited task notes in Redis, from inside the worker, when it started (``<prefix>:starts``)
or how many of its runs were running at once when it started (``<prefix>:running``, read
from an INCR: atomic across processes)."""

from __future__ import annotations

import asyncio
import time

try:  # the tests' own process (where apps/ is also on sys.path: one module, not two)
    from apps.redis_app import PREFIX, _sync, app
except ImportError:  # a worker process: apps/ is on its path
    from redis_app import PREFIX, _sync, app

__all__ = ["app", "at_most_two", "ten_per_second"]


@app.task(rate_limit="10/s")
async def ten_per_second(n: int) -> int:
    """Notes its start time (Unix seconds)."""
    _sync.rpush(f"{PREFIX}:starts", repr(time.time()))
    return n


@app.task(max_concurrency=2)
async def at_most_two(n: int, pause: float) -> int:
    """Notes how many runs of it run now (itself included), then runs for ``pause``."""
    _sync.rpush(f"{PREFIX}:running", _sync.incr(f"{PREFIX}:now"))
    try:
        await asyncio.sleep(pause)
    finally:
        _sync.decr(f"{PREFIX}:now")
    return n
