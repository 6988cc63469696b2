"""What makes the Redis plugin fast, on a real server: records written in bursts, acks
carried by the next reserve, variadic script commands, and the pipeline's reply parsing
(errors, unknown scripts, the reply watchdog)."""

from __future__ import annotations

import asyncio
import gc
import inspect
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.exceptions as redis_errors
from flowrra_redis import RedisBackend, RedisBroker
from flowrra_redis.backend import decode_event
from flowrra_redis.broker import ACK_DELAY
from flowrra_redis.connection import connect_client
from flowrra_redis.pipeline import AutoPipeline, Script
from flowrra_redis.records import BURST_LIMIT, INLINE_LIMIT

from flowrra import TaskStatus
from flowrra.exceptions import SerializationError
from flowrra.task import TaskResult, new_task_id
from flowrra.testing import message


async def test_a_superseded_record_is_not_written_but_its_event_is(
    redis_url: str, prefix: str
) -> None:
    backend = RedisBackend(redis_url, prefix=prefix)
    await backend.connect()
    task_id = new_task_id()
    async with backend.subscribe_events() as events:
        running = TaskResult(task_id, TaskStatus.RUNNING, task_name="x", submitted_at=time.time())
        done = TaskResult(
            task_id, TaskStatus.SUCCESS, task_name="x", result=7, submitted_at=time.time()
        )
        # The same loop turn: one script call, which skips the RUNNING write.
        await asyncio.gather(backend.store(task_id, running), backend.store(task_id, done))
        seen = [(await anext(events)).status for _ in range(2)]
    assert seen == [TaskStatus.RUNNING, TaskStatus.SUCCESS]
    stored = await backend.get(task_id)
    assert stored is not None and stored.status is TaskStatus.SUCCESS and stored.result == 7
    await backend.close()


async def test_a_pending_record_twice_in_one_call_is_written_and_counted_once(
    redis_url: str, prefix: str
) -> None:
    """PENDING records of one call go in one MSETNX when none is stored; a task's PENDING
    twice in the call (two stores in one loop turn) takes the SET NX path: the first is
    kept and counted once, as when they come in two calls (MSETNX would keep the last,
    and count both)."""
    backend = RedisBackend(redis_url, prefix=prefix)
    await backend.connect()
    try:
        twice, other = new_task_id(), new_task_id()
        first = TaskResult(twice, TaskStatus.PENDING, task_name="x", submitted_at=time.time())
        second = TaskResult(twice, TaskStatus.PENDING, task_name="y", submitted_at=time.time())
        alone = TaskResult(other, TaskStatus.PENDING, task_name="x", submitted_at=time.time())
        await asyncio.gather(
            backend.store(twice, first), backend.store(other, alone), backend.store(twice, second)
        )
        stored = await backend.get(twice)
        assert stored is not None and stored.task_name == "x"
        assert (await backend.counts(1))["totals"]["pending"] == 2
    finally:
        await backend.close()


async def test_a_subscription_holds_once_entered(redis_url: str, prefix: str) -> None:
    """``subscribe_events`` returns after Redis confirmed the SUBSCRIBE, not after sending
    it: what another process publishes right after entry is seen, every time."""
    backend = RedisBackend(redis_url, prefix=prefix)
    other = RedisBackend(redis_url, prefix=prefix)
    await backend.connect()
    await other.connect()
    client = redis.asyncio.Redis.from_url(redis_url)
    for _ in range(20):
        async with backend.subscribe_events() as events:
            subscribers = await client.pubsub_numsub(backend.keys.events)
            assert subscribers == [(backend.keys.events.encode(), 1)]
            task_id = new_task_id()
            record = TaskResult(
                task_id, TaskStatus.SUCCESS, task_name="x", result=1, submitted_at=time.time()
            )
            await other.store(task_id, record)
            async with asyncio.timeout(5):
                assert (await anext(events)).task_id == task_id
    await client.aclose()
    await other.close()
    await backend.close()


