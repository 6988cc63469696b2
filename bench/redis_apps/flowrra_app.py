"""This repository's flowrra on Redis (flowrra-core + flowrra-redis).

Worker: ``PYTHONPATH=bench/redis_apps flowrra worker flowrra_app:app``. Broker on database 12
and backend on 13, or both on ``BENCH_FLOWRRA_URL`` when set (``bench_urls.py``).
"""

from __future__ import annotations

from bench_urls import FLOWRRA_BACKEND_URL, FLOWRRA_BROKER_URL

from flowrra import Flowrra

app = Flowrra.from_urls(broker=FLOWRRA_BROKER_URL, backend=FLOWRRA_BACKEND_URL)


@app.task()
async def noop() -> None:
    return None
