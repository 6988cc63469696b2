"""Unique jobs on real Redis: 50 concurrent submits of one key from 5 processes make one
task, a resent ENQUEUE_UNIQUE queues once, worker processes release the key after success
(or keep it ``unique_for``) and after failure, a worker killed after the record leaves the
key to the redelivery, and every key has a safety expiry."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import redis
from conftest import APPS, Workers
from flowrra_redis import RedisBroker
from flowrra_redis.broker import _SCRIPTS
from flowrra_redis.connection import Keys

from flowrra import Flowrra, TaskStatus
from flowrra.testing import message


def _ran(sync_redis: redis.Redis, prefix: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in sync_redis.hgetall(f"{prefix}:ran").items()}


async def test_50_concurrent_submits_from_5_processes_make_one_task(
    producer: Flowrra, workers: Workers, sync_redis: redis.Redis, prefix: str
) -> None:
    start = time.time() + 3.0  # every client connected and waiting by then
    env = {**workers.env, "FLOWRRA_TEST_LEASE": "30"}
    clients = [
        subprocess.Popen(  # noqa: ASYNC220 (started at once, awaited in threads below)
            [sys.executable, str(APPS / "unique_client.py"), "invoice:42", "10", repr(start)],
            cwd=APPS,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(5)
    ]
    ids: list[str] = []
    for client in clients:
        out, _ = await asyncio.to_thread(client.communicate, None, 60)
        assert client.returncode == 0
        ids += json.loads(out)
    assert len(ids) == 50 and len(set(ids)) == 1, set(ids)
    [task_id] = set(ids)
    keys = Keys(prefix)
    assert sync_redis.zcard(keys.results_index) == 1, "one PENDING record, no other"
    assert sync_redis.zcard(keys.queue) == 1, "one message queued"
    assert sync_redis.get(keys.unique("invoice:42")) == task_id.encode()
    workers.start("-c", "4")
    result = await producer.wait_for_result(task_id, timeout=30)
    assert result.status is TaskStatus.SUCCESS and result.result == 7
    await producer.join(timeout=30)
    assert _ran(sync_redis, prefix) == {"7": 1}
    assert sync_redis.get(keys.unique("invoice:42")) is None, "released after success"


async def test_a_resent_enqueue_unique_queues_once(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    """The same script call twice (its reply was lost, the client sent it again): one
    message, the same id; and sent again after the task finished and released the key,
    it neither queues it again nor takes the key."""
    broker = RedisBroker(redis_url, prefix=prefix)
    await broker.connect()
    try:
        sent = message("record", 7)
        k, q = broker.keys, broker.queue_keys(sent.queue)
        keys = [k.unique("resent"), q.queue, k.sequence, q.wake, q.delayed, q.leased, k.sent]
        args = [sent.id, 60_000, *broker._enqueue_call((sent,))]
        first = await broker.pipe.run_script(_SCRIPTS["ENQUEUE_UNIQUE"], keys, args)
        again = await broker.pipe.run_script(_SCRIPTS["ENQUEUE_UNIQUE"], keys, args)
        assert [x.decode() if isinstance(x, bytes) else x for x in first] == [sent.id, 1]
        assert [x.decode() if isinstance(x, bytes) else x for x in again] == [sent.id, -1]
        assert sync_redis.zcard(q.queue) == 1
        [got] = await broker.reserve(5, 1.0)
        await broker.ack(got)
        assert await broker.release_unique("resent", sent.id, 0.0)
        late = await broker.pipe.run_script(_SCRIPTS["ENQUEUE_UNIQUE"], keys, args)
        assert late[1] == -1 and sync_redis.zcard(q.queue) == 0
        assert await broker.unique_holder("resent") is None, "a late resend takes no key"
    finally:
        await broker.close()


async def test_worker_processes_release_keys_after_success_and_failure(
    producer: Flowrra, workers: Workers, sync_redis: redis.Redis, prefix: str
) -> None:
    workers.start("-c", "4")
    keys = Keys(prefix)
    record = producer.registry.get_or_raise("record")
    boom = producer.registry.get_or_raise("boom")
    # (submit through the producer: the handles' own app is redis_app's, another prefix)
    done = await producer.submit(record, 1, unique_key="done")
    kept = await producer.submit(record, 2, unique_key="kept", unique_for=30)
    failed = await producer.submit(boom, 3, "x", unique_key="failed", unique_for=30)
    for task_id in (done, kept, failed):
        await producer.wait_for_result(task_id, timeout=30)
    await producer.join(timeout=30)
    assert sync_redis.get(keys.unique("done")) is None
    assert sync_redis.get(keys.unique("kept")) == kept.encode()
    assert 0 < sync_redis.pttl(keys.unique("kept")) <= 30_000
    assert await producer.submit(record, 2, unique_key="kept") == kept
    assert sync_redis.get(keys.unique("failed")) is None, "a failure releases at once"
    assert (await producer.get_result(failed)).status is TaskStatus.FAILED  # type: ignore[union-attr]


async def test_a_key_has_a_safety_expiry(producer: Flowrra, sync_redis: redis.Redis) -> None:
    """Nothing releases a key whose release is lost: it expires ``unique_ttl`` after the
    task is due (a delayed task's delay added)."""
    broker = producer.broker
    assert isinstance(broker, RedisBroker)
    record = producer.registry.get_or_raise("record")
    await producer.submit(record, 1, unique_key="soon")
    await producer.submit(record, 1, unique_key="later", delay=3600)
    ttl = broker.unique_ttl * 1000
    assert ttl - 60_000 < sync_redis.pttl(broker.keys.unique("soon")) <= ttl
    later = sync_redis.pttl(broker.keys.unique("later"))
    assert ttl + 3_540_000 < later <= ttl + 3_600_000


async def test_a_worker_killed_after_the_record_leaves_the_release_to_the_redelivery(
    producer: Flowrra, workers: Workers, sync_redis: redis.Redis, prefix: str
) -> None:
    """SIGKILL after the SUCCESS record, before the key's release and the ack: the key
    holds (the message is still leased); once the lease expires, another worker sees the
    record complete, releases the key and acks, without running the task again."""
    victim = workers.start("-c", "4", lease=2.0)
    dies = producer.registry.get_or_raise("dies_after_success")
    task_id = await producer.submit(dies, 1, "once", unique_key="dies")
    assert await asyncio.to_thread(victim.wait, 60) == -signal.SIGKILL
    assert (await producer.get_result(task_id)).status is TaskStatus.SUCCESS  # type: ignore[union-attr]
    key = Keys(prefix).unique("dies")
    assert sync_redis.get(key) == task_id.encode(), "held while the message is leased"
    assert await producer.submit(dies, 1, "once", unique_key="dies") == task_id
    workers.start("-c", "4", lease=2.0)
    deadline = time.monotonic() + 30
    while sync_redis.get(key) is not None:
        assert time.monotonic() < deadline, "the redelivery did not release the key"
        await asyncio.sleep(0.1)
    assert _ran(sync_redis, prefix) == {"once": 1}
