"""The app of the shard tests' worker processes: ``redis_app``'s tasks on a broker of
``FLOWRRA_TEST_SHARDS`` shards (1: the plain RedisBroker) and a backend of
``FLOWRRA_TEST_BACKEND_SHARDS`` (default 1), on the test's server and prefix."""

from __future__ import annotations

import os

import redis_app
from flowrra_redis import RedisBackend, RedisBroker, ShardedRedisBackend, ShardedRedisBroker

from flowrra import Flowrra
from flowrra.brokers.base import BaseBroker

SHARDS = int(os.environ.get("FLOWRRA_TEST_SHARDS", "1"))
BACKEND_SHARDS = int(os.environ.get("FLOWRRA_TEST_BACKEND_SHARDS", "1"))
URL, PREFIX, LEASE = redis_app.URL, redis_app.PREFIX, redis_app.LEASE

broker: BaseBroker = (
    ShardedRedisBroker(URL, shards=SHARDS, prefix=PREFIX, lease_seconds=LEASE)
    if SHARDS > 1
    else RedisBroker(URL, prefix=PREFIX, lease_seconds=LEASE)
)
backend = (
    ShardedRedisBackend(URL, shards=BACKEND_SHARDS, prefix=PREFIX)
    if BACKEND_SHARDS > 1
    else RedisBackend(URL, prefix=PREFIX)
)
app = Flowrra(broker=broker, backend=backend)
for handle in redis_app.app.registry:
    app.registry.register(handle)
