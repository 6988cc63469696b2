"""arq: ``arq arq_app.WorkerSettings``. arq keeps its queue and results in one database (12)."""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings
from bench_urls import BROKER_URL, CONCURRENCY


async def noop(ctx: dict[str, Any]) -> None:  # arq passes its context first
    return None


class WorkerSettings:
    functions = [noop]
    redis_settings = RedisSettings.from_dsn(BROKER_URL)
    if CONCURRENCY is not None:
        max_jobs = CONCURRENCY