async def test_a_large_record_publishes_a_small_event(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    """Monitors get the status of a task with a large result, not the result itself; a
    waiter still gets all of it."""
    backend = RedisBackend(redis_url, prefix=prefix)
    await backend.connect()
    task_id = new_task_id()
    large = "x" * (INLINE_LIMIT + 1)
    pubsub = sync_redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(backend.keys.events)
    waiting = asyncio.create_task(backend.wait_for(task_id, timeout=5))
    await asyncio.sleep(0.1)
    error = "ValueError: " + "y" * 5000
    record = TaskResult(
        task_id,
        TaskStatus.FAILED,
        task_name="big",
        result=large,
        error=error,
        submitted_at=time.time(),
    )
    record.args = (large,)
    await backend.store(task_id, record)
    got = await waiting
    assert got is not None and got.result == large and got.args == (large,)
    deadline = time.monotonic() + 2
    published = None
    while published is None and time.monotonic() < deadline:
        published = pubsub.get_message(timeout=0.1)
    assert published is not None and len(published["data"]) < 2000
    event = decode_event(published["data"])
    assert event.task_id == task_id and event.status is TaskStatus.FAILED
    assert event.error is not None and event.error.startswith("ValueError: yyy")
    pubsub.close()
    await backend.close()


async def test_records_of_one_turn_are_one_script_call(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    backend = RedisBackend(redis_url, prefix=prefix)
    await backend.connect()
    ids = [new_task_id() for _ in range(20)]
    records = [
        TaskResult(i, TaskStatus.SUCCESS, task_name="x", result=n) for n, i in enumerate(ids)
    ]
    await backend.store_many(records)
    assert [(await backend.get(i)).result for i in ids] == list(range(20))  # type: ignore[union-attr]
    assert len(await backend.list(limit=100)) == 20
    event = decode_event(sync_redis.get(backend.keys.result(ids[3])) or b"")
    assert event.task_id == ids[3] and event.status is TaskStatus.SUCCESS
    await backend.close()


async def test_a_large_store_many_goes_out_as_it_is_encoded(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    """Records go out in script calls of BURST_LIMIT while the rest are encoded; one that
    cannot be encoded raises, and the ones before it are stored, with nothing left
    unretrieved."""
    backend = RedisBackend(redis_url, prefix=prefix)
    await backend.connect()
    ids = [new_task_id() for _ in range(BURST_LIMIT * 2 + 10)]
    records = [
        TaskResult(i, TaskStatus.PENDING, task_name="x", submitted_at=time.time()) for i in ids
    ]
    stored = backend.store_many(records)
    writer = backend._records()
    assert (
        writer._burst is not None and len(writer._burst.keys) == 2 * 10
    )  # two went out (2 keys a record)
    await stored
    assert sync_redis.exists(*(backend.keys.result(i) for i in ids)) == len(ids)

    good = [new_task_id() for _ in range(BURST_LIMIT + 5)]
    bad = TaskResult(new_task_id(), TaskStatus.SUCCESS, task_name="x", result=object())
    with pytest.raises(SerializationError):
        backend.store_many(
            [TaskResult(i, TaskStatus.SUCCESS, task_name="x", result=1) for i in good] + [bad]
        )
    await asyncio.sleep(0.1)  # the partial burst goes out at the next loop turn
    assert sync_redis.exists(*(backend.keys.result(i) for i in good)) == len(good)
    assert not sync_redis.exists(backend.keys.result(bad.task_id))
    await backend.close()


async def test_an_ack_while_waiting_for_work_is_sent_without_waking_the_worker(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    broker = RedisBroker(redis_url, prefix=prefix)
    await broker.connect()
    await broker.enqueue(message("x"))
    [held] = await broker.reserve(1, 1.0)
    waiting = asyncio.create_task(broker.reserve(1, 5.0))  # blocks: the queue is empty
    await asyncio.sleep(0.2)
    await broker.ack(held)
    deadline = time.monotonic() + 2.0
    while sync_redis.zcard(broker.keys.leased) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert sync_redis.zcard(broker.keys.leased) == 0  # within ACK_DELAY, on its own
    assert not waiting.done()
    waiting.cancel()
    await broker.close()


async def test_a_stopped_wait_hands_back_what_it_reserved_and_keeps_its_acks(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    """The RESERVE pipelined behind a BLPOP runs even if the waiter gave up: what it
    leased is released at once, and the acks it carried are sent again."""
    broker = RedisBroker(redis_url, prefix=prefix)
    await broker.connect()
    await broker.enqueue_many([message("x"), message("y")])
    [done] = await broker.reserve(1, 1.0)
    [_other] = await broker.reserve(1, 1.0)  # the queue is empty now
    await broker.ack(done)  # deferred: it rides the next RESERVE
    waiting = asyncio.create_task(broker.reserve(1, 5.0))
    await asyncio.sleep(0.2)  # BLPOP and its RESERVE (with the ack) are on the wire
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    late = message("z")
    await broker.enqueue(late)  # wakes the BLPOP: the RESERVE leases "z" for nobody
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        leased = sync_redis.zrange(broker.keys.leased, 0, -1)
        if leased == [_other.receipt] and sync_redis.zcard(broker.keys.queue) == 1:
            break
        await asyncio.sleep(0.02)
    assert sync_redis.zrange(broker.keys.leased, 0, -1) == [_other.receipt]
    [again] = await broker.reserve(1, 1.0)
    assert again.id == late.id
    await broker.close()


async def test_acks_travel_with_the_next_reserve(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    broker = RedisBroker(redis_url, prefix=prefix)
    await broker.connect()
    await broker.enqueue_many([message("x") for _ in range(3)])
    first = await broker.reserve(2, 1.0)
    for held in first:
        await broker.ack(held)
    assert sync_redis.zcard(broker.keys.leased) == 2  # not sent yet: deferred
    [last] = await broker.reserve(5, 1.0)
    assert sync_redis.zrange(broker.keys.leased, 0, -1) == [last.receipt]
    await broker.ack(last)
    assert (await broker.queue_depths())["leased"] == 0
    await broker.close()


async def test_an_ack_no_reserve_takes_is_sent_after_a_short_delay(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    """Other slots run long tasks, so no reserve comes: the ack must not wait for one (the
    lease would expire and the settled message run again)."""
    broker = RedisBroker(redis_url, prefix=prefix)
    await broker.connect()
    await broker.enqueue_many([message("x") for _ in range(2)])
    done, _still_running = await broker.reserve(2, 1.0)
    await broker.ack(done)
    await asyncio.sleep(ACK_DELAY)
    deadline = time.monotonic() + 2.0
    while sync_redis.zcard(broker.keys.leased) > 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert sync_redis.zrange(broker.keys.leased, 0, -1) == [_still_running.receipt]
    await broker.close()


async def test_batches_larger_than_a_lua_stack(redis_url: str, prefix: str) -> None:
    broker = RedisBroker(redis_url, prefix=prefix)
    await broker.connect()
    sent = [message("x", priority=n % 3) for n in range(9_000)]
    await broker.enqueue_many(sent)
    got = await broker.reserve(9_000, 1.0)
    expected = sorted(sent, key=lambda m: m.priority)  # stable: FIFO within a priority
    assert [m.id for m in got] == [m.id for m in expected]
    for held in got:
        await broker.ack(held)
    assert await broker.reserve(1, 0) == []
    assert (await broker.queue_depths())["leased"] == 0
    await broker.close()


@pytest.fixture
async def pipe(redis_url: str) -> AsyncIterator[AutoPipeline]:
    client = connect_client(redis_url, max_connections=2, socket_timeout=5, retry_on_timeout=True)
    pipeline = AutoPipeline(client, timeout=0.3, retries=0)
    yield pipeline
    await pipeline.close()
    await client.aclose()


async def test_error_replies_fail_their_command_only(pipe: AutoPipeline, prefix: str) -> None:
    key = f"{prefix}:text"
    ok, bad, after = await asyncio.gather(
        pipe.execute("SET", key, "abc"),
        pipe.execute("INCR", key),
        pipe.execute("GET", key),
        return_exceptions=True,
    )
    assert ok is True or ok == b"OK"
    assert isinstance(bad, redis_errors.ResponseError)
    assert after == b"abc"
    await pipe.execute("DEL", key)


async def test_an_unknown_script_is_sent_with_its_body(pipe: AutoPipeline) -> None:
    script = Script(f"return '{new_task_id()}'")  # never loaded before
    assert await pipe.run_script(script, [], []) == script.body[8:-1].encode()


class _Sink:
    def __init__(self) -> None:
        self.got: list[Any] = []

    def done(self) -> bool:
        return bool(self.got)

    def set_result(self, result: Any, /) -> None:
        self.got.append(result)

    def set_exception(self, exception: BaseException, /) -> None:
        self.got.append(exception)


async def test_a_reply_settles_its_sink_in_the_call_that_parsed_it(pipe: AutoPipeline) -> None:
    """No future in between: a batch writer's waiters are settled by ``data_received``
    itself, not one or two loop turns later."""
    script = Script("return ARGV[1]")
    await pipe.run_script(script, [], ["warm"])  # connected, and the script is known
    link = pipe._link
    assert link is not None
    writes: list[bytes] = []
    write = link.transport.write
    link.transport.write = lambda data: (writes.append(bytes(data)), write(data))[1]  # type: ignore[method-assign]

    sink = _Sink()
    ping = pipe.request(("PING",))
    pipe.before_flush(lambda: pipe.request_script_into(sink, script, [], ["in place"]))
    await ping  # the PONG and the script's reply come back in order
    assert len(writes) == 1  # the before-flush command left with the PING
    if not sink.done():  # its reply may still be on the way; parsed, it settles at once
        reply = await asyncio.wait_for(_replied(link), 2)
        assert reply and sink.done()
    assert sink.got == [b"in place"]

    failing = Script("return redis.error_reply('nope')")
    with pytest.raises(redis_errors.ResponseError):
        await pipe.run_script(failing, [], [])  # now the server knows it
    sink = _Sink()
    pipe.request_script_into(sink, failing, [], [])
    await pipe.execute("PING")  # answered after it
    assert len(sink.got) == 1 and isinstance(sink.got[0], redis_errors.ResponseError)


async def _replied(link: Any) -> bool:
    while link.sent:
        await asyncio.sleep(0)
    return True


async def test_commands_lost_with_a_connection_keep_their_order(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    """What a dropped connection took with it is sent again before anything queued
    during the reconnect's backoff (a RUNNING record retried after the SUCCESS queued
    meanwhile would be the final record)."""
    client = connect_client(redis_url, max_connections=2, socket_timeout=5, retry_on_timeout=True)
    pipe = AutoPipeline(client, timeout=5, retries=3)
    key = f"{prefix}:order"
    link_id = await pipe.execute("CLIENT", "ID")
    held = pipe.request(("BLPOP", f"{prefix}:nothing", 0.3))  # holds the connection
    first = pipe.request(("RPUSH", key, "first"))  # sent, not run: behind the BLPOP
    await asyncio.sleep(0.05)
    sync_redis.client_kill_filter(_id=link_id)
    await asyncio.sleep(0.02)  # the loss is seen; the reconnect waits for its backoff
    second = pipe.request(("RPUSH", key, "second"))
    assert await asyncio.wait_for(asyncio.gather(held, first, second), 5) == [None, 1, 2]
    assert sync_redis.lrange(key, 0, -1) == [b"first", b"second"]
    await pipe.close()
    await client.aclose()


@pytest.mark.parametrize("retry_on_timeout", [True, False])
async def test_a_timed_out_command_is_retried_only_with_retry_on_timeout(
    redis_url: str, prefix: str, retry_on_timeout: bool
) -> None:
    broker = RedisBroker(
        redis_url, prefix=prefix, socket_timeout=0.3, retry_on_timeout=retry_on_timeout
    )
    pipe = broker.pipe
    lost: list[int] = []  # how many commands each lost connection took with it
    requeue = pipe._requeue
    pipe._requeue = lambda failed, error: (lost.append(len(failed)), requeue(failed, error))[1]  # type: ignore[method-assign]
    with pytest.raises(redis_errors.TimeoutError):
        await pipe.execute("BLPOP", f"{prefix}:never", 5)
    assert lost == ([1, 1, 1, 1] if retry_on_timeout else [1])  # first try + 3 retries
    await broker.close()


async def test_closing_during_a_reconnect_backoff_opens_nothing(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    client = connect_client(redis_url, max_connections=2, socket_timeout=5, retry_on_timeout=True)
    pipe = AutoPipeline(client, timeout=5, retries=3)
    link_id = await pipe.execute("CLIENT", "ID")
    held = pipe.request(("BLPOP", f"{prefix}:nothing", 1))
    await asyncio.sleep(0.05)
    sync_redis.client_kill_filter(_id=link_id)
    await asyncio.sleep(0.02)
    await pipe.close()
    with pytest.raises(redis_errors.ConnectionError, match="closed"):
        await held
    await asyncio.sleep(0.3)  # past the backoff
    assert pipe._link is None and pipe._connecting is None
    with pytest.raises(redis_errors.ConnectionError, match="closed"):
        await pipe.execute("PING")
    await client.aclose()


class _RaisingSink(_Sink):
    def set_result(self, result: Any, /) -> None:
        raise RuntimeError("a broken batch writer")


async def test_a_sink_that_raises_drops_nothing(pipe: AutoPipeline, prefix: str) -> None:
    """Redis ran the command: a caller's bug must not lose the connection, which would
    send the commands behind it again."""
    key = f"{prefix}:count"
    script = Script("return 1")
    await pipe.run_script(script, [], [])
    link = pipe._link
    first = pipe.request(("INCR", key))
    pipe.request_script_into(_RaisingSink(), script, [], [])
    second = pipe.request(("INCR", key))
    assert await asyncio.gather(first, second) == [1, 2]
    assert pipe._link is link and await pipe.execute("GET", key) == b"2"


async def test_a_reply_that_never_comes_times_out(pipe: AutoPipeline, prefix: str) -> None:
    started = time.monotonic()
    with pytest.raises(redis_errors.TimeoutError):
        await pipe.execute("BLPOP", f"{prefix}:never", 5)
    assert time.monotonic() - started < 2
    assert await pipe.execute("PING") in (True, b"PONG")  # a new connection serves on


async def test_a_pending_record_never_replaces_a_later_status(redis_url: str, prefix: str) -> None:
    """submit sends PENDING and the message together; a worker's RUNNING may land first,
    in an earlier script call or in the same one."""
    backend = RedisBackend(redis_url, prefix=prefix)
    await backend.connect()
    earlier, same_call = new_task_id(), new_task_id()
    await backend.store_many([TaskResult(earlier, TaskStatus.RUNNING, task_name="x")])
    await backend.store(earlier, TaskResult(earlier, TaskStatus.PENDING, task_name="x"))
    running = backend.store(same_call, TaskResult(same_call, TaskStatus.RUNNING, task_name="x"))
    await backend.store(same_call, TaskResult(same_call, TaskStatus.PENDING, task_name="x"))
    await running
    for task_id in (earlier, same_call):
        stored = await backend.get(task_id)
        assert stored is not None and stored.status is TaskStatus.RUNNING
    await backend.close()


async def test_a_result_redis_cannot_store_ends_failed_with_the_reason(make_app) -> None:
    """The worker starts storing a SUCCESS record as the task returns (the settler awaits
    it); one that cannot be encoded is stored as FAILED instead, and the message acked."""
    app = make_app()

    @app.task()
    async def returns_object() -> object:
        return object()

    @app.task()
    async def fine() -> int:
        return 1

    async with app:
        bad, good = await app.submit(returns_object), await app.submit(fine)
        result = await app.wait_for_result(bad, timeout=5)
        assert result.status is TaskStatus.FAILED
        assert "SerializationError" in (result.error or "")
        assert (await app.wait_for_result(good, timeout=5)).result == 1
        deadline = time.monotonic() + 5  # acked once the worker has its store's reply
        while (depths := await app.broker.queue_depths())["leased"] and (
            time.monotonic() < deadline
        ):
            await asyncio.sleep(0.02)
    assert depths["leased"] == 0 and depths["queued"] == 0


async def test_close_does_not_wait_for_a_blocked_wait(
    redis_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker stopping while it waits for work closes at once, not when BLPOP times out,
    and the replies it gave up on fail quietly."""
    broker = RedisBroker(redis_url, prefix=prefix)
    await broker.connect()
    waiting = asyncio.create_task(broker.reserve(1, 20.0))
    await asyncio.sleep(0.2)
    waiting.cancel()
    started = time.monotonic()
    await broker.close()
    assert time.monotonic() - started < 5  # BLPOP holds its connection for 20 s
    await asyncio.sleep(0.05)
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_a_task_submitted_while_subscribed_is_awaited_without_a_read(
    make_app, sync_redis: redis.Redis
) -> None:
    """Its PENDING record leaves while this process listens to ``done``, so its
    completion cannot be missed: wait_for needs no GET, whether the completion comes
    before it is called or after. A reconnect of the listener falls back to reading."""
    app = make_app()

    @app.task()
    async def echo(x: int, pause: float = 0.0) -> int:
        await asyncio.sleep(pause)
        return x

    async with app:
        backend = app.backend
        assert isinstance(backend, RedisBackend)
        # Still running when waited for: the wait subscribes the listener.
        await app.wait_for_result(await app.submit(echo, 0, 0.3), timeout=5)
        reads = 0
        original_get = backend.get

        async def counting_get(task_id: str) -> TaskResult | None:
            nonlocal reads
            reads += 1
            return await original_get(task_id)

        backend.get = counting_get  # type: ignore[method-assign]
        waited = await app.wait_for_result(await app.submit(echo, 1), timeout=5)
        early = await app.submit(echo, 2)
        while (await original_get(early)).status is not TaskStatus.SUCCESS:  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # its notification has reached the listener
        kept = await app.wait_for_result(early, timeout=5)
        assert (waited.result, kept.result, reads) == (1, 2, 0)

        # The listener's connection dies: what it may have missed is read instead.
        gate = asyncio.Event()

        @app.task()
        async def gated() -> int:
            await gate.wait()
            return 3

        pending = await app.submit(gated)
        assert backend.expects(pending)
        for client in sync_redis.client_list():
            if int(client.get("sub", 0)) and client.get("db") == str(backend_db(backend)):
                sync_redis.client_kill_filter(_id=client["id"])
        deadline = time.monotonic() + 5
        while backend.expects(pending) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert not backend.expects(pending)
        gate.set()
        assert (await app.wait_for_result(pending, timeout=10)).result == 3
        assert reads >= 1


def backend_db(backend: RedisBackend) -> int:
    return int(backend.client.connection_pool.connection_kwargs.get("db", 0))


async def test_a_store_is_under_way_when_called(redis_url: str, prefix: str) -> None:
    """The worker relies on it: what store returns is not a coroutine yet to start but
    the reply of a write already queued (the settler waits for it)."""
    backend = RedisBackend(redis_url, prefix=prefix)
    await backend.connect()
    task_id = new_task_id()
    stored = backend.store(
        task_id, TaskResult(task_id, TaskStatus.SUCCESS, task_name="x", result=1)
    )
    assert not inspect.iscoroutine(stored)
    await stored
    assert (await backend.get(task_id)).result == 1  # type: ignore[union-attr]
    await backend.close()
