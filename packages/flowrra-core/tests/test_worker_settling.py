"""The settler (flowrra.worker.settling): each outcome recorded, then its message settled
with the broker, never acked before its record is stored; writes already under way
settled by the settle loop, at most ``bound`` of them waiting."""

from __future__ import annotations

import asyncio
import time

from flowrra import MemoryBackend, MemoryBroker, TaskStatus
from flowrra.events import EventHub, TaskEvent
from flowrra.exceptions import BackendError
from flowrra.task import TaskMessage, TaskResult
from flowrra.worker.settling import Settler


class AckingBroker(MemoryBroker):
    """A memory broker that keeps the ids it was asked to ack, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.acked: list[str] = []

    async def ack(self, message: TaskMessage) -> None:
        self.acked.append(message.id)


class DeferredBackend(MemoryBackend):
    """SUCCESS writes are under way when ``store`` returns (a Future), as a networked
    backend's are; they land, or fail, when the test says so."""

    sends_when_called = True

    def __init__(self) -> None:
        super().__init__()
        self.in_flight: list[tuple[asyncio.Future[None], str, TaskResult]] = []

    def store(self, task_id: str, result: TaskResult):  # type: ignore[override]
        if result.status is not TaskStatus.SUCCESS:
            return super().store(task_id, result)
        landed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.in_flight.append((landed, task_id, result))
        return landed

    async def land(self, error: Exception | None = None) -> None:
        for landed, task_id, result in self.in_flight:
            if error is None:
                await MemoryBackend.store(self, task_id, result)
                landed.set_result(None)
            else:
                landed.set_exception(error)
        self.in_flight.clear()


def message(task_id: str = "t1", attempt: int = 0) -> TaskMessage:
    return TaskMessage(
        task_id, "job", (1,), {"k": 2}, priority=5, attempt=attempt, submitted_at=time.time()
    )


def outcome(msg: TaskMessage, status: TaskStatus, value: object = None) -> TaskResult:
    now = time.time()
    if status is TaskStatus.SUCCESS:
        return TaskResult.succeeded(msg, value, started=now, finished=now)
    if status is TaskStatus.RETRYING:
        return TaskResult.retrying(msg, "RuntimeError: no", started=now)
    return TaskResult.failed(msg, "RuntimeError: no", started=now, finished=now)


def settler_for(
    broker: MemoryBroker, backend: MemoryBackend, *held: TaskMessage
) -> tuple[Settler, dict[str, TaskMessage]]:
    """A settler, and the messages it holds under lease (as the reserver left them)."""
    leased = {m.id: m for m in held}
    return Settler(broker, backend, EventHub(), leased), leased


