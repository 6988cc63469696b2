"""taskiq with taskiq-redis: ``taskiq worker taskiq_app:broker --workers 1``.

``ListQueueBroker`` (LPUSH / BRPOP on database 12), ``RedisAsyncResultBackend`` (database 13).
"""

from __future__ import annotations

from bench_urls import BACKEND_URL, BROKER_URL
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

result_backend: RedisAsyncResultBackend[None] = RedisAsyncResultBackend(BACKEND_URL)
broker = ListQueueBroker(BROKER_URL).with_result_backend(result_backend)


@broker.task
async def noop() -> None:
    return None
