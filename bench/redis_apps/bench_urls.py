"""Where the Redis benchmark's apps connect: database 12 holds the queue, 13 the results.

``BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379``) names the server; ``run_redis.py``
sets it for the workload and for every worker it starts. ``BENCH_LOOP=uvloop`` installs
uvloop's event loop policy when this module is imported (every app imports it before its
worker starts a loop); ``BENCH_CONCURRENCY`` is the worker's number of concurrent tasks for
the apps that read it from their settings (arq, saq).
"""

from __future__ import annotations

import os

SERVER = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
BROKER_DB = 12
BACKEND_DB = 13
BROKER_URL = f"{SERVER}/{BROKER_DB}"
BACKEND_URL = f"{SERVER}/{BACKEND_DB}"
LOOP = os.environ.get("BENCH_LOOP", "asyncio")
CONCURRENCY = int(os.environ["BENCH_CONCURRENCY"]) if os.environ.get("BENCH_CONCURRENCY") else None

if LOOP == "uvloop":
    import uvloop

    uvloop.install()
