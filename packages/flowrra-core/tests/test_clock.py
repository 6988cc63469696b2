"""The clock (flowrra.clock): the system clock is the system's time; the manual clock moves
only when a test advances it, and wakes exactly what has come due. The in-memory broker
and ``submit(delay=)`` read due times on the app's clock."""

from __future__ import annotations

import asyncio
import time

import pytest

from flowrra import Flowrra, MemoryBroker
from flowrra.clock import SYSTEM_CLOCK, Clock, ManualClock, SystemClock
from flowrra.task import TaskMessage

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z: whole seconds, so sums of delays are exact


def message(task_id: str, eta: float | None = None) -> TaskMessage:
    return TaskMessage(task_id, "job", eta=eta, submitted_at=T0)


def test_the_system_clock_reads_the_system_time() -> None:
    assert isinstance(SYSTEM_CLOCK, SystemClock) and isinstance(SYSTEM_CLOCK, Clock)
    assert SYSTEM_CLOCK.time is time.time and SYSTEM_CLOCK.monotonic is time.monotonic
    assert isinstance(ManualClock(), Clock)


async def test_the_system_clock_waits_on_the_event_loop() -> None:
    now = SYSTEM_CLOCK.monotonic()
    await SYSTEM_CLOCK.sleep_until(now - 1)  # a moment already past: at once
    with pytest.raises(TimeoutError):
        async with SYSTEM_CLOCK.timeout_at(now):
            await asyncio.Event().wait()


async def test_a_manual_clock_stands_still_until_advanced() -> None:
    clock = ManualClock(start=T0)
    assert clock.time() == clock.monotonic() == T0
    await asyncio.sleep(0)
    assert clock.time() == T0
    clock.advance(2.5)
    assert clock.time() == T0 + 2.5
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)
    assert ManualClock().time() == float(int(ManualClock().time()))  # whole seconds


async def test_advance_wakes_sleepers_whose_moment_came_in_order_of_their_moments() -> None:
    clock = ManualClock(start=T0)
    woke: list[str] = []

    async def sleeper(name: str, when: float) -> None:
        await clock.sleep_until(when)
        woke.append(name)

    tasks = [
        asyncio.create_task(sleeper("late", T0 + 10)),
        asyncio.create_task(sleeper("early", T0 + 5)),
        asyncio.create_task(sleeper("later", T0 + 20)),
    ]
    async with asyncio.timeout(10):
        await clock.waiting(3)
    assert clock.sleepers == 3 and clock.next_wake == T0 + 5
    clock.advance(4.5)
    assert clock.sleepers == 3  # nothing has come due: nothing is woken
    clock.advance(5.5)  # T0 + 10: "early" and "late"
    async with asyncio.timeout(10):
        await asyncio.gather(*tasks[:2])
    assert woke == ["early", "late"] and clock.next_wake == T0 + 20
    tasks[2].cancel()
    await asyncio.gather(tasks[2], return_exceptions=True)
    assert clock.sleepers == 0 and clock.next_wake is None  # a cancelled sleep leaves
    await clock.sleep_until(T0)  # a moment already past: at once


async def test_a_timeout_on_a_manual_clock_expires_when_the_clock_reaches_it() -> None:
    clock = ManualClock(start=T0)
    event = asyncio.Event()

    async def wait() -> str:
        try:
            async with clock.timeout_at(T0 + 3):
                await event.wait()
        except TimeoutError:
            return "timed out"
        return "woken"

    waiting = asyncio.create_task(wait())
    async with asyncio.timeout(10):
        await clock.waiting()
    clock.advance(2)
    assert not waiting.done() and clock.next_wake == T0 + 3
    clock.advance(1)
    assert await asyncio.wait_for(waiting, 10) == "timed out"
    assert clock.sleepers == 0

    again = asyncio.create_task(wait())  # T0 + 3 has passed: it times out at once
    assert await asyncio.wait_for(again, 10) == "timed out"

    async def wait_longer() -> str:
        async with clock.timeout_at(T0 + 60):
            await event.wait()
        return "woken"

    woken = asyncio.create_task(wait_longer())
    async with asyncio.timeout(10):
        await clock.waiting()
    event.set()
    assert await asyncio.wait_for(woken, 10) == "woken" and clock.sleepers == 0


async def test_a_delayed_message_is_due_when_the_brokers_clock_reaches_its_eta() -> None:
    clock = ManualClock(start=T0)
    broker = MemoryBroker(clock=clock)
    await broker.connect()
    await broker.enqueue(message("later", eta=T0 + 30))
    await broker.enqueue(message("past", eta=T0 - 1))
    assert [m.id for m in await broker.reserve(5, 0)] == ["past"]
    reserving = asyncio.create_task(broker.reserve(5, 3600))
    async with asyncio.timeout(10):
        await clock.waiting()
    assert clock.next_wake == T0 + 30  # the reserve waits for exactly the due time
    clock.advance(29)
    assert not reserving.done()
    clock.advance(1)
    got = await asyncio.wait_for(reserving, 10)
    assert [m.id for m in got] == ["later"] and clock.sleepers == 0
    await broker.close()


async def test_submit_delay_is_due_that_long_after_now_on_the_apps_clock() -> None:
    clock = ManualClock(start=T0)
    app = Flowrra(clock=clock)
    assert app.worker.clock is clock and app.broker.clock is clock  # type: ignore[attr-defined]

    @app.task()
    async def job() -> str:
        return "ran"

    async with app:
        task_id = await app.submit(job, delay=90)
        also = await job.with_options(delay=60).submit()
        async with asyncio.timeout(10):
            await clock.waiting()
        assert clock.next_wake == T0 + 60
        clock.advance(60)
        assert (await app.wait_for_result(also, timeout=10)).result == "ran"
        assert not (await app.get_result(task_id)).is_complete  # type: ignore[union-attr]
        clock.advance(30)
        assert (await app.wait_for_result(task_id, timeout=10)).result == "ran"
