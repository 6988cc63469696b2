"""Sharded queues and results (:mod:`flowrra_redis.shards`): the broker and backend
contracts on S = 3 shards, on the shared server and on the local Redis Cluster, where the
shards must sit on three different masters; plus what only shards have: placement, per-key
order, and moving a deployment from one shard to three without losing a task."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
import redis
from conftest import Workers
from flowrra_redis import RedisBackend, RedisBroker, ShardedRedisBackend, ShardedRedisBroker
from flowrra_redis.shards import SHARD_KEY, shard_of, shard_prefixes
from local_servers import LocalCluster

from flowrra import Flowrra, TaskResult, TaskStatus
from flowrra.clock import ManualClock
from flowrra.protocols import Broker
from flowrra.task import TaskMessage
from flowrra.testing import BrokerContract, ResultBackendContract, message

SHARDS = 3


class TestShardedBrokerContract(BrokerContract):
    @pytest.fixture
    async def broker(
        self, redis_url: str, prefix: str, clock: ManualClock
    ) -> AsyncIterator[ShardedRedisBroker]:
        broker = ShardedRedisBroker(redis_url, shards=SHARDS, prefix=prefix, clock=clock)
        await broker.connect()
        yield broker
        await broker.close()

    @pytest.fixture
    def unreachable_broker(self, unreachable_url: str) -> ShardedRedisBroker:
        return ShardedRedisBroker(unreachable_url, shards=SHARDS, socket_timeout=1.0, retries=0)

    async def test_named_queues_take_weighted_turns(self, broker: Broker) -> None:
        """Weights and strict order hold within a shard (on average across shards): the
        contract's test, with every message on one shard (a shard key)."""
        assert isinstance(broker, ShardedRedisBroker)
        pinned = _Pinned(broker)
        await super().test_named_queues_take_weighted_turns(pinned)  # type: ignore[arg-type]


class _Pinned:
    """A sharded broker whose messages all carry one shard key (so one shard)."""

    def __init__(self, broker: ShardedRedisBroker) -> None:
        self._broker = broker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)

    def enqueue_many(self, messages: list[TaskMessage]) -> Awaitable[None]:
        for m in messages:
            m.headers = {SHARD_KEY: "contract"}
        return self._broker.enqueue_many(messages)


class TestShardedBackendContract(ResultBackendContract):
    @pytest.fixture
    async def backend(self, redis_url: str, prefix: str) -> AsyncIterator[ShardedRedisBackend]:
        backend = ShardedRedisBackend(redis_url, shards=SHARDS, prefix=prefix)
        await backend.connect()
        yield backend
        await backend.close()

    @pytest.fixture
    def unreachable_backend(self, unreachable_url: str) -> ShardedRedisBackend:
        return ShardedRedisBackend(unreachable_url, shards=SHARDS, socket_timeout=1.0, retries=0)


class TestClusterShardedBrokerContract(TestShardedBrokerContract):
    @pytest.fixture
    def redis_url(self, redis_cluster: LocalCluster) -> str:
        return redis_cluster.url


class TestClusterShardedBackendContract(TestShardedBackendContract):
    @pytest.fixture
    def redis_url(self, redis_cluster: LocalCluster) -> str:
        return redis_cluster.url


