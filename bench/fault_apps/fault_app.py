"""The app ``bench/faults.py`` runs in ``flowrra worker fault_app:app`` processes.

Its server, key prefix and lease come from the environment. ``work(n)`` notes each
execution in Redis (``<prefix>:ran``, a hash of n → times run) before it returns ``n``, so
the script counts executions from outside the workers.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from flowrra_redis import RedisBackend, RedisBroker

from flowrra import Flowrra

URL = os.environ["FAULTS_REDIS_URL"]
PREFIX = os.environ["FAULTS_PREFIX"]
LEASE = float(os.environ.get("FAULTS_LEASE", "30"))

app = Flowrra(
    broker=RedisBroker(URL, prefix=PREFIX, lease_seconds=LEASE, retries=20),
    backend=RedisBackend(URL, prefix=PREFIX, retries=20),
)
_notes: aioredis.Redis | None = None


@app.task(max_retries=50, retry_delay=0.5)
async def work(n: int, pad: str = "") -> int:
    """Note this execution (a token of its own in ``<prefix>:ran``: a note Redis applied
    but whose reply was lost is sent again without counting twice), then return ``n``."""
    global _notes
    if _notes is None:
        _notes = aioredis.Redis.from_url(URL)
    token = f"{n}:{uuid.uuid4().hex}"
    deadline = time.monotonic() + 120
    while True:
        try:
            await _notes.sadd(f"{PREFIX}:ran", token)
            break
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    await asyncio.sleep(0.005)
    return n
