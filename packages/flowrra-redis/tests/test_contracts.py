"""The broker and backend contracts of flowrra-core, on a real Redis server, plus what
only Redis has: ordering of any int priority, leases, dead letters, TTLs, one pub/sub
connection per process, and clear errors when the server is down."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator

import pytest
import redis
from flowrra_redis import RedisBackend, RedisBroker, priority_key
from flowrra_redis.backend import decode_event
from local_servers import LocalCluster

from flowrra import BrokerError, ConfigError, Flowrra, TaskStatus
from flowrra.clock import ManualClock
from flowrra.task import TaskMessage, TaskResult, new_task_id
from flowrra.testing import BrokerContract, ResultBackendContract, message


async def recorded(app: Flowrra, task_id: str, timeout: float = 10.0) -> TaskResult:
    """The record of a task that was put in the queue behind the app's back (so it has no
    PENDING record to wait on), once the worker has written one."""
    deadline = time.monotonic() + timeout
    while (result := await app.get_result(task_id)) is None:
        assert time.monotonic() < deadline, f"no record for {task_id}"
        await asyncio.sleep(0.05)
    return result


class TestRedisBrokerContract(BrokerContract):
    @pytest.fixture
    async def broker(
        self, redis_url: str, prefix: str, clock: ManualClock
    ) -> AsyncIterator[RedisBroker]:
        broker = RedisBroker(redis_url, prefix=prefix, clock=clock)
        await broker.connect()
        yield broker
        await broker.close()

    @pytest.fixture
    def unreachable_broker(self, unreachable_url: str) -> RedisBroker:
        return RedisBroker(unreachable_url, socket_timeout=1.0, retries=0)


class TestRedisBackendContract(ResultBackendContract):
    @pytest.fixture
    async def backend(self, redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
        backend = RedisBackend(redis_url, prefix=prefix)
        await backend.connect()
        yield backend
        await backend.close()

    @pytest.fixture
    def unreachable_backend(self, unreachable_url: str) -> RedisBackend:
        return RedisBackend(unreachable_url, socket_timeout=1.0, retries=0)


class TestClusterBrokerContract(TestRedisBrokerContract):
    """The broker contract on the local Redis Cluster (``redis+cluster://``)."""

    @pytest.fixture
    def redis_url(self, redis_cluster: LocalCluster) -> str:
        return redis_cluster.url


class TestClusterBackendContract(TestRedisBackendContract):
    """The result backend contract on the local Redis Cluster."""

    @pytest.fixture
    def redis_url(self, redis_cluster: LocalCluster) -> str:
        return redis_cluster.url


def test_priority_key_sorts_like_the_numbers() -> None:
    rng = random.Random(7)
    numbers = [0, 1, -1, 15, 16, -15, -16, 2**53 + 1, -(2**70), 2**200, *range(-40, 40)]
    numbers += [rng.randint(-(2**90), 2**90) for _ in range(500)]
    assert sorted(numbers, key=priority_key) == sorted(numbers)


async def test_any_int_priority_orders_as_in_memory(redis_url: str, prefix: str) -> None:
    broker = RedisBroker(redis_url, prefix=prefix)
    await broker.connect()
    priorities = [5, -(2**64), 0, 2**63, -3, 0, 5, 10**30, -3]
    sent = [message("p", i, priority=p) for i, p in enumerate(priorities)]
    await broker.enqueue_many(sent)
    got = await broker.reserve(len(sent), 1.0)
    expected = sorted(sent, key=lambda m: (m.priority, m.args[0]))
    assert [m.id for m in got] == [m.id for m in expected]
    await broker.close()


async def test_fifo_within_a_priority_across_calls_batches_and_due_delays(
    redis_url: str, prefix: str
) -> None:
    """A batch shares one sequence number (its messages are ordered by their place in
    it); singles and later batches come after it, and a delayed message after what was
    queued before the reserve that found it due."""
    clock = ManualClock()
    broker = RedisBroker(redis_url, prefix=prefix, clock=clock)
    await broker.connect()
    sent: list[TaskMessage] = []

    def batch(n: int) -> list[TaskMessage]:
        made = [message("b", len(sent) + i, priority=(len(sent) + i) % 3) for i in range(n)]
        sent.extend(made)
        return made

    await broker.enqueue_many(batch(300))  # places 00000000 .. 0000012b
    delayed = message("d", -1, priority=1, eta=clock.time() + 30)
    await broker.enqueue(delayed)
    for _ in range(3):
        await broker.enqueue(*batch(1))
    clock.advance(30)  # due now, but it takes its number when a reserve moves it
    await broker.enqueue_many(batch(40))
    sent.append(delayed)
    got = await broker.reserve(len(sent), 1.0)
    expected = sorted(sent, key=lambda m: (m.priority, sent.index(m)))
    assert [m.id for m in got] == [m.id for m in expected]
    await broker.close()


def leases(sync_redis: redis.Redis, broker: RedisBroker) -> list[tuple[bytes, float]]:
    """The leased members and their expiries, as Redis holds them."""
    return [(m, s) for m, s in sync_redis.zrange(broker.keys.leased, 0, -1, withscores=True)]


async def test_expired_lease_is_delivered_again(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    """A lease expires ``lease_seconds`` after the reserve, on the brokers' clock (the
    scripts take "now" from it); only then does another worker get the message."""
    clock = ManualClock()
    dying, other, later = (
        RedisBroker(redis_url, prefix=prefix, lease_seconds=30, clock=clock) for _ in range(3)
    )
    for broker in (dying, other, later):
        await broker.connect()
    sent = message("job", 1)
    await dying.enqueue(sent)
    [held] = await dying.reserve(1, 1.0)  # its worker "dies" without acking
    assert leases(sync_redis, dying) == [(held.receipt, clock.time() + 30)]
    clock.advance(29.5)
    assert await other.reserve(1, 0.05) == []  # leased: nobody else gets it meanwhile
    clock.advance(0.5)
    [again] = await later.reserve(1, 1.0)
    assert again.id == held.id == sent.id
    assert leases(sync_redis, later) == [(again.receipt, clock.time() + 30)]  # leased anew
    await later.ack(again)
    assert (await later.queue_depths())["leased"] == 0
    for broker in (dying, other, later):
        await broker.close()


async def test_extend_keeps_the_lease(redis_url: str, prefix: str, sync_redis: redis.Redis) -> None:
    """Each extend moves the expiry to ``lease_seconds`` after now on the clock."""
    clock = ManualClock()
    holder = RedisBroker(redis_url, prefix=prefix, lease_seconds=30, clock=clock)
    other = RedisBroker(redis_url, prefix=prefix, lease_seconds=30, clock=clock)
    await holder.connect()
    await other.connect()
    await holder.enqueue(message("long"))
    held = await holder.reserve(1, 1.0)
    start = clock.time()
    assert leases(sync_redis, holder) == [(held[0].receipt, start + 30)]
    for n in range(1, 5):  # renewed every 10 s, as a worker does (a third of the lease)
        clock.advance(10)
        await holder.extend(held)
        assert leases(sync_redis, holder) == [(held[0].receipt, start + 10 * n + 30)]
    clock.advance(29.5)  # 69.5 s after the reserve: the lease would have expired at 30
    assert await other.reserve(1, 0.05) == []
    await holder.close()
    await other.close()


async def test_a_retry_is_written_due_at_now_plus_the_backoff(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    """Retry n of a failing task is stored in the delayed set scored now + retry_delay *
    2**(n-1) on the app's clock, and leaves it once the clock reaches that score."""
    clock = ManualClock()
    broker = RedisBroker(redis_url, prefix=prefix, clock=clock)
    app = Flowrra(broker=broker, backend=RedisBackend(redis_url, prefix=prefix), clock=clock)
    ran_at: list[float] = []

    @app.task(max_retries=2, retry_delay=2)
    async def always_fails() -> None:
        ran_at.append(clock.time())
        raise ConnectionError("down")

    async with app:
        task_id = await app.submit(always_fails)
        for attempts, delay in ((1, 2), (2, 4)):
            async with asyncio.timeout(10):  # that attempt ran, and its retry is queued
                while len(ran_at) < attempts or not sync_redis.zcard(broker.keys.delayed):
                    await asyncio.sleep(0.01)
            [(_, due)] = sync_redis.zrange(broker.keys.delayed, 0, -1, withscores=True)
            assert due == ran_at[-1] + delay == clock.time() + delay
            clock.advance(delay)
        result = await app.wait_for_result(task_id, timeout=10)
    assert (result.status, result.retries) == (TaskStatus.FAILED, 2)
    assert ran_at == [ran_at[0], ran_at[0] + 2, ran_at[0] + 6]


async def test_garbage_in_the_queue_is_dead_lettered_and_recorded(
    make_app: object, prefix: str, sync_redis: redis.Redis
) -> None:
    app: Flowrra = make_app()  # type: ignore[operator]

    @app.task()
    async def fine() -> str:
        return "fine"

    broker = app.broker
    assert isinstance(broker, RedisBroker)
    queue = broker.keys.queue
    task_id = new_task_id()
    sync_redis.zadd(queue, {b"\xff\x00 not a message at all": 0})
    sync_redis.zadd(queue, {f'p00010000000000000001|{{"id":"{task_id}","name":': 0})
    async with app:
        result = await recorded(app, task_id)
        assert result.status is TaskStatus.FAILED
        assert result.error is not None and result.error.startswith("UndeliverableMessage")
        ok = await app.wait_for_result(await app.submit(fine), timeout=10)
        assert ok.result == "fine"  # the worker lived on
    dead = await broker.dead_letters()
    await broker.close()
    assert len(dead) == 2
    assert all(d["reason"].startswith("malformed message") for d in dead)
    assert {d["id"] for d in dead} == {task_id, None}


async def test_unknown_task_is_dead_lettered(make_app: object) -> None:
    app: Flowrra = make_app()  # type: ignore[operator]
    broker = app.broker
    assert isinstance(broker, RedisBroker)
    await broker.connect()
    stray = message("nobody.registered.this")
    await app.backend.connect()
    await broker.enqueue(stray)
    async with app:
        result = await recorded(app, stray.id)
    assert result.status is TaskStatus.FAILED
    assert result.error is not None and "not registered" in result.error
    assert [d["id"] for d in await broker.dead_letters()] == [stray.id]


async def test_results_carry_the_ttl(redis_url: str, prefix: str, sync_redis: redis.Redis) -> None:
    backend = RedisBackend(redis_url, prefix=prefix, ttl=120)
    await backend.connect()
    task_id = new_task_id()
    await backend.store(
        task_id,
        TaskResult(task_id, TaskStatus.SUCCESS, task_name="x", result=1, submitted_at=time.time()),
    )
    ttl_ms = sync_redis.pttl(backend.keys.result(task_id))
    assert 110_000 < ttl_ms <= 120_000
    await backend.close()


async def test_one_subscription_serves_every_waiter(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    backend = RedisBackend(redis_url, prefix=prefix)
    writer = RedisBackend(redis_url, prefix=prefix)
    await backend.connect()
    await writer.connect()
    ids = [new_task_id() for _ in range(50)]
    for task_id in ids:
        await writer.store(task_id, TaskResult(task_id, TaskStatus.PENDING, task_name="x"))
    waits = [asyncio.create_task(backend.wait_for(task_id, 10)) for task_id in ids]
    await asyncio.sleep(0.2)
    [(_, subscribers)] = sync_redis.pubsub_numsub(backend.keys.done)
    assert subscribers == 1
    for n, task_id in enumerate(ids):
        await writer.store(
            task_id, TaskResult(task_id, TaskStatus.SUCCESS, task_name="x", result=n)
        )
    results = await asyncio.gather(*waits)
    assert [r.result for r in results] == list(range(50))
    await backend.close()
    await writer.close()


async def test_a_completion_between_subscribe_and_read_is_not_missed(
    redis_url: str, prefix: str
) -> None:
    """Completions land while waiters are being armed; every waiter returns."""
    backend = RedisBackend(redis_url, prefix=prefix)
    writer = RedisBackend(redis_url, prefix=prefix)
    await backend.connect()
    await writer.connect()
    for _ in range(100):
        task_id = new_task_id()
        await writer.store(task_id, TaskResult(task_id, TaskStatus.PENDING, task_name="x"))
        done = TaskResult(task_id, TaskStatus.SUCCESS, task_name="x", result=1)
        got, _ = await asyncio.gather(backend.wait_for(task_id, 5), writer.store(task_id, done))
        assert got.result == 1
    await backend.close()
    await writer.close()


async def test_submit_to_a_server_that_is_down_raises_clearly() -> None:
    url = "redis://user:s3cret@127.0.0.1:1/0"  # nothing listens on port 1
    app = Flowrra.from_urls(broker=url, backend=url)

    @app.task()
    async def nothing() -> None:
        return None

    with pytest.raises(BrokerError) as caught:
        await app.submit(nothing)
    text = str(caught.value)
    assert "127.0.0.1" in text and "unavailable" in text
    assert "s3cret" not in text


def test_urls_pick_the_redis_plugins(redis_url: str) -> None:
    for scheme_url in ("redis://h:1/2", "rediss://u:p@h:1/0", "unix:///tmp/redis.sock?db=1"):
        app = Flowrra.from_urls(broker=scheme_url, backend=scheme_url)
        assert isinstance(app.broker, RedisBroker) and isinstance(app.backend, RedisBackend)
    app = Flowrra.from_urls(broker="redis://h:1/0?prefix=shop", backend="redis://h:1/1?prefix=shop")
    assert isinstance(app.broker, RedisBroker) and app.broker.keys.queue == "{shop}:queue"


def test_keys_share_one_cluster_hash_slot() -> None:
    broker = RedisBroker("redis://h:1/0", prefix="orders")
    backend = RedisBackend("redis://h:1/0", prefix="orders")
    keys = [broker.keys.queue, broker.keys.delayed, broker.keys.leased, broker.keys.sequence]
    keys += [broker.keys.wake, broker.keys.dead, backend.keys.result("x")]
    assert all(k.startswith("{orders}:") for k in keys)
    assert RedisBroker("redis://h:1/0", prefix="{t}:app").keys.queue == "{t}:app:queue"


async def test_dead_letter_entries_are_json(make_app: object, sync_redis: redis.Redis) -> None:
    app: Flowrra = make_app()  # type: ignore[operator]
    broker = app.broker
    assert isinstance(broker, RedisBroker)
    await broker.connect()
    await broker.enqueue(message("x"))
    [got] = await broker.reserve(1, 1)
    await broker.dead_letter(got, "because")
    [raw] = sync_redis.lrange(broker.keys.dead, 0, -1)
    assert json.loads(raw)["reason"] == "because"
    await broker.close()


def test_config_fields_reach_the_client() -> None:
    from flowrra import BackendConfig, BrokerConfig, Config

    app = Flowrra(
        Config(
            broker=BrokerConfig(
                url="redis://h:1/0", max_connections=7, socket_timeout=2.5, queue_key="jobs"
            ),
            backend=BackendConfig(url="redis://h:1/1", ttl=90, max_connections=3),
        )
    )
    broker, backend = app.broker, app.backend
    assert isinstance(broker, RedisBroker) and isinstance(backend, RedisBackend)
    pool = broker.client.connection_pool
    assert pool.max_connections == 7
    assert pool.connection_kwargs["socket_timeout"] == 2.5
    assert broker.keys.queue == "{jobs}:queue"
    assert backend.client.connection_pool.max_connections == 3
    assert backend.ttl == 90


def test_from_urls_sizes_both_pools() -> None:
    """Issue 15: a web process serving many dashboards raises the pool from from_urls."""
    app = Flowrra.from_urls("redis://h:1/0", "redis://h:1/1", max_connections=120)
    broker, backend = app.broker, app.backend
    assert isinstance(broker, RedisBroker) and isinstance(backend, RedisBackend)
    assert broker.client.connection_pool.max_connections == 120
    assert backend.client.connection_pool.max_connections == 120
    default = Flowrra.from_urls("redis://h:1/0", "redis://h:1/1")
    assert default.broker.client.connection_pool.max_connections == 50  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="max_connections"):
        Flowrra.from_urls("redis://h:1/0", max_connections=0)


async def test_status_changes_are_published_for_monitors(make_app: object, redis_url: str) -> None:
    app: Flowrra = make_app()  # type: ignore[operator]

    @app.task()
    async def watched(n: int) -> int:
        return n

    backend = app.backend
    assert isinstance(backend, RedisBackend)
    monitor = redis.asyncio.Redis.from_url(redis_url)
    pubsub = monitor.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(backend.keys.events)
    async with app:
        task_id = await app.submit(watched, 3)
        await app.wait_for_result(task_id, timeout=10)
    seen: list[str] = []
    deadline = time.monotonic() + 5
    while len(seen) < 3 and time.monotonic() < deadline:
        message = await pubsub.get_message(timeout=0.5)
        if message is not None:
            event = decode_event(message["data"])
            assert event.task_id == task_id and event.task_name == "watched"
            seen.append(event.status.value)
    assert seen == ["pending", "running", "success"]
    await pubsub.aclose()
    await monitor.aclose()


def test_packed_commands_are_the_bytes_redis_py_sends() -> None:
    from flowrra_redis.pipeline import _pack
    from redis.asyncio.connection import Connection

    reference = Connection()
    for args in [
        ("SET", "k", b"v\x00\r\n", 1, 2.5),
        ("EVALSHA", "abc", 2, "a", "b", "héllo", -3, 1e20, 10**30),
    ]:
        assert _pack(args) == b"".join(reference.pack_command(*args))
    with pytest.raises(TypeError, match="cannot send bool"):
        _pack(("SET", "k", True))
