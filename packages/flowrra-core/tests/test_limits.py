"""Task limits in one process (``flowrra.limits``): the options and their errors, a worker
on the in-memory broker keeping them, and a broker that cannot keep them refused. The
broker obligations are in ``flowrra.testing.BrokerContract``; across processes on Redis,
``flowrra-redis``'s ``test_limits.py``."""

from __future__ import annotations

import asyncio
import math

import pytest
from test_list_broker import ListBroker

from flowrra import Flowrra, RateLimit, TaskStatus
from flowrra.config import Config, ExecutorConfig
from flowrra.limits import TaskLimits, limits_of, parse_rate_limit


@pytest.mark.parametrize(
    ("text", "count", "per"),
    [
        ("100/m", 100, 60.0),
        ("10/s", 10, 1.0),
        ("5/h", 5, 3600.0),
        ("30/10s", 30, 10.0),
        (" 1 / minute ", 1, 60.0),
        ("2/0.5s", 2, 0.5),
    ],
)
def test_rate_limits_are_read_from_text(text: str, count: int, per: float) -> None:
    assert parse_rate_limit(text) == RateLimit(count, per)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("100", ValueError, "'100' is not a rate"),
        ("0/s", ValueError, "count must be >= 1"),
        ("10/d", ValueError, "'10/d' is not a rate"),
        ("-1/s", ValueError, "is not a rate"),
        ("10/0s", ValueError, "per_seconds must be finite and > 0"),
        (100, TypeError, "rate_limit must be a str"),
    ],
)
def test_bad_rate_limits_are_refused_naming_the_value(
    value: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        parse_rate_limit(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("count", "per", "error"),
    [
        (True, 1, TypeError),
        (1.5, 1, TypeError),
        (1, math.nan, ValueError),
        (1, math.inf, ValueError),
        (1, -2, ValueError),
        (1, "1", TypeError),
    ],
)
def test_bad_rate_limit_objects_are_refused(count: object, per: object, error: type) -> None:
    with pytest.raises(error, match="RateLimit"):
        RateLimit(count, per)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("most", "error"), [(0, ValueError), (-1, ValueError), (1.0, TypeError), (True, TypeError)]
)
def test_bad_max_concurrency_is_refused_at_registration(most: object, error: type) -> None:
    app = Flowrra()
    with pytest.raises(error, match="max_concurrency"):

        @app.task(max_concurrency=most)  # type: ignore[call-overload]
        async def job() -> None: ...


def test_limits_are_kept_with_the_task() -> None:
    app = Flowrra()

    @app.task(rate_limit="3/s", max_concurrency=2)
    async def limited() -> None: ...

    @app.task()
    async def free() -> None: ...

    assert limits_of(app.registry) == {"limited": TaskLimits(RateLimit(3, 1.0), max_concurrency=2)}


async def test_a_worker_keeps_max_concurrency_and_other_tasks_flow() -> None:
    app = Flowrra(Config(executor=ExecutorConfig(num_workers=8)))
    running = 0
    seen: list[int] = []
    release = asyncio.Event()

    @app.task(max_concurrency=2)
    async def limited(n: int) -> int:
        nonlocal running
        running += 1
        seen.append(running)
        try:
            await release.wait()
        finally:
            running -= 1
        return n

    @app.task()
    async def free(n: int) -> int:
        return n

    # Bounded: a stop racing the last settles once hung for its 30 s drain timeout (a slot
    # woken before stop() waited again for a fetcher that had been cancelled).
    async with asyncio.timeout(20), app:
        held = [await app.submit(limited, n) for n in range(6)]
        quick = [await app.submit(free, n) for n in range(10)]
        done = [await app.wait_for_result(i, timeout=10) for i in quick]
        assert [r.result for r in done] == list(range(10)), "not held behind the limited"
        assert max(seen) == 2 and len(seen) == 2, seen
        release.set()
        results = [await app.wait_for_result(i, timeout=10) for i in held]
    assert all(r.status is TaskStatus.SUCCESS for r in results)
    assert len(seen) == 6 and max(seen) == 2, seen


async def test_a_worker_keeps_a_rate_limit() -> None:
    app = Flowrra(Config(executor=ExecutorConfig(num_workers=8)))
    started: list[float] = []

    @app.task(rate_limit=RateLimit(3, 0.5))
    async def limited(n: int) -> int:
        started.append(app.clock.time())
        return n

    async with app:
        ids = [await app.submit(limited, n) for n in range(7)]
        results = [await app.wait_for_result(i, timeout=10) for i in ids]
    assert sorted(r.result for r in results) == list(range(7))
    assert len(started) == 7
    # The broker decides at reserve, on the same clock, just before the task starts.
    assert started[3] - started[0] >= 0.5 * 0.8 and started[6] - started[3] >= 0.5 * 0.8


async def test_a_broker_that_cannot_keep_limits_is_refused_at_start() -> None:
    app = Flowrra(broker=ListBroker())

    @app.task(rate_limit="1/s")
    async def limited() -> None: ...

    with pytest.raises(ValueError, match=r"tasks limited have rate_limit.*not a flowrra"):
        await app.start()
    await app.stop()
