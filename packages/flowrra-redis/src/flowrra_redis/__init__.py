"""Flowrra on Redis: the broker and the result backend for ``redis://``, ``rediss://`` and
``unix://`` URLs, found by ``flowrra-core`` through entry points.

    app = Flowrra.from_urls(broker="redis://localhost:6379/0",
                            backend="redis://localhost:6379/1")
"""

from __future__ import annotations

from flowrra.config import BackendConfig, BrokerConfig
from flowrra_redis._redis_compat import check_redis_py

check_redis_py()  # before the modules that take over redis-py's connections

from flowrra_redis._version import __version__  # noqa: E402
from flowrra_redis.backend import RedisBackend  # noqa: E402
from flowrra_redis.broker import RedisBroker, priority_key  # noqa: E402
from flowrra_redis.connection import Keys, shards_from_url  # noqa: E402
from flowrra_redis.shards import ShardedRedisBackend, ShardedRedisBroker  # noqa: E402

__all__ = [
    "Keys",
    "RedisBackend",
    "RedisBroker",
    "ShardedRedisBackend",
    "ShardedRedisBroker",
    "__version__",
    "make_backend",
    "make_broker",
    "priority_key",
]


def make_broker(config: BrokerConfig) -> RedisBroker | ShardedRedisBroker:
    """Entry point of the ``flowrra.brokers`` group: a :class:`ShardedRedisBroker` when
    the URL says ``?shards=`` 2 or more, else a :class:`RedisBroker`."""
    shards = shards_from_url(config.url)
    if shards > 1:
        return ShardedRedisBroker.from_config(config, shards)
    return RedisBroker.from_config(config)


def make_backend(config: BackendConfig) -> RedisBackend | ShardedRedisBackend:
    """Entry point of the ``flowrra.result_backends`` group: a
    :class:`ShardedRedisBackend` when the URL says ``?shards=`` 2 or more."""
    shards = shards_from_url(config.url)
    if shards > 1:
        return ShardedRedisBackend.from_config(config, shards)
    return RedisBackend.from_config(config)
