"""Redis Cluster and Sentinel, on real local servers (``apps/local_servers.py``): the URL
forms, the pipeline following MOVED and ASK during a slot migration, and failovers under
load with worker processes, where no acknowledged task may be lost."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections.abc import Awaitable, Callable

import pytest
import redis
from apps import redis_app
from conftest import Workers
from flowrra_redis import RedisBackend, RedisBroker, ShardedRedisBackend, ShardedRedisBroker
from flowrra_redis.codec import decode_result
from flowrra_redis.connection import Keys
from flowrra_redis.shards import shard_prefixes
from flowrra_redis.topology import ClusterLocator, SentinelLocator, split_located
from local_servers import LocalCluster, LocalSentinel, sync_client
from redis.crc import key_slot

from flowrra import BackendError, BrokerError, CancelOutcome, Flowrra, TaskResult, TaskStatus
from flowrra.plugins import describe_url
from flowrra.task import new_task_id

# -- URLs -------------------------------------------------------------------------------


def test_cluster_url_keeps_redis_options_and_names_every_seed() -> None:
    url, seeds, path = split_located(
        "rediss+cluster://u:p%40ss@10.0.0.1:7000,[::1]:7001/0?socket_timeout=2#x"
    ) or ("", [], [])
    assert url == "rediss://u:p%40ss@10.0.0.1:7000/0?socket_timeout=2#x"
    assert seeds == [("10.0.0.1", 7000), ("::1", 7001)]
    assert path == ["0"]


def test_sentinel_url_names_the_master_then_the_database() -> None:
    url, seeds, path = split_located(
        "redis+sentinel://:pw@s1:26379,s2:26380/mymaster/3?sentinel_password=sp"
    ) or ("", [], [])
    assert url == "redis://:pw@s1:26379/3"
    assert seeds == [("s1", 26379), ("s2", 26380)]
    assert path == ["mymaster", "3"]
    broker = RedisBroker("redis+sentinel://:pw@s1:26379/mymaster/3?sentinel_password=sp")
    locator = broker.client.connection_pool.connection_kwargs["locator"]
    assert isinstance(locator, SentinelLocator)
    assert locator.service == "mymaster"
    assert locator.sentinel_options["password"] == "sp"
    assert locator.options["password"] == "pw" and locator.options["db"] == 3
    assert "s3cr3t" not in describe_url("redis+sentinel://s1:26379/m?sentinel_password=s3cr3t")


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis+cluster://h:1/2", "only database 0"),
        ("redis+cluster:///0", "names no host:port"),
        ("redis+cluster://h/0", "expected host:port"),
        ("redis+sentinel://h:26379", "names the master after the hosts"),
    ],
)
def test_bad_located_urls_say_what_is_wrong(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        RedisBroker(url).client  # noqa: B018  (the client is made on first use)


def test_cluster_locator_targets_the_slot_of_the_prefix() -> None:
    broker = RedisBroker("redis+cluster://127.0.0.1:7000", prefix="shop")
    locator = broker.client.connection_pool.connection_kwargs["locator"]
    assert isinstance(locator, ClusterLocator)
    assert locator.slot == key_slot(b"{shop}:queue")


# -- a real cluster -----------------------------------------------------------------------


async def test_broker_and_backend_reach_the_slots_master(
    redis_cluster: LocalCluster, prefix: str
) -> None:
    app = Flowrra(
        broker=RedisBroker(redis_cluster.url, prefix=prefix),
        backend=RedisBackend(redis_cluster.url, prefix=prefix),
    )
    for handle in redis_app.app.registry:
        app.registry.register(handle)
    async with app.producer():
        task_id = await app.submit(redis_app.record, 7)
    master = redis.Redis(port=redis_cluster.master_of(app.broker.keys.queue))
    assert master.zcard(app.broker.keys.queue) == 1
    assert master.exists(app.broker.keys.result(task_id))


def _publishes_received(port: int) -> int:
    """Messages of classic pub/sub a cluster node received from the others over the bus."""
    info = redis.Redis(port=port).cluster("info")
    return int(info.get("cluster_stats_messages_publish_received", 0))


async def test_on_a_cluster_events_completions_and_cancels_stay_on_the_slots_nodes(
    redis_cluster: LocalCluster, prefix: str, workers: Workers
) -> None:
    """Flowrra's channels are shard channels on a cluster (SPUBLISH, SSUBSCRIBE): a
    classic PUBLISH is copied to every node over the bus, which cost each master that
    holds none of the keys about 12% of the work (bench/README.md, Scaling). Task events,
    completions (``wait_for_result``) and a cancel all arrive, and the other masters
    receive none of them."""
    url = redis_cluster.url
    app = Flowrra(broker=RedisBroker(url, prefix=prefix), backend=RedisBackend(url, prefix=prefix))
    for handle in redis_app.app.registry:
        app.registry.register(handle)
    owner = redis_cluster.master_of("{" + prefix + "}")
    others = [port for port in redis_cluster.masters() if port != owner]
    before = {port: _publishes_received(port) for port in others}
    workers.start("-c", "4", url=url)
    async with app.producer(), app.backend.subscribe_events() as events:  # type: ignore[attr-defined]
        ids = [await app.submit(redis_app.record, n) for n in range(20)]
        for task_id in ids:
            assert (await app.wait_for_result(task_id, 30)).status is TaskStatus.SUCCESS
        seen: set[str] = set()
        async with asyncio.timeout(30):
            async for event in events:
                if event.status is TaskStatus.SUCCESS:
                    seen.add(event.task_id)
                if seen >= set(ids):
                    break
        running = await app.submit(redis_app.interruptible, "on-cluster", 60.0)
        watch = sync_client(url)
        while not await asyncio.to_thread(watch.hexists, f"{prefix}:started", "on-cluster"):
            await asyncio.sleep(0.02)
        assert await app.cancel(running) is CancelOutcome.SIGNALLED
        assert (await app.wait_for_result(running, 10)).status is TaskStatus.CANCELLED
    assert {port: _publishes_received(port) for port in others} == before


async def test_pipeline_follows_ask_then_moved_while_a_slot_migrates(
    redis_cluster: LocalCluster, prefix: str
) -> None:
    broker = RedisBroker(redis_cluster.url, prefix=prefix)
    await broker.connect()
    pipe = broker.pipe
    key = broker.keys.base
    slot = key_slot(key.encode())
    source_port = redis_cluster.master_of(key)
    target_port = next(p for p in redis_cluster.masters() if p != source_port)  # another master
    source, target = redis.Redis(port=source_port), redis.Redis(port=target_port)
    source_id = source.execute_command("CLUSTER", "MYID").decode()
    target_id = target.execute_command("CLUSTER", "MYID").decode()
    assert await pipe.execute("SET", f"{key}:old", "1") == b"OK"
    target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    try:
        # A key the source does not have: ASK, sent with ASKING to the target.
        assert await pipe.execute("SET", f"{key}:new", "2") == b"OK"
        # A key the source has is still served there.
        assert await pipe.execute("GET", f"{key}:old") == b"1"
        source.execute_command(
            "MIGRATE", "127.0.0.1", target_port, "", 0, 5000, "KEYS", f"{key}:old"
        )
        for port in redis_cluster.masters():
            redis.Redis(port=port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        # Now the source answers MOVED: the pipeline reconnects to the target.
        got = await asyncio.gather(
            pipe.execute("GET", f"{key}:old"),
            pipe.execute("GET", f"{key}:new"),
            pipe.execute("INCR", f"{key}:n"),
        )
        assert got == [b"1", b"2", 1]
        locator = broker.client.connection_pool.connection_kwargs["locator"]
        assert (await locator.address())[1] == target_port
        assert target.get(f"{key}:new") == b"2"
    finally:
        await broker.close()


async def test_an_event_subscription_follows_its_slot_to_another_master(
    redis_cluster: LocalCluster, prefix: str
) -> None:
    """A shard channel's slot moves: Redis unsubscribes the listener, which subscribes
    again before anything in the process has met a MOVED, so on the old master, which
    answers MOVED; the listener tells the locator and follows (it died there, and its
    subscribers heard nothing more)."""
    backend = RedisBackend(redis_cluster.url, prefix=prefix)
    await backend.connect()
    key = backend.keys.base
    slot = key_slot(key.encode())
    source_port = redis_cluster.master_of(key)
    target_port = next(p for p in redis_cluster.masters() if p != source_port)
    target_id = redis.Redis(port=target_port).execute_command("CLUSTER", "MYID").decode()
    writer: RedisBackend | None = None
    try:
        async with backend.subscribe_events() as events:
            for port in redis_cluster.masters():  # the slot holds no key yet: moved at once
                redis.Redis(port=port).execute_command(
                    "CLUSTER", "SETSLOT", slot, "NODE", target_id
                )
            await asyncio.sleep(1.0)  # the listener is told, and subscribes again
            writer = RedisBackend(redis_cluster.url, prefix=prefix)
            task_id = new_task_id()
            record = TaskResult(task_id, TaskStatus.PENDING, task_name="moved")
            await writer.store(task_id, record)
            async with asyncio.timeout(10):
                async for event in events:
                    if event.task_id == task_id:
                        break
        assert redis_cluster.master_of(key) == target_port
    finally:
        await backend.close()
        if writer is not None:
            await writer.close()


async def test_a_plain_url_to_a_cluster_node_says_to_use_redis_cluster(
    redis_cluster: LocalCluster,
) -> None:
    key = "{not-here}:x"
    elsewhere = next(p for p in redis_cluster.masters() if p != redis_cluster.master_of(key))
    broker = RedisBroker(f"redis://127.0.0.1:{elsewhere}/0", prefix="not-here")
    with pytest.raises(redis.ResponseError, match=r"use a redis\+cluster:// URL"):
        await broker.pipe.execute("GET", key)
    await broker.close()


async def test_a_pipeline_leaves_the_old_master_once_its_locator_names_another(
    redis_sentinel: LocalSentinel, prefix: str
) -> None:
    """The loss seen around a Sentinel failover, reduced: a write held on the master by
    ``CLIENT PAUSE``, the replica promoted, and another connection of the same URL told
    the new master. The pipeline leaves the old master at once and its write runs on the
    new one. (Before, it stayed until its own timeout, or until the pause lapsed: then
    the old master, not yet demoted, acknowledged the write and discarded it once a
    replica, while the rest of the worker used the new master.)"""
    broker = RedisBroker(redis_sentinel.url, prefix=prefix, socket_timeout=60.0)
    key = f"{broker.keys.base}:held"
    try:
        assert await broker.pipe.execute("PING") == b"PONG"
        old = redis.Redis(port=redis_sentinel.master())
        old.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
        try:
            held = asyncio.ensure_future(broker.pipe.execute("INCR", key))
            await asyncio.sleep(0.2)  # on the wire, held by the old master
            assert not held.done()
            new = await asyncio.to_thread(redis_sentinel.promote)
            locator = broker.client.connection_pool.connection_kwargs["locator"]
            assert await locator.address() == ("127.0.0.1", new)  # any new connection
            assert await asyncio.wait_for(held, 10) == 1
        finally:
            old.execute_command("CLIENT", "UNPAUSE")
        assert redis.Redis(port=new).get(key) == b"1"
    finally:
        await broker.close()


# -- failover under load ------------------------------------------------------------------


@dataclasses.dataclass
class FailoverReport:
    """What became of the tasks a producer had acknowledged around a failover."""

    acknowledged: int
    #: The number of the first task submitted once the failover was over.
    first_after: int
    #: Acknowledged before the failover was over (its outcome unknown until then).
    acknowledged_during: int
    #: Acknowledged tasks that never ran, and those of them acknowledged after it.
    lost: list[int]
    lost_after: list[int]
    duplicates: int
    refused_submits: int
    #: Acknowledged tasks with no complete record, by the status stored (None: no record).
    records_missing: dict[str | None, int]
    #: The acknowledged tasks with no complete record.
    unrecorded: list[int]
    took: float

    def __str__(self) -> str:
        return (
            f"failover in {self.took:.1f}s: {self.acknowledged} acknowledged "
            f"({self.acknowledged_during} before it was over), {len(self.lost)} lost "
            f"({len(self.lost_after)} of them acknowledged after it), {self.duplicates} "
            f"duplicates, {self.refused_submits} submits refused, SUCCESS records missing: "
            f"{sum(self.records_missing.values())} {dict(self.records_missing)}"
        )


async def _failover_under_load(
    url: str,
    prefix: str,
    workers: Workers,
    fail_over: Callable[[], Awaitable[object]],
    record_property: Callable[[str, object], None],
    shards: int = 1,
) -> FailoverReport:
    """Two worker processes and a producer submitting one task at a time; ``fail_over``
    once 150 are acknowledged and 50 have run; 150 more after it. Reports (as test properties and on
    stdout) how many acknowledged tasks did not run or have no SUCCESS record, and how
    many ran twice (at least once); the caller asserts what its failover promises.
    ``shards``: the queues and the results on that many shards (producer and workers)."""
    if shards == 1:
        app = Flowrra(
            broker=RedisBroker(url, prefix=prefix), backend=RedisBackend(url, prefix=prefix)
        )
        worker_app = "redis_app:app"
    else:
        app = Flowrra(
            broker=ShardedRedisBroker(url, shards=shards, prefix=prefix),
            backend=ShardedRedisBackend(url, shards=shards, prefix=prefix),
        )
        workers.env["FLOWRRA_TEST_SHARDS"] = workers.env["FLOWRRA_TEST_BACKEND_SHARDS"] = str(
            shards
        )
        worker_app = "shards_app:app"
    for handle in redis_app.app.registry:
        app.registry.register(handle)
    for _ in range(2):
        workers.start("-c", "8", url=url, lease=5.0, app=worker_app)
    acknowledged: dict[int, str] = {}
    refused = 0
    failed_over = asyncio.Event()
    during = 0

    async def produce() -> None:
        nonlocal refused
        n = 0
        after = 0
        while after < 150:
            try:
                acknowledged[n] = await app.submit(redis_app.record, n, 0.005)
            except (BrokerError, BackendError):  # MaybeQueuedError is a BackendError
                refused += 1  # not acknowledged: it may or may not run
                await asyncio.sleep(0.05)
            if failed_over.is_set():
                after += 1
            n += 1

    async with app.producer():
        producing = asyncio.create_task(produce())
        # Under load: the workers are running tasks when it fails over.
        watch = sync_client(url)
        while len(acknowledged) < 150 or await asyncio.to_thread(watch.hlen, f"{prefix}:ran") < 50:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await fail_over()
        during = max(acknowledged) + 1
        failed_over.set()
        took = time.monotonic() - started
        await producing
        results = await asyncio.gather(
            *(app.wait_for_result(i, timeout=30) for i in acknowledged.values()),
            return_exceptions=True,
        )
    client = sync_client(url)
    missing: collections.Counter[str | None] = collections.Counter()
    unrecorded = []
    for n, result in zip(acknowledged, results, strict=True):
        if isinstance(result, Exception):
            unrecorded.append(n)
            backend = app.backend
            if isinstance(backend, ShardedRedisBackend):
                backend = backend.shard(acknowledged[n])
            assert isinstance(backend, RedisBackend)
            raw = client.get(backend.keys.result(acknowledged[n]))
            missing[None if raw is None else decode_result(raw).status.value] += 1
    ran = {int(k): int(v) for k, v in client.hgetall(f"{prefix}:ran").items()}
    lost = [n for n in acknowledged if n not in ran]
    report = FailoverReport(
        acknowledged=len(acknowledged),
        first_after=during,
        acknowledged_during=sum(1 for n in acknowledged if n < during),
        lost=lost,
        lost_after=[n for n in lost if n >= during],
        duplicates=sum(count - 1 for count in ran.values()),
        refused_submits=refused,
        records_missing=dict(missing),
        unrecorded=unrecorded,
        took=took,
    )
    for name in ("acknowledged", "duplicates", "refused_submits"):
        record_property(name, getattr(report, name))
    record_property("lost", len(report.lost))
    record_property("records_missing", sum(missing.values()))
    print(report)
    return report


async def test_cluster_failover_under_load_loses_no_acknowledged_task(
    redis_cluster: LocalCluster,
    prefix: str,
    workers: Workers,
    record_property: Callable[[str, object], None],
) -> None:
    key = "{" + prefix + "}"

    async def fail_over() -> None:
        old, new = await asyncio.to_thread(redis_cluster.failover, key)
        assert redis_cluster.master_of(key) == new != old

    report = await _failover_under_load(
        redis_cluster.url, prefix, workers, fail_over, record_property
    )
    assert report.lost == []
    assert report.records_missing == {}


async def test_cluster_failover_of_one_shard_under_load_loses_no_acknowledged_task(
    redis_cluster: LocalCluster,
    prefix: str,
    workers: Workers,
    record_property: Callable[[str, object], None],
) -> None:
    """S = 3 queues and results, one shard per master: the master of shard 1 fails over
    while the producer submits (one SUBMIT per task, on its shard) and two worker
    processes reserve from every shard. The other shards go on meanwhile; no
    acknowledged task is lost and each has its SUCCESS record."""
    key = Keys(shard_prefixes(prefix, 3)[1]).base
    masters = {redis_cluster.master_of(Keys(p).base) for p in shard_prefixes(prefix, 3)}
    assert len(masters) == 3, "one shard per master"

    async def fail_over() -> None:
        old, new = await asyncio.to_thread(redis_cluster.failover, key)
        assert redis_cluster.master_of(key) == new != old

    report = await _failover_under_load(
        redis_cluster.url, prefix, workers, fail_over, record_property, shards=3
    )
    assert report.lost == []
    assert report.records_missing == {}


async def test_sentinel_failover_under_load_loses_no_acknowledged_task(
    redis_sentinel: LocalSentinel,
    prefix: str,
    workers: Workers,
    record_property: Callable[[str, object], None],
) -> None:
    async def fail_over() -> None:
        old, new = await asyncio.to_thread(redis_sentinel.failover)
        assert new != old

    report = await _failover_under_load(
        redis_sentinel.url, prefix, workers, fail_over, record_property
    )
    assert report.lost == []
    assert report.records_missing == {}


async def test_sentinel_master_killed_under_load_loses_only_what_was_not_replicated(
    redis_sentinel: LocalSentinel,
    prefix: str,
    workers: Workers,
    record_property: Callable[[str, object], None],
) -> None:
    """An unplanned failover (SIGKILL of the master): Redis replicates asynchronously, so
    what the master acknowledged and had not yet sent to its replica is gone with it
    (docs/redis.md). The numbers are reported; what is asserted is what holds: producers
    and workers follow the sentinels to the new master, and every task acknowledged
    after the failover runs and has its SUCCESS record."""

    async def fail_over() -> None:
        old, new = await asyncio.to_thread(redis_sentinel.kill_master)
        assert new != old

    report = await _failover_under_load(
        redis_sentinel.url, prefix, workers, fail_over, record_property
    )
    assert report.lost_after == []
    assert [n for n in report.unrecorded if n >= report.first_after] == []
    assert report.acknowledged > report.acknowledged_during  # it went on after
