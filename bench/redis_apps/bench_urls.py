"""Where the Redis benchmark's apps connect: database 12 holds the queue, 13 the results.

``BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379``) names the server; ``run_redis.py``
sets it for the workload and for every worker it starts.
"""

from __future__ import annotations

import os

SERVER = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
BROKER_DB = 12
BACKEND_DB = 13
BROKER_URL = f"{SERVER}/{BROKER_DB}"
BACKEND_URL = f"{SERVER}/{BACKEND_DB}"
