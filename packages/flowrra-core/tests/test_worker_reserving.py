"""The reserver (flowrra.worker.reserving): as many messages as there are idle slots, one
slot waiting on the broker for all of them, every reserved message held under lease, a
failing broker asked again after a back-off, and what it hands out once stopping."""

from __future__ import annotations

import asyncio
import time

import pytest

from flowrra import MemoryBroker
from flowrra.exceptions import BrokerError
from flowrra.task import TaskMessage
from flowrra.worker.reserving import Reserver


class CountingBroker(MemoryBroker):
    """A memory broker that counts its reserve calls and what each asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[int] = []

    async def reserve(self, max_messages: int, timeout: float) -> list[TaskMessage]:
        self.asked.append(max_messages)
        return await super().reserve(max_messages, timeout)


class FlakyBroker(CountingBroker):
    """Fails its first ``failures`` reserves, as a broker whose server restarts would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def reserve(self, max_messages: int, timeout: float) -> list[TaskMessage]:
        if self.failures:
            self.failures -= 1
            self.asked.append(max_messages)
            raise BrokerError("connection refused")
        return await super().reserve(max_messages, timeout)


class SwallowingBroker(CountingBroker):
    """Its client turns a cancellation into another error, as redis-py's can."""

    async def reserve(self, max_messages: int, timeout: float) -> list[TaskMessage]:
        try:
            return await super().reserve(max_messages, timeout)
        except asyncio.CancelledError:
            raise ConnectionError("connection closed while cancelling") from None


def message(task_id: str, priority: int = 0) -> TaskMessage:
    return TaskMessage(task_id, "job", priority=priority, submitted_at=time.time())


async def queue(broker: MemoryBroker, *ids: str) -> None:
    for task_id in ids:
        await broker.enqueue(message(task_id))


async def turns(n: int = 20) -> None:
    """Let the event loop run ``n`` times (no clock involved)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_it_reserves_one_message_per_idle_slot_and_holds_them() -> None:
    broker, held = CountingBroker(), {}
    reserver = Reserver(broker, held)
    reserver.start(slots=4, poll_interval=5)
    await queue(broker, *"abcdef")
    reserver.busy = 1  # one slot is running a task: three are idle
    assert (await reserver.next()).id == "a"
    assert broker.asked == [3] and [m.id for m in reserver.buffer] == ["b", "c"]
    assert list(held) == ["a", "b", "c"]  # under lease until settled
    assert reserver.wanted() == 1  # three slots are busy or have work buffered: at least one
    assert [(await reserver.next()).id for _ in range(2)] == ["b", "c"]
    assert broker.asked == [3] and broker.pending_count() == 3  # taken from the buffer


async def test_one_slot_waits_on_the_broker_for_all_idle_slots() -> None:
    broker, held = CountingBroker(), {}
    reserver = Reserver(broker, held)
    reserver.start(slots=3, poll_interval=60)
    slots = [asyncio.create_task(reserver.next()) for _ in range(3)]
    await turns()
    assert broker.asked == [3]  # one reserve for three idle slots
    await queue(broker, "a", "b", "c")
    got = await asyncio.wait_for(asyncio.gather(*slots), 5)
    assert sorted(m.id for m in got) == ["a", "b", "c"] and broker.asked == [3]


async def _futures_per_arrival(slots: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """Futures made on the loop while ``slots`` idle slots take one message and settle back
    to waiting: an idle slot woken for nothing makes a new one to wait again."""
    broker, held = CountingBroker(), {}
    reserver = Reserver(broker, held)
    reserver.start(slots=slots, poll_interval=60)

    async def slot() -> None:
        while (await reserver.next()) is not None:
            pass

    tasks = [asyncio.create_task(slot()) for _ in range(slots)]
    await turns()
    loop = asyncio.get_running_loop()
    made = 0
    create_future = loop.create_future

    def counting() -> asyncio.Future[object]:
        nonlocal made
        made += 1
        return create_future()

    monkeypatch.setattr(loop, "create_future", counting)
    await queue(broker, "a")
    await turns(50)
    monkeypatch.undo()
    assert list(held) == ["a"] and len(broker.asked) == 2  # taken; the next wait is on
    reserver.stop(empty_queue=False)
    await asyncio.gather(*tasks, return_exceptions=True)
    return made


async def test_an_arrival_wakes_only_the_slot_that_takes_it_and_the_next_fetcher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    few = await _futures_per_arrival(3, monkeypatch)
    many = await _futures_per_arrival(100, monkeypatch)
    assert many == few  # 97 more idle slots cost nothing when a message arrives


async def test_a_fetcher_cancelled_hands_the_wait_on_the_broker_to_an_idle_slot() -> None:
    broker, held = CountingBroker(), {}
    reserver = Reserver(broker, held)
    reserver.start(slots=3, poll_interval=60)
    slots = [asyncio.create_task(reserver.next()) for _ in range(3)]
    await turns()
    assert broker.asked == [3]
    fetcher = next(t for t in slots if t is reserver._fetcher)
    fetcher.cancel()
    await turns()
    assert len(broker.asked) == 2  # an idle slot waits on the broker in its place
    await queue(broker, "a")
    done, _ = await asyncio.wait(slots, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    assert [t.result().id for t in done if not t.cancelled()] == ["a"]
    reserver.stop(empty_queue=False)
    await asyncio.gather(*slots, return_exceptions=True)


async def test_a_broker_that_fails_is_asked_again_after_a_back_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker, held = FlakyBroker(failures=2), {}
    reserver = Reserver(broker, held)
    reserver.start(slots=1, poll_interval=5)
    await queue(broker, "a")
    got = await asyncio.wait_for(reserver.next(), 10)
    assert got is not None and got.id == "a" and list(held) == ["a"]
    assert len(broker.asked) == 3  # two failures, then the delivery
    warnings = [r.getMessage() for r in caplog.records if r.name == "flowrra.worker"]
    assert warnings == [
        "could not reserve tasks (attempt 1); retrying in 0.1s",
        "could not reserve tasks (attempt 2); retrying in 0.2s",
    ]


async def test_stop_cancels_the_wait_on_the_broker_even_through_a_swallowing_client() -> None:
    broker, held = SwallowingBroker(), {}
    reserver = Reserver(broker, held)
    reserver.start(slots=2, poll_interval=60)
    fetcher = asyncio.create_task(reserver.next())
    idle = asyncio.create_task(reserver.next())
    await turns()
    reserver.stop(empty_queue=False)
    # the fetcher is cancelled (no back-off, no retry); the idle slot is told to end
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(fetcher, 5)
    assert await asyncio.wait_for(idle, 5) is None
    assert len(broker.asked) == 1 and reserver.stopping


async def test_once_stopped_it_hands_out_nothing_more_on_a_durable_broker() -> None:
    broker, held = CountingBroker(), {}
    reserver = Reserver(broker, held)
    reserver.start(slots=2, poll_interval=5)
    await queue(broker, "a")
    reserver.stop(empty_queue=False)
    assert await reserver.next() is None
    assert broker.asked == [] and broker.pending_count() == 1  # left for other workers


async def test_once_stopped_it_empties_a_queue_that_dies_with_the_process() -> None:
    broker, held = CountingBroker(), {}
    reserver = Reserver(broker, held)
    reserver.start(slots=2, poll_interval=60)
    await queue(broker, "a", "b", "c")
    reserver.stop(empty_queue=True)
    got = [await reserver.next() for _ in range(4)]
    assert [m.id if m else None for m in got] == ["a", "b", "c", None]
    assert broker.pending_count() == 0 and list(held) == ["a", "b", "c"]