async def turns(n: int = 20) -> None:
    """Let the event loop run ``n`` times (no clock involved)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_success_is_stored_then_published_acked_and_counted() -> None:
    broker, backend, msg = AckingBroker(), MemoryBackend(), message()
    settler, held = settler_for(broker, backend, msg)
    events: list[TaskEvent] = []
    settler.events.add_listener(events.append)
    await settler.succeeded(msg, outcome(msg, TaskStatus.SUCCESS, {"ok": True}))
    stored = await backend.get("t1")
    assert stored is not None and stored.status is TaskStatus.SUCCESS
    assert stored.result == {"ok": True}
    assert broker.acked == ["t1"] and settler.processed == 1
    assert [e.status for e in events] == [TaskStatus.SUCCESS]
    assert held == {}  # its lease is no longer kept


async def test_a_value_that_cannot_be_stored_is_recorded_failed() -> None:
    broker, backend, msg = AckingBroker(), MemoryBackend(), message()
    settler, _ = settler_for(broker, backend, msg)
    await settler.succeeded(msg, outcome(msg, TaskStatus.SUCCESS, object()))
    stored = await backend.get("t1")
    assert stored is not None and stored.status is TaskStatus.FAILED
    assert (stored.error or "").startswith("SerializationError:") and stored.result is None
    assert broker.acked == ["t1"]


async def test_a_write_under_way_is_acked_only_once_it_lands() -> None:
    broker, backend = AckingBroker(), DeferredBackend()
    first, second = message("a"), message("b")
    settler, held = settler_for(broker, backend, first, second)
    settler.start(bound=4)
    await settler.succeeded(first, outcome(first, TaskStatus.SUCCESS))
    await settler.succeeded(second, outcome(second, TaskStatus.SUCCESS))
    await turns()
    # handed over: the caller is free, nothing acked, both still held under lease
    assert len(backend.in_flight) == 2 and broker.acked == [] and settler.processed == 0
    assert set(held) == {"a", "b"}
    await backend.land()
    await turns()
    assert broker.acked == ["a", "b"] and settler.processed == 2 and held == {}
    await settler.stop()


async def test_a_write_that_fails_leaves_the_message_to_its_lease() -> None:
    broker, backend, msg = AckingBroker(), DeferredBackend(), message()
    settler, held = settler_for(broker, backend, msg)
    settler.start(bound=4)
    await settler.succeeded(msg, outcome(msg, TaskStatus.SUCCESS))
    await turns()
    await backend.land(BackendError("connection lost"))
    await turns()
    # not acked, not counted, and its lease is no longer renewed: it will come back
    assert broker.acked == [] and settler.processed == 0 and held == {}
    await settler.stop()


async def test_at_most_bound_writes_wait_for_the_settle_loop() -> None:
    broker, backend = AckingBroker(), DeferredBackend()
    a, b, c = message("a"), message("b"), message("c")
    settler, _ = settler_for(broker, backend, a, b, c)
    settler.start(bound=1)
    await settler.succeeded(a, outcome(a, TaskStatus.SUCCESS))
    await turns()  # the settle loop took [a] and waits for it to land
    await settler.succeeded(b, outcome(b, TaskStatus.SUCCESS))  # one waiting: the bound
    third = asyncio.create_task(settler.succeeded(c, outcome(c, TaskStatus.SUCCESS)))
    await turns()
    assert not third.done() and [tid for _, tid, _ in backend.in_flight] == ["a", "b"]
    await backend.land()  # a and b land; the loop takes b's batch and makes room for c
    await asyncio.wait_for(third, 5)
    assert [tid for _, tid, _ in backend.in_flight] == ["c"]
    await backend.land()
    await turns()
    assert broker.acked == ["a", "b", "c"]
    await settler.stop()


async def test_close_lets_the_settle_loop_finish_what_it_holds() -> None:
    broker, backend, msg = AckingBroker(), DeferredBackend(), message()
    settler, held = settler_for(broker, backend, msg)
    settler.start(bound=4)
    await settler.succeeded(msg, outcome(msg, TaskStatus.SUCCESS))
    landing = asyncio.get_running_loop().create_task(backend.land())
    await settler.close(timeout=30)  # returns once the loop has nothing left
    assert broker.acked == ["t1"] and held == {}
    await landing
    await settler.stop()


async def test_stop_drops_writes_still_under_way_and_keeps_their_messages_held() -> None:
    broker, backend, msg = AckingBroker(), DeferredBackend(), message()
    settler, held = settler_for(broker, backend, msg)
    settler.start(bound=4)
    await settler.succeeded(msg, outcome(msg, TaskStatus.SUCCESS))
    await settler.close(timeout=0)
    await settler.stop()
    # the drain releases it (durable broker) or records it FAILED (in memory)
    assert broker.acked == [] and list(held) == ["t1"]


async def test_a_retry_is_recorded_then_requeued_with_its_due_time() -> None:
    broker, backend, msg = AckingBroker(), MemoryBackend(), message(attempt=1)
    settler, held = settler_for(broker, backend, msg)
    events: list[TaskEvent] = []
    settler.events.add_listener(events.append)
    before = time.time()
    await settler.retry(msg, outcome(msg, TaskStatus.RETRYING), delay=60.0)
    stored = await backend.get("t1")
    assert stored is not None and stored.status is TaskStatus.RETRYING
    assert [(e.status, e.retry_in) for e in events] == [(TaskStatus.RETRYING, 60.0)]
    (retry,) = await broker.purge()
    assert retry.id == "t1" and retry.attempt == 2 and retry.eta is not None
    assert retry.eta >= before + 60.0
    assert (retry.args, retry.kwargs, retry.priority) == (msg.args, msg.kwargs, msg.priority)
    assert broker.acked == [] and settler.processed == 1 and held == {}


async def test_a_failure_for_good_is_recorded_then_acked() -> None:
    broker, backend, msg = AckingBroker(), MemoryBackend(), message()
    settler, held = settler_for(broker, backend, msg)
    await settler.failed(msg, outcome(msg, TaskStatus.FAILED))
    stored = await backend.get("t1")
    assert stored is not None and stored.status is TaskStatus.FAILED
    assert broker.acked == ["t1"] and broker.pending_count() == 0
    assert settler.processed == 1 and held == {}


async def test_a_message_that_cannot_run_is_dead_lettered_and_recorded() -> None:
    broker, backend = AckingBroker(), MemoryBackend()
    unknown, garbled, anonymous = message("u"), message("g"), message("")
    garbled.undeliverable = "not JSON"
    settler, held = settler_for(broker, backend, unknown, garbled, anonymous)
    for msg in (unknown, garbled, anonymous):
        await settler.reject(msg)
    assert [m.id for m, _ in broker.dead_letters] == ["u", "g", ""]
    assert broker.dead_letters[1][1] == "not JSON"
    u, g = await backend.get("u"), await backend.get("g")
    assert u is not None and (u.error or "").startswith("TaskNotRegisteredError: task 'job'")
    assert g is not None and g.error == "UndeliverableMessage: not JSON"
    assert g.status is TaskStatus.FAILED and g.finished_at is not None
    assert await backend.get("") is None  # nothing to record it under
    assert broker.acked == [] and settler.processed == 3 and held == {}
