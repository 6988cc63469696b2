"""saq: ``saq saq_app.settings``. saq keeps its queue and job records (results included) in
one database (12)."""

from __future__ import annotations

from typing import Any

from bench_urls import BROKER_URL, CONCURRENCY
from saq import Queue

queue = Queue.from_url(BROKER_URL)


async def noop(ctx: dict[str, Any]) -> None:  # saq passes its context first
    return None


settings: dict[str, Any] = {"queue": queue, "functions": [noop]}
if CONCURRENCY is not None:
    settings["concurrency"] = CONCURRENCY
