"""What issue 17's fault-injection run broke, each on a real Redis server: a poison message
in a batch, a completed record overwritten by a redelivery, records expiring while their
task still runs, an evicting ``maxmemory-policy``, a server still loading its data set, and
dead letters nobody could work."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from typing import Any

import pytest
import redis
from conftest import APPS, RedisServers
from flowrra_redis import RedisBackend, RedisBroker, priority_key
from redis.backoff import NoBackoff
from redis.retry import Retry

from flowrra import Flowrra, TaskStatus
from flowrra.clock import ManualClock
from flowrra.task import TaskResult, new_task_id
from flowrra.testing import message

_COMPLETE = (TaskStatus.SUCCESS, TaskStatus.FAILED)


async def recorded(app: Flowrra, task_id: str, timeout: float = 10.0) -> TaskResult:
    """The complete record of a task put in the queue behind the app's back (it has no
    PENDING record to wait on), once a worker wrote it."""
    deadline = time.monotonic() + timeout
    while (result := await app.get_result(task_id)) is None or result.status not in _COMPLETE:
        assert time.monotonic() < deadline, f"no record for {task_id}"
        await asyncio.sleep(0.05)
    return result


def _poison(task_id: str, **fields: object) -> str:
    body = {
        "v": 1,
        "id": task_id,
        "name": "fine",
        "args": [],
        "kwargs": {},
        "priority": 0,
        "attempt": 0,
        "eta": None,
        "submitted_at": 0,
    }
    body.update(fields)
    return json.dumps(body)


# -- item 1: one poison message no longer stops its batch ---------------------------------


async def test_a_poison_message_is_dead_lettered_and_the_rest_of_its_batch_runs(
    make_app: object, sync_redis: redis.Redis
) -> None:
    app: Flowrra = make_app()  # type: ignore[operator]
    ran: list[int] = []

    @app.task()
    async def fine(n: int) -> int:
        ran.append(n)
        return n

    broker = app.broker
    assert isinstance(broker, RedisBroker)
    await broker.connect()
    await app.backend.connect()
    overflow, deep = new_task_id(), new_task_id()
    nested = "[" * 100_000 + "]" * 100_000
    healthy = [message("fine", n) for n in range(20)]
    await broker.enqueue_many(healthy[:10])
    # Both first in the queue (a lower priority than the healthy ones), so in their batch.
    first = priority_key(-1)
    too_large = _poison(overflow).replace('"priority": 0', '"priority": 1e400')
    too_deep = _poison(deep)[:-1] + ', "deep": ' + nested + "}"
    sync_redis.zadd(
        broker.keys.queue,
        {f"{first}0000000000000001|{too_large}": 0, f"{first}0000000000000002|{too_deep}": 0},
    )
    await broker.enqueue_many(healthy[10:])

    got = await broker.reserve(100, 1)  # before the fix: OverflowError, the batch leased
    assert len(got) == 22
    bad = {m.id: m.undeliverable for m in got if m.undeliverable is not None}
    assert set(bad) == {overflow, deep}
    assert "OverflowError" in (bad[overflow] or "")
    assert "RecursionError" in (bad[deep] or "")
    assert [m.args for m in got if m.undeliverable is None] == [(n,) for n in range(20)]
    await broker.release(got)

    async with app:
        results = [await recorded(app, m.id) for m in healthy]
        failed = [await recorded(app, task_id) for task_id in (overflow, deep)]
    assert [r.result for r in results] == list(range(20))
    assert sorted(ran) == list(range(20))
    assert all(r.status is TaskStatus.FAILED for r in failed)
    dead = {d["id"]: d["reason"] for d in await broker.dead_letters()}
    await broker.close()
    assert set(dead) == {overflow, deep}
    assert "OverflowError" in dead[overflow] and "RecursionError" in dead[deep]


# -- item 3: a complete record is never overwritten ----------------------------------------


async def test_the_store_refuses_to_replace_a_complete_record(redis_url: str, prefix: str) -> None:
    backend = RedisBackend(redis_url, prefix=prefix)
    await backend.connect()
    for final in (TaskStatus.SUCCESS, TaskStatus.FAILED):
        task_id = new_task_id()
        done = TaskResult(task_id, final, task_name="x", result=1, error="e")
        await backend.store(task_id, done)
        # What a redelivery of the finished task wrote: RUNNING, then another outcome.
        # (store() writes RUNNING behind: store_many() waits for it to be written.)
        await backend.store_many([TaskResult(task_id, TaskStatus.RUNNING, task_name="x")])
        stored = await backend.get(task_id)
        assert stored is not None and stored.status is final
        other = TaskStatus.FAILED if final is TaskStatus.SUCCESS else TaskStatus.SUCCESS
        again = TaskResult(task_id, other, task_name="x", result=2, error="again")
        await backend.store(task_id, again)
        await backend.store_many([TaskResult(task_id, TaskStatus.RETRYING, task_name="x")])
        stored = await backend.get(task_id)
        assert stored is not None and (stored.status, stored.result) == (final, 1)
    # An id that looks like a record's status does not fool the check.
    tricky = 'a","success'
    await backend.store_many([TaskResult(tricky, TaskStatus.RUNNING, task_name="x")])
    await backend.store(tricky, TaskResult(tricky, TaskStatus.SUCCESS, task_name="x", result=3))
    stored = await backend.get(tricky)
    assert stored is not None and (stored.status, stored.result) == (TaskStatus.SUCCESS, 3)
    await backend.close()


async def test_a_redelivered_message_of_a_completed_task_is_acked_without_running(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    """A worker completed a task and died before its ack went out: when the lease expires
    the message comes back, and the next worker acks it instead of running it again. A
    redelivered task whose record is not complete (it died mid-run) runs again."""
    clock = ManualClock()
    broker = RedisBroker(redis_url, prefix=prefix, lease_seconds=30, clock=clock)
    backend = RedisBackend(redis_url, prefix=prefix)
    app = Flowrra(broker=broker, backend=backend)
    ran: list[str] = []

    @app.task()
    async def charge(label: str) -> str:
        ran.append(label)
        return f"charged {label}"

    dead_worker = RedisBroker(redis_url, prefix=prefix, lease_seconds=30, clock=clock)
    await dead_worker.connect()
    await backend.connect()
    done, cut = message("charge", "done"), message("charge", "cut")
    await dead_worker.enqueue_many([done, cut])
    taken = await dead_worker.reserve(2, 1)
    assert [m.id for m in taken] == [done.id, cut.id]
    finished = TaskResult(done.id, TaskStatus.SUCCESS, task_name="charge", result="charged")
    await backend.store(done.id, finished)  # it completed; its ack was lost with the worker
    await backend.store_many([TaskResult(cut.id, TaskStatus.RUNNING, task_name="charge")])
    await dead_worker.close()
    clock.advance(31)  # the leases expired

    async with app:
        rerun = await recorded(app, cut.id)
        async with asyncio.timeout(10):  # the other one is acked, not run
            while sync_redis.zcard(broker.keys.leased) or sync_redis.zcard(broker.keys.queue):
                await asyncio.sleep(0.02)
    assert ran == ["cut"]
    assert rerun.result == "charged cut"
    kept = await app.get_result(done.id)
    assert kept is not None and (kept.status, kept.result) == (TaskStatus.SUCCESS, "charged")
    await broker.close()


# -- item 10: the result TTL applies from completion ---------------------------------------


async def test_incomplete_records_do_not_expire(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    backend = RedisBackend(redis_url, prefix=prefix, ttl=120)
    await backend.connect()
    task_id = new_task_id()
    key = backend.keys.result(task_id)
    for status in (TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.RETRYING):
        await backend.store_many([TaskResult(task_id, status, task_name="x")])
        assert sync_redis.pttl(key) == -1, status  # no TTL: kept while the task may run
    await backend.store(task_id, TaskResult(task_id, TaskStatus.SUCCESS, task_name="x"))
    assert 110_000 < sync_redis.pttl(key) <= 120_000
    await backend.close()


# -- item 7: an evicting maxmemory-policy is warned about at connect ---------------------


async def test_an_evicting_maxmemory_policy_is_warned_about_at_connect(
    redis_server: RedisServers, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    evicting = redis_server.start("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    caplog.set_level(logging.WARNING, logger="flowrra.redis")
    quiet = [
        RedisBroker(evicting, eviction_warning=False),
        RedisBackend(evicting + "?eviction_warning=off"),
        RedisBroker(redis_url),  # the shared test server: noeviction
    ]
    for endpoint in quiet:
        await endpoint.connect()
        await endpoint.close()
    assert not [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]

    broker = RedisBroker(evicting)
    await broker.connect()
    await broker.close()
    [warning] = [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    text = warning.getMessage()
    assert "allkeys-lru" in text and "noeviction" in text and "eviction_warning" in text
    assert "vanish" in text


# -- item 5: "not now" replies (LOADING, READONLY, MASTERDOWN) are retried -------------------


async def test_a_restarted_server_still_loading_is_waited_for(
    redis_server: RedisServers, prefix: str
) -> None:
    """After a restart Redis answers LOADING until its data set is read (here about two
    seconds): reads, writes and waits carry on once it has, within their own deadline."""
    url = redis_server.start()
    backend = RedisBackend(url, prefix=prefix)
    broker = RedisBroker(url, prefix=prefix)
    # A wait keeps waiting until its own timeout, past the backend's busy_timeout.
    impatient = RedisBackend(url, prefix=prefix, busy_timeout=0.2)
    await backend.connect()
    task_id = new_task_id()
    done = TaskResult(task_id, TaskStatus.SUCCESS, task_name="x", result="kept")
    await backend.store(task_id, done)
    sync = redis.Redis.from_url(url)
    with sync.pipeline(transaction=False) as pipe:  # enough keys to load for a while
        for n in range(10_000):
            pipe.set(f"filler:{n}", n)
        pipe.execute()
    sync.save()
    redis_server.kill(url)
    redis_server.start(
        "--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024",
        port=int(url.rsplit(":", 1)[1].split("/")[0]),
    )  # fmt: skip
    probe = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.BusyLoadingError):
        probe.get("filler:0")  # it is loading now
    probe.close()
    async with asyncio.timeout(60):  # a hang guard, not a timing claim
        got, also = await asyncio.gather(
            backend.wait_for(task_id, timeout=30), impatient.wait_for(task_id, timeout=30)
        )
        assert got.result == also.result == "kept"
        await broker.enqueue(message("x"))
        [queued] = await broker.reserve(1, 1)
        assert queued.name == "x"
    assert sync.dbsize() > 10_000
    sync.close()
    await broker.close()
    await backend.close()
    await impatient.close()


async def test_a_write_answered_readonly_during_a_failover_is_retried(
    redis_server: RedisServers, prefix: str
) -> None:
    """The URL reaches a replica (a failover under way): writes answered READONLY are sent
    again, on a new connection, and land once it is promoted."""
    primary = redis_server.start()
    port = primary.rsplit(":", 1)[1].split("/")[0]
    replica = redis_server.start("--replicaof", "127.0.0.1", port)
    broker = RedisBroker(replica, prefix=prefix)
    await broker.connect()
    writing = asyncio.create_task(broker.enqueue(message("after-failover")))
    await asyncio.sleep(0.3)
    assert not writing.done()  # refused (READONLY), and being tried again
    promote = redis.Redis.from_url(replica)
    promote.replicaof("NO", "ONE")
    promote.close()
    async with asyncio.timeout(30):  # a hang guard
        await writing
        [got] = await broker.reserve(1, 1)
    assert got.name == "after-failover"
    await broker.close()


# -- item 12: the dead letters can be worked, and are bounded in bytes ---------------------


async def test_a_dead_letter_is_bounded_in_bytes_and_says_so(redis_url: str, prefix: str) -> None:
    broker = RedisBroker(redis_url, prefix=prefix, dead_letter_max_bytes=1000)
    await broker.connect()
    await broker.enqueue(message("big", "x" * 10_000_000))  # 10 MB
    [got] = await broker.reserve(1, 1)
    await broker.dead_letter(got, "because")
    [entry] = await broker.dead_letters()
    assert len(entry["raw"].encode()) <= 1000
    assert entry["truncated"] is True and entry["requeueable"] is False
    assert entry["reason"].startswith("because") and "truncated" in entry["reason"]
    assert "10,000,1" in entry["reason"]  # the size it had (10 MB and its JSON)
    assert await broker.requeue_dead_letters() == []  # a cut message is not queued
    await broker.close()


async def test_dead_letters_are_requeued_once_and_purged(
    make_app: object, prefix: str, sync_redis: redis.Redis
) -> None:
    """A task dead-lettered as unknown (deployed after its message came) is queued again
    once, its FAILED record reset, and then runs; purge deletes entries."""
    from flowrra import dead_letters

    app: Flowrra = make_app()  # type: ignore[operator]
    broker = app.broker
    assert isinstance(broker, RedisBroker)
    await broker.connect()
    await app.backend.connect()
    early, junk = message("deployed.later", 7), message("nobody.wants.this")
    await broker.enqueue_many([early, junk])
    async with app:  # it does not know either task: both dead-lettered, recorded FAILED
        failed = await recorded(app, early.id)
        await recorded(app, junk.id)
    assert failed.status is TaskStatus.FAILED
    listed = await dead_letters.listed(app)
    assert {e["id"] for e in listed} == {early.id, junk.id}
    assert all(e["requeueable"] for e in listed)

    later: Flowrra = make_app()  # type: ignore[operator]

    @later.task(name="deployed.later")
    async def deployed(n: int) -> int:
        return n * 6

    assert await dead_letters.requeue(later, [early.id]) == [early.id]
    assert await dead_letters.requeue(later, [early.id]) == []  # once
    pending = await later.get_result(early.id)
    assert pending is not None and pending.status is TaskStatus.PENDING
    async with later:
        result = await later.wait_for_result(early.id, timeout=10)
    assert (result.status, result.result) == (TaskStatus.SUCCESS, 42)
    assert [e["id"] for e in await dead_letters.listed(later)] == [junk.id]
    assert await dead_letters.purge(later, [junk.id]) == 1
    assert await broker.dead_letters() == []
    await broker.close()


def test_the_dead_letters_command(redis_url: str, prefix: str, sync_redis: redis.Redis) -> None:
    """``flowrra dead-letters list|requeue|purge`` on the Redis tests' worker app."""

    async def dead_letter_two() -> list[str]:
        broker = RedisBroker(redis_url, prefix=prefix)
        await broker.connect()
        runs, stray = message("redis_app.record", 5), message("nobody.has.this")
        await broker.enqueue_many([runs, stray])
        for got in await broker.reserve(2, 1):
            await broker.dead_letter(got, f"not registered: {got.name}")
        await broker.close()
        return [runs.id, stray.id]

    runs, stray = asyncio.run(dead_letter_two())
    env = {
        **os.environ,
        "FLOWRRA_TEST_REDIS_URL": redis_url,
        "FLOWRRA_TEST_PREFIX": prefix,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(APPS), os.environ.get("PYTHONPATH")])),
    }

    def flowrra(*argv: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "flowrra", "dead-letters", *argv],
            cwd=APPS, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed = json.loads(flowrra("list", "redis_app:app", "--json"))
    assert {e["id"] for e in listed} == {runs, stray}
    assert "not registered" in flowrra("list", "redis_app:app")
    assert flowrra("requeue", "redis_app:app", runs).strip() == f"requeued 1: {runs}"
    [queued] = sync_redis.zrange(f"{{{prefix}}}:queue", 0, -1)
    assert runs.encode() in queued
    assert flowrra("purge", "redis_app:app", "--all").strip() == "purged 1"
    assert json.loads(flowrra("list", "redis_app:app", "--json")) == []
    bad = subprocess.run(
        [sys.executable, "-m", "flowrra", "dead-letters", "purge", "redis_app:app"],
        cwd=APPS, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "--all" in bad.stderr


# -- item 2: a write sent again after a timeout is not queued twice ------------------------


async def test_an_enqueue_sent_again_after_a_stall_is_queued_once(
    redis_server: RedisServers, prefix: str
) -> None:
    """Redis stops answering (SIGSTOP) after an enqueue reached it: the pipeline's watchdog
    gives up on the connection and, once Redis is back, sends the enqueue again on a new
    one, while Redis also runs the first. The message id dedupes it inside the script."""
    url = redis_server.start()
    broker = RedisBroker(url, prefix=prefix, socket_timeout=0.3, retries=20)
    await broker.connect()
    await broker.enqueue(message("first"))  # Redis has the script now: it will run it
    redis_server.pause(url)
    try:
        one, many = message("once"), [message("batch", n) for n in range(3)]
        sending = asyncio.gather(broker.enqueue(one), broker.enqueue_many(many))
        await asyncio.sleep(1.0)  # the watchdog fired: the enqueues wait to be sent again
    finally:
        redis_server.resume(url)
    async with asyncio.timeout(30):  # a hang guard
        await sending
    got = await broker.reserve(100, 0.5)
    assert sorted(m.name for m in got) == ["batch", "batch", "batch", "first", "once"]
    await broker.close()


async def test_a_large_enqueue_many_goes_in_bounded_calls_in_order(
    redis_url: str, prefix: str
) -> None:
    """A batch larger than ``enqueue_chunk`` is several ENQUEUE calls (no one call of a
    million messages runs past the socket timeout), in submit order, each message once."""
    broker = RedisBroker(redis_url, prefix=prefix)
    await broker.connect()
    assert broker.enqueue_chunk == 10_000
    broker.enqueue_chunk = 3
    sizes: list[int] = []
    send = broker.pipe.request_script

    def counting(script: Any, keys: Any, args: Any) -> Any:
        sizes.append((len(args) - 3) // 4)
        return send(script, keys, args)

    broker.pipe.request_script = counting  # type: ignore[method-assign]
    batch = [message("n", n) for n in range(10)]
    await broker.enqueue_many(batch)
    assert sizes == [3, 3, 3, 1]
    got = await broker.reserve(100, 0.5)
    assert [m.args for m in got] == [(n,) for n in range(10)]
    await broker.close()