def test_shard_zero_keeps_the_prefix_and_the_others_spread_over_the_slots() -> None:
    for base in ("flowrra", "orders", "{t}:app"):
        for count in (2, 3, 4, 6):
            prefixes = shard_prefixes(base, count)
            assert prefixes[0] == base and len(set(prefixes)) == count
            width = 16384 / count
            parts = {
                int(redis.crc.key_slot(ShardedRedisBroker("redis://h:1/0", shards=2, prefix=p)
                    .shards[0].keys.base.encode()) // width)
                for p in prefixes
            }  # fmt: skip
            assert parts == set(range(count)), (base, count, prefixes)
    assert shard_prefixes("flowrra", 3)[1].startswith("flowrra:s1")
    assert shard_prefixes("{t}:app", 2)[1].startswith("{t:s1")
    assert shard_prefixes("flowrra", 3) == shard_prefixes("flowrra", 3)  # every process agrees


def test_urls_select_shards() -> None:
    app = Flowrra.from_urls("redis://h:1/0?shards=3&prefix=shop", "redis://h:1/1?shards=3")
    broker, backend = app.broker, app.backend
    assert isinstance(broker, ShardedRedisBroker) and isinstance(backend, ShardedRedisBackend)
    assert broker.shards[0].keys.base == "{shop}"
    assert len(broker.shards) == len(backend.shards) == 3
    assert "shards" not in broker.shards[0].client.connection_pool.connection_kwargs
    plain = Flowrra.from_urls("redis://h:1/0?shards=1", "redis://h:1/1")
    assert type(plain.broker) is RedisBroker  # one shard: the plain broker, nothing added
    with pytest.raises(ValueError, match="shards"):
        Flowrra.from_urls("redis://h:1/0?shards=many")


async def test_on_the_cluster_the_shards_are_on_three_masters(
    redis_cluster: LocalCluster, prefix: str
) -> None:
    broker = ShardedRedisBroker(redis_cluster.url, shards=SHARDS, prefix=prefix)
    await broker.connect()
    sent = [message("spread", n) for n in range(30)]
    await broker.enqueue_many(sent)
    masters = {redis_cluster.master_of(s.keys.queue) for s in broker.shards}
    assert len(masters) == SHARDS, masters
    assert len(set(redis_cluster.masters())) == SHARDS
    # each master holds its shard's messages, and together they hold all of them
    client = redis_cluster_client(redis_cluster)
    held = [client.zcard(s.keys.queue) for s in broker.shards]
    assert sum(held) == 30 and all(held), held
    got: list[TaskMessage] = []
    while len(got) < 30:
        got += await broker.reserve(30, 2.0)
    assert sorted(m.id for m in got) == sorted(m.id for m in sent)
    for m in got:
        await broker.ack(m)
    assert (await broker.queue_depths())["leased"] == 0
    await broker.close()
    client.close()


def redis_cluster_client(cluster: LocalCluster) -> redis.RedisCluster:
    host, _, port = cluster.url.partition("://")[2].split(",")[0].rpartition(":")
    return redis.RedisCluster(host=host, port=int(port))


async def test_a_shard_key_keeps_fifo_order_for_its_messages(redis_url: str, prefix: str) -> None:
    """Messages with one ``flowrra-shard-key`` share a shard: a worker gets them in the
    order they were queued, singles and batches alike, whatever else is queued."""
    broker = ShardedRedisBroker(redis_url, shards=SHARDS, prefix=prefix)
    await broker.connect()
    keyed: list[TaskMessage] = []
    for n in range(40):
        m = message("ordered", n)
        m.headers = {SHARD_KEY: "customer-42"}
        keyed.append(m)
    await broker.enqueue_many(keyed[:20])
    for m in keyed[20:]:
        await broker.enqueue(m)
        await broker.enqueue(message("noise"))
    home = broker.shards[shard_of("customer-42", SHARDS)]
    assert len(await home.queue_stats()) >= 1
    got: list[TaskMessage] = []
    deadline = time.monotonic() + 10
    while len(got) < 60 and time.monotonic() < deadline:
        batch = await broker.reserve(7, 0.5)  # small batches: many rotations
        got += batch
        for m in batch:
            await broker.ack(m)
    assert [m.args[0] for m in got if m.name == "ordered"] == list(range(40))
    assert len(got) == 60
    await broker.close()


async def test_a_shard_key_keeps_fifo_order_through_the_one_script_submit(
    redis_url: str, prefix: str
) -> None:
    """The one-round-trip submit on shards (what the app's ``submit_many`` calls, where a
    message and its record share a shard): messages of one key share a queue shard while
    their records spread over the record shards by id, and the batch's order holds (it
    was broken when each record shard's SUBMIT call took its own sequence)."""
    broker = ShardedRedisBroker(redis_url, shards=SHARDS, prefix=prefix)
    backend = ShardedRedisBackend(redis_url, shards=SHARDS, prefix=prefix)
    await broker.connect()
    await backend.connect()
    send = broker.enqueue_with_records(backend)
    assert send is not None
    keyed: list[TaskMessage] = []
    for n in range(30):
        m = message("ordered", n)
        m.headers = {SHARD_KEY: "cust"}
        keyed.append(m)
    assert len({shard_of(m.id, SHARDS) for m in keyed}) == SHARDS  # records spread
    await send(keyed, [TaskResult.pending(m) for m in keyed])
    got: list[TaskMessage] = []
    deadline = time.monotonic() + 10
    while len(got) < 30 and time.monotonic() < deadline:
        got += await broker.reserve(4, 0.5)
    assert [m.args[0] for m in got] == list(range(30))
    for m in got:
        await broker.ack(m)
    for m in keyed:
        record = await backend.get(m.id)
        assert record is not None and record.status is TaskStatus.PENDING
    await broker.close()
    await backend.close()


async def test_messages_and_records_spread_over_every_shard(redis_url: str, prefix: str) -> None:
    broker = ShardedRedisBroker(redis_url, shards=SHARDS, prefix=prefix)
    backend = ShardedRedisBackend(redis_url, shards=SHARDS, prefix=prefix)
    app = Flowrra(broker=broker, backend=backend)

    @app.task()
    async def double(n: int) -> int:
        return 2 * n

    async with app.producer():
        ids = await app.submit_many(double, [(n,) for n in range(300)])
        depths = [(await s.queue_depths())["queued"] for s in broker.shards]
        assert sum(depths) == 300 and min(depths) > 60, depths
    async with app:
        results = await asyncio.gather(*(app.wait_for_result(i, timeout=20) for i in ids))
    assert [r.result for r in results] == [2 * n for n in range(300)]
    counts = await backend.counts(1)
    assert counts["totals"]["success"] == 300
    each = [(await s.counts(1))["totals"]["success"] for s in backend.shards]
    assert min(each) > 60, each


def _producer(url: str, prefix: str, shards: int, backend_shards: int = 1) -> Flowrra:
    """An app that submits ``redis_app``'s tasks on S broker shards (1: RedisBroker)."""
    from apps import redis_app

    broker: Any = (
        ShardedRedisBroker(url, shards=shards, prefix=prefix)
        if shards > 1
        else RedisBroker(url, prefix=prefix)
    )
    backend: Any = (
        ShardedRedisBackend(url, shards=backend_shards, prefix=prefix)
        if backend_shards > 1
        else RedisBackend(url, prefix=prefix)
    )
    app = Flowrra(broker=broker, backend=backend)
    for handle in redis_app.app.registry:
        app.registry.register(handle)
    return app


def _ran(client: Any, prefix: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(f"{prefix}:ran").items()}


async def test_one_shard_to_three_loses_no_queued_or_delayed_task(
    redis_url: str, prefix: str, workers: Workers, sync_redis: redis.Redis
) -> None:
    """A running one-shard deployment moves to three (workers first, then producers):
    the tasks queued and delayed before, and those the old producers submit meanwhile,
    wait in shard 0, which the new workers drain; none is lost, none runs twice."""
    from apps import redis_app

    old = _producer(redis_url, prefix, 1)
    async with old.producer():
        queued = await old.submit_many(redis_app.record, [(n,) for n in range(200)])
        delayed = [await old.submit(redis_app.record, 1000 + n, delay=1.5) for n in range(20)]
        depths = await old.broker.queue_depths()  # type: ignore[attr-defined]
        assert (depths["queued"], depths["delayed"]) == (200, 20)
        # the new workers start; the old producers go on submitting meanwhile
        workers.env["FLOWRRA_TEST_SHARDS"] = "3"
        workers.start("-c", "8", app="shards_app:app")
        workers.start("-c", "8", app="shards_app:app")
        during = await old.submit_many(redis_app.record, [(2000 + n,) for n in range(100)])
        old_ids = [*queued, *delayed, *during]
        old_results = await asyncio.gather(*(old.wait_for_result(i, timeout=60) for i in old_ids))
    new = _producer(redis_url, prefix, 3)  # then the producers move to three shards
    async with new.producer():
        after = await new.submit_many(redis_app.record, [(3000 + n,) for n in range(300)])
        new_results = await asyncio.gather(*(new.wait_for_result(i, timeout=60) for i in after))
    expected = [*range(200), *range(1000, 1020), *range(2000, 2100), *range(3000, 3300)]
    assert [r.result for r in [*old_results, *new_results]] == expected
    ran = _ran(sync_redis, prefix)
    duplicates = {k: v for k, v in ran.items() if v != 1}
    assert sorted(int(k) for k in ran) == sorted(expected) and not duplicates, duplicates
    # A worker acks behind the result it stored (within ACK_DELAY): leases may be a
    # moment behind the results.
    deadline = time.monotonic() + 10
    while True:
        depths = await new.broker.queue_depths()  # type: ignore[attr-defined]
        if (depths["queued"], depths["delayed"], depths["leased"]) == (0, 0, 0):
            break
        assert time.monotonic() < deadline, depths
        await asyncio.sleep(0.05)
    await new.broker.close()


async def test_two_worker_processes_on_three_cluster_shards_run_each_task_once(
    redis_cluster: LocalCluster, prefix: str, workers: Workers
) -> None:
    """End to end on the local cluster: a producer and two worker processes, S = 3 for
    the queues and the results; every task completes, each exactly once, and each shard
    (each on its own master) carried a part of them."""
    from apps import redis_app

    url = redis_cluster.url
    workers.env["FLOWRRA_TEST_SHARDS"] = "3"
    workers.env["FLOWRRA_TEST_BACKEND_SHARDS"] = "3"
    first = workers.start("-c", "8", url=url, app="shards_app:app")
    second = workers.start("-c", "8", url=url, app="shards_app:app")
    app = _producer(url, prefix, 3, backend_shards=3)
    count = 1500
    async with app.producer():
        ids = await app.submit_many(redis_app.record, [(n,) for n in range(count)])
        results = await asyncio.gather(*(app.wait_for_result(i, timeout=120) for i in ids))
        counts = [
            (await s.counts(5))["totals"]["success"]
            for s in app.backend.shards  # type: ignore[attr-defined]
        ]
    assert [r.result for r in results] == list(range(count))
    client = redis_cluster_client(redis_cluster)
    ran = _ran(client, prefix)
    duplicates = {k: v for k, v in ran.items() if v != 1}
    assert len(ran) == count and not duplicates, f"{len(duplicates)} ran more than once"
    assert sum(counts) == count and min(counts) > count // 6, counts
    workers.stop_all()
    logs = [workers.output(p) for p in (first, second)]
    assert all("worker stopped after " in log for log in logs), [log[-3000:] for log in logs]
    done = [
        int(workers.output(p).rsplit("worker stopped after ", 1)[1].split()[0])
        for p in (first, second)
    ]
    assert sum(done) == count and min(done) > 0, done
    client.close()
