"""Where the Redis benchmark's apps connect: database 12 holds the queue, 13 the results.

``BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379``) names the server; ``run_redis.py``
sets it for the workload and for every worker it starts. ``BENCH_LOOP=uvloop`` installs
uvloop's event loop policy when this module is imported (every app imports it before its
worker starts a loop); ``BENCH_CONCURRENCY`` is the worker's number of concurrent tasks for
the apps that read it from their settings (arq, saq).

``BENCH_FLOWRRA_URL`` puts this repository's flowrra (``flowrra_app.py``) on that one URL,
broker and backend alike: one server and database, so each submit is one script (its
PENDING record and its message, issue 16 part 4). ``run_redis.py --flowrra-one-db`` sets it
to the queue database; ``scaling.py`` to its own server or cluster. The peers ignore it.
"""

from __future__ import annotations

import os

SERVER = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
BROKER_DB = 12
BACKEND_DB = 13
BROKER_URL = f"{SERVER}/{BROKER_DB}"
BACKEND_URL = f"{SERVER}/{BACKEND_DB}"
FLOWRRA_URL = os.environ.get("BENCH_FLOWRRA_URL") or None
FLOWRRA_BROKER_URL = FLOWRRA_URL or BROKER_URL
FLOWRRA_BACKEND_URL = FLOWRRA_URL or BACKEND_URL
LOOP = os.environ.get("BENCH_LOOP", "asyncio")
CONCURRENCY = int(os.environ["BENCH_CONCURRENCY"]) if os.environ.get("BENCH_CONCURRENCY") else None

if LOOP == "uvloop":
    import uvloop

    uvloop.install()
