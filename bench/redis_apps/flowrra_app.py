"""This repository's flowrra on Redis (flowrra-core + flowrra-redis).

Worker: ``PYTHONPATH=bench/redis_apps flowrra worker flowrra_app:app``.
"""

from __future__ import annotations

from bench_urls import BACKEND_URL, BROKER_URL

from flowrra import Flowrra

app = Flowrra.from_urls(broker=BROKER_URL, backend=BACKEND_URL)


@app.task()
async def noop() -> None:
    return None
