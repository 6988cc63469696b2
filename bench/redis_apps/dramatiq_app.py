"""dramatiq: ``dramatiq dramatiq_app --processes 1``. ``RedisBroker`` on database 12, the
``Results`` middleware with ``RedisBackend`` on database 13; the actor stores its results."""

from __future__ import annotations

import dramatiq
from bench_urls import BACKEND_URL, BROKER_URL
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

result_backend = RedisBackend(url=BACKEND_URL)
broker = RedisBroker(url=BROKER_URL)
broker.add_middleware(Results(backend=result_backend))
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True)
def noop() -> None:
    return None
