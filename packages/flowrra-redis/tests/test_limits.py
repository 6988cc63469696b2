"""Rate and concurrency limits across three real worker processes on a real Redis: the
observed start rate and concurrency stay within the limits, and unlimited tasks submitted
alongside are not held behind the limited ones."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
import redis
from apps import limits_app, redis_app
from conftest import Workers
from flowrra_redis import RedisBroker

from flowrra import Flowrra, RateLimit, TaskStatus
from flowrra.clock import ManualClock
from flowrra.limits import TaskLimits
from flowrra.queues import QueueSelection
from flowrra.testing import message

pytestmark = pytest.mark.timeout(120)


async def _all_done(producer: Flowrra, ids: Sequence[str]) -> list[object]:
    done = await asyncio.gather(*(producer.wait_for_result(i, timeout=60) for i in ids))
    assert all(r.status is TaskStatus.SUCCESS for r in done), done
    return [r.result for r in done]


async def _pending(producer: Flowrra, ids: Sequence[str]) -> int:
    """How many of ``ids`` have not completed yet."""
    records = await asyncio.gather(*(producer.get_result(i) for i in ids))
    return sum(1 for r in records if r is None or not r.is_complete)


def _most_in_a_window(starts: list[float], window: float) -> int:
    starts = sorted(starts)
    most, first = 0, 0
    for last, at in enumerate(starts):
        while at - starts[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


async def test_a_rate_limit_holds_across_three_workers(
    producer: Flowrra, workers: Workers, sync_redis: redis.Redis, prefix: str
) -> None:
    for _ in range(3):
        workers.start("-c", "8", app="limits_app:app")
    limited = await producer.submit_many(limits_app.ten_per_second, [(n,) for n in range(40)])
    free = await producer.submit_many(redis_app.record, [(n,) for n in range(40)])
    assert await _all_done(producer, free) == list(range(40))
    # 40 starts at 10 per second take three seconds at least: the unlimited tasks, queued
    # behind them, did not wait for them.
    assert await _pending(producer, limited) > 0
    assert await _all_done(producer, limited) == list(range(40))
    starts = [float(s) for s in sync_redis.lrange(f"{prefix}:starts", 0, -1)]
    assert len(starts) == 40
    # The broker decides at reserve; a task notes its start a little later, by a delay
    # that varies: windows a fifth shorter than the limit's absorb that.
    assert _most_in_a_window(starts, 0.8) <= 10, sorted(starts)
    assert max(starts) - min(starts) >= 3 * 0.8, "30 of the 40 waited for later windows"


async def test_max_concurrency_is_never_exceeded_across_three_workers(
    producer: Flowrra, workers: Workers, sync_redis: redis.Redis, prefix: str
) -> None:
    for _ in range(3):
        workers.start("-c", "8", app="limits_app:app")
    limited = await producer.submit_many(limits_app.at_most_two, [(n, 0.2) for n in range(16)])
    free = await producer.submit_many(redis_app.record, [(n,) for n in range(40)])
    assert await _all_done(producer, free) == list(range(40))
    # 16 runs of 0.2 s, two at a time, take 1.6 s at least.
    assert await _pending(producer, limited) > 0
    assert await _all_done(producer, limited) == list(range(16))
    seen = [int(n) for n in sync_redis.lrange(f"{prefix}:running", 0, -1)]
    assert len(seen) == 16
    assert max(seen) <= 2, seen


async def test_limits_hold_when_a_worker_takes_several_queues(redis_url: str, prefix: str) -> None:
    """LIMITED_RESERVE_QUEUES: the wrapped several-queue script defers and frees as the
    one-queue one does, each message in its own queue."""
    clock = ManualClock()
    broker = RedisBroker(redis_url, prefix=prefix, clock=clock)
    await broker.connect()
    try:
        broker.consume(QueueSelection.of(["lim-a", "lim-b"]))
        broker.limit(
            {
                "one": TaskLimits(max_concurrency=1),
                "rated": TaskLimits(rate=RateLimit(1, 5)),
            }
        )
        await broker.enqueue_many([message("one", n, queue="lim-a") for n in range(2)])
        await broker.enqueue_many([message("one", n, queue="lim-b") for n in range(2)])
        await broker.enqueue_many([message("rated", n, queue="lim-b") for n in range(2)])
        await broker.enqueue_many([message("free", n, queue="lim-a") for n in range(3)])
        first = await broker.reserve(20, 1.0)
        assert sorted(m.name for m in first) == ["free"] * 3 + ["one", "rated"], first
        stats = await broker.queue_stats()
        assert stats["lim-a"]["delayed"] + stats["lim-b"]["delayed"] == 4, stats
        running = next(m for m in first if m.name == "one")
        await broker.ack(running)
        [second] = await broker.reserve(20, 2.0)
        assert second.name == "one" and second.id != running.id
        clock.advance(5)
        await broker.ack(second)
        rest = []
        while len(rest) < 3:
            got = await broker.reserve(20, 2.0)
            assert got, rest
            for m in got:
                await broker.ack(m)
            rest += got
            clock.advance(5)
        assert sorted(m.name for m in rest) == ["one", "one", "rated"], rest
        assert {m.queue for m in rest if m.name == "one"} <= {"lim-a", "lim-b"}
    finally:
        await broker.close()
