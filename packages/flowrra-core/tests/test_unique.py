"""Unique jobs (``flowrra.unique``) on the in-memory broker with a running worker: one task
per key while it is queued, running or retrying, the key derived by ``unique=True``,
``unique_for`` after success, release after success, failure and dead-lettering, the
option rule, the sync twins, and bad input."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from flowrra import Flowrra, MemoryBroker, TaskStatus
from flowrra.brokers.base import BaseBroker
from flowrra.clock import ManualClock
from flowrra.task import TaskMessage, new_task_id
from flowrra.unique import UNIQUE_FOR_HEADER, UNIQUE_HEADER, derived_key

T0 = 1_800_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=T0)


@pytest.fixture
def app(clock: ManualClock) -> Flowrra:
    return Flowrra(clock=clock)


def _broker(app: Flowrra) -> MemoryBroker:
    assert isinstance(app.broker, MemoryBroker)
    return app.broker


async def _records(app: Flowrra) -> int:
    return len(await app.backend.list(limit=1000))


async def test_a_second_submit_with_the_key_gives_the_first_task(app: Flowrra) -> None:
    ran: list[int] = []
    gate = asyncio.Event()

    @app.task()
    async def invoice(n: int) -> int:
        ran.append(n)
        await gate.wait()
        return n

    first = await invoice.with_options(unique_key="invoice:42").submit(42)
    assert await invoice.with_options(unique_key="invoice:42").submit(42) == first  # queued
    assert await app.submit(invoice, 42, unique_key="invoice:42") == first
    assert await _records(app) == 1, "a duplicate writes no record"
    other = await invoice.with_options(unique_key="invoice:43").submit(43)
    assert other != first
    async with app:
        while len(ran) < 2:
            await asyncio.sleep(0.01)
        assert await app.submit(invoice, 42, unique_key="invoice:42") == first  # running
        gate.set()
        assert (await app.wait_for_result(first, timeout=5)).result == 42
        await app.join()
        assert sorted(ran) == [42, 43]
        again = await app.submit(invoice, 42, unique_key="invoice:42")
        assert again != first, "released once it succeeded"
        assert (await app.wait_for_result(again, timeout=5)).status is TaskStatus.SUCCESS
    record = await app.get_result(first)
    assert record is not None and record.headers == {UNIQUE_HEADER: "invoice:42"}


async def test_unique_true_derives_the_key_from_the_arguments(app: Flowrra) -> None:
    @app.task(unique=True)
    async def report(account: int, month: str = "2026-12", *, fmt: str = "pdf") -> str:
        return f"{account}:{month}:{fmt}"

    first = await report.submit(7)
    assert await report.submit(7, "2026-12") == first
    assert await report.submit(account=7, fmt="pdf") == first
    assert await app.submit(report, 7) == first
    assert await report.with_options(priority=3).submit(7) == first
    assert len({first, await report.submit(8), await report.submit(7, "2027-01")}) == 3
    assert await report.submit(7, fmt="csv") != first
    assert derived_key("t", None, (1,), {"x": 1}) == derived_key("t", None, (1,), {"x": 1})
    assert derived_key("t", None, (1,), {"x": 1}) != derived_key("u", None, (1,), {"x": 1})
    assert await _records(app) == 4


def test_the_derived_key_is_pinned() -> None:
    """The derived key must not change between releases (keys outlive a deploy)."""
    assert derived_key("report", None, (7,), {"b": [1, 2], "a": "é"}) == (
        "report:" + _sha256('[[7],{"a":"\\u00e9","b":[1,2]}]')
    )


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_unique_for_keeps_the_key_after_success(app: Flowrra, clock: ManualClock) -> None:
    @app.task(unique=True, unique_for=60)
    async def sync_account(n: int) -> int:
        return n

    async with app:
        first = await sync_account.submit(1)
        await app.wait_for_result(first, timeout=5)
        await app.join()
        assert await sync_account.submit(1) == first, "kept 60 s after it succeeded"
        assert await sync_account.with_options(unique_for=0).submit(1) == first, (
            "a later submit's unique_for does not shorten the key held"
        )
        clock.advance(61)
        later = await sync_account.submit(1)
        assert later != first
        await app.wait_for_result(later, timeout=5)
        # with_options(unique_key=..., unique_for=...) on any task
        plain = await app.submit(_plain(app), 5, unique_key="p", unique_for=30)
        await app.wait_for_result(plain, timeout=5)
        await app.join()
        assert await app.submit(_plain(app), 6, unique_key="p") == plain
        assert await _broker(app).unique_holder("p") == plain


def _plain(app: Flowrra) -> Any:
    handle = app.registry.get("plain")
    if handle is None:

        @app.task(name="plain")
        async def plain(x: int) -> int:
            return x

        handle = plain
    return handle


async def test_a_failure_releases_the_key_whatever_unique_for(app: Flowrra) -> None:
    @app.task(max_retries=0, unique=True, unique_for=3600)
    async def charge(n: int) -> int:
        raise RuntimeError(f"card declined {n}")

    async with app:
        first = await charge.submit(1)
        assert (await app.wait_for_result(first, timeout=5)).status is TaskStatus.FAILED
        await app.join()
        assert await charge.submit(1) != first, "a failed task's key is free"


async def test_a_retrying_task_keeps_its_key(app: Flowrra, clock: ManualClock) -> None:
    attempts: list[int] = []

    @app.task(max_retries=1, retry_delay=30)
    async def flaky(n: int) -> int:
        attempts.append(n)
        if len(attempts) == 1:
            raise ConnectionError("try again")
        return n

    async with app:
        first = await flaky.with_options(unique_key="flaky").submit(1)
        while not attempts:
            await asyncio.sleep(0.01)
        while (await app.get_result(first)).status is not TaskStatus.RETRYING:  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
        assert await flaky.with_options(unique_key="flaky").submit(1) == first
        clock.advance(31)
        assert (await app.wait_for_result(first, timeout=5)).status is TaskStatus.SUCCESS
        await app.join()
        assert await _broker(app).unique_holder("flaky") is None


async def test_a_dead_lettered_task_releases_its_key(app: Flowrra) -> None:
    """A message naming a task the worker does not know is dead-lettered: its key goes."""
    broker = _broker(app)
    lost = TaskMessage(new_task_id(), "nobody.knows")
    lost.headers = {UNIQUE_HEADER: "lost", UNIQUE_FOR_HEADER: "600.0"}
    await broker.enqueue_unique(lost, "lost")
    async with app:
        while not broker.dead_letters:
            await asyncio.sleep(0.01)
        await app.join()
        assert await broker.unique_holder("lost") is None


async def test_the_option_rule_and_the_sync_twins(app: Flowrra) -> None:
    seen: list[Any] = []

    @app.task()
    async def takes_it(x: int, unique_key: str = "") -> str:
        seen.append(unique_key)
        return unique_key

    @app.task(unique=True, unique_for=60)  # held after it ran, too
    def blocking(n: int) -> int:
        return n

    async with app:
        one = await app.submit(takes_it, 1, unique_key="mine")  # the task's own argument
        two = await app.submit(takes_it, 1, unique_key="mine")
        assert one != two
        with_option = await takes_it.with_options(unique_key="k").submit(1, unique_key="arg")
        assert await takes_it.with_options(unique_key="k").submit(1) == with_option
        await app.join()
        assert sorted(seen) == ["arg", "mine", "mine"]
        seen.clear()
        ids = await asyncio.to_thread(lambda: [blocking.delay(3), blocking.delay(3)])
        assert ids[0] == ids[1]
        sync_ids = await asyncio.to_thread(
            lambda: [
                takes_it.with_options(unique_key="s", unique_for=60).delay(1),
                takes_it.with_options(unique_key="s").delay(2),
                app.submit_sync(blocking, 9, priority=1),
                app.submit_sync(blocking, 9),
            ]
        )
        assert sync_ids[0] == sync_ids[1] and sync_ids[2] == sync_ids[3]
        many = await app.submit_many(blocking, [(5,), (5,), (6,)])
        assert many[0] == many[1] != many[2]
        await app.join()


async def test_bad_unique_options_are_refused(app: Flowrra) -> None:
    @app.task()
    async def job(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="unique_key"):
        job.with_options(unique_key=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unique_key"):
        job.with_options(unique_key="")
    with pytest.raises(ValueError, match="unique_key"):
        job.with_options(unique_key="k" * 1025)
    for bad in (float("nan"), -1, float("inf")):
        with pytest.raises(ValueError, match="unique_for"):
            job.with_options(unique_key="k", unique_for=bad)
    with pytest.raises(TypeError, match="unique_for"):
        job.with_options(unique_key="k", unique_for=True)
    with pytest.raises(ValueError, match="unique_for needs a unique_key"):
        job.with_options(unique_for=5)
    with pytest.raises(ValueError, match="unique_for needs a unique_key"):
        await app.submit(job, 1, unique_for=5)
    with pytest.raises(TypeError, match="unique_key"):
        await app.submit(job, 1, unique_key=["k"])
    with pytest.raises(ValueError, match="unique_for needs unique=True"):
        app.task(unique_for=5)(lambda: None)
    with pytest.raises(TypeError, match="unique must be"):
        app.task(unique="yes")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="chain or group step"):
        job.with_options(unique_key="k").s(1)
    assert await _records(app) == 0


async def test_a_broker_without_unique_keys_refuses_a_unique_submit() -> None:
    class Plain(BaseBroker):
        async def enqueue(self, message: TaskMessage) -> None:
            raise AssertionError("not queued")

        async def reserve(self, max_messages: int, timeout: float) -> list[TaskMessage]:
            return []

        def ack(self, message: TaskMessage) -> Any:
            raise AssertionError

        async def requeue(self, message: TaskMessage, retry: TaskMessage) -> None:
            raise AssertionError

        async def dead_letter(self, message: TaskMessage, reason: str) -> None:
            raise AssertionError

        def pending_count(self) -> int:
            return 0

    app = Flowrra(broker=Plain())

    @app.task()
    async def job(x: int) -> int:
        return x

    with pytest.raises(ValueError, match=r"not a flowrra\.protocols\.UniqueJobs"):
        await job.with_options(unique_key="k").submit(1)
    assert await _records(app) == 0
