"""Draining (flowrra.worker.draining): running tasks finish within the grace period and are
settled; then what the worker still holds is released to a durable broker, or recorded
FAILED with the rest of a queue that dies with the process."""

from __future__ import annotations

import asyncio
import time

from flowrra import Config, ExecutorConfig, Flowrra, MemoryBackend, MemoryBroker, TaskStatus
from flowrra.events import EventHub
from flowrra.task import TaskMessage, TaskResult
from flowrra.worker.draining import Drainer
from flowrra.worker.keepalive import Heartbeat, Leases
from flowrra.worker.reserving import Reserver
from flowrra.worker.settling import Settler


class DurableBroker(MemoryBroker):
    """A memory broker that claims durability, keeps what it was asked to ack, and tells
    when a worker waits on it."""

    durable = True

    def __init__(self) -> None:
        super().__init__()
        self.acked: list[str] = []
        self.reserving = asyncio.Event()

    async def reserve(self, max_messages: int, timeout: float) -> list[TaskMessage]:
        self.reserving.set()
        return await super().reserve(max_messages, timeout)

    async def ack(self, message: TaskMessage) -> None:
        self.acked.append(message.id)


class DeferredBackend(MemoryBackend):
    """SUCCESS writes are under way when ``store`` returns; they land when told to."""

    sends_when_called = True

    def __init__(self) -> None:
        super().__init__()
        self.in_flight: list[tuple[asyncio.Future[None], str, TaskResult]] = []
        self.pending = asyncio.Event()

    def store(self, task_id: str, result: TaskResult):  # type: ignore[override]
        if result.status is not TaskStatus.SUCCESS:
            return super().store(task_id, result)
        landed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.in_flight.append((landed, task_id, result))
        self.pending.set()
        return landed

    async def land(self) -> None:
        for landed, task_id, result in self.in_flight:
            await MemoryBackend.store(self, task_id, result)
            landed.set_result(None)
        self.in_flight.clear()


def drainer_for(broker: MemoryBroker, backend: MemoryBackend) -> Drainer:
    leases = Leases(broker)
    return Drainer(
        broker,
        Reserver(broker, leases.held),
        Settler(broker, backend, EventHub(), leases.held),
        leases,
        Heartbeat(broker, "w-1", dict),
    )


def message(task_id: str, eta: float | None = None) -> TaskMessage:
    return TaskMessage(task_id, "job", eta=eta, submitted_at=time.time())


async def test_leftovers_go_back_to_a_durable_broker() -> None:
    broker, backend = DurableBroker(), MemoryBackend()
    drainer = drainer_for(broker, backend)
    drainer.leases.held.update({"a": message("a"), "b": message("b")})
    await drainer.leftovers()
    assert drainer.leases.held == {}
    assert sorted(m.id for m in await broker.purge()) == ["a", "b"]  # redelivered at once
    assert await backend.get("a") is None  # nothing recorded: another worker runs it


async def test_leftovers_and_the_queue_are_recorded_failed_when_the_broker_dies_with_us() -> None:
    broker, backend = MemoryBroker(), MemoryBackend()
    drainer = drainer_for(broker, backend)
    drainer.leases.held["held"] = message("held")
    await broker.enqueue(message("queued"))
    await broker.enqueue(message("retry", eta=time.time() + 3600))
    await drainer.leftovers()
    assert broker.pending_count() == 0
    for task_id in ("held", "queued", "retry"):
        result = await backend.get(task_id)
        assert result is not None and result.status is TaskStatus.FAILED, task_id
        assert result.error == "Cancelled: the app stopped before this task finished"


async def test_a_running_task_finishes_within_the_grace_period() -> None:
    broker = DurableBroker()
    app = Flowrra(Config(executor=ExecutorConfig(num_workers=1)), broker=broker)
    started, go_on = asyncio.Event(), asyncio.Event()

    @app.task()
    async def job() -> str:
        started.set()
        await go_on.wait()
        return "done"

    await app.start()
    task_id = await app.submit(job)
    queued = await app.submit(job)
    await started.wait()
    stopping = asyncio.create_task(app.stop(wait=True, timeout=30))
    await asyncio.sleep(0)
    go_on.set()
    await asyncio.wait_for(stopping, 30)
    result = await app.backend.get(task_id)
    assert result is not None and result.status is TaskStatus.SUCCESS and result.result == "done"
    assert task_id in broker.acked
    # the worker stopped reserving: what was still queued stays for another worker
    assert queued not in broker.acked
    assert queued in [m.id for m in await broker.purge()]


async def test_what_the_slots_finished_is_settled_before_leftovers_are_released() -> None:
    broker, backend = DurableBroker(), DeferredBackend()
    app = Flowrra(Config(executor=ExecutorConfig(num_workers=1)), broker=broker, backend=backend)

    @app.task()
    async def job() -> None:
        return None

    await app.start()
    task_id = await app.submit(job)
    await asyncio.wait_for(backend.pending.wait(), 10)  # ran; its record is under way
    landing = asyncio.create_task(backend.land())
    await app.stop(wait=True, timeout=30)
    await landing
    assert broker.acked == [task_id]  # acked, not released for a second run
    assert await broker.purge() == []


async def test_a_slot_waiting_on_the_broker_ends_at_stop() -> None:
    broker = DurableBroker()
    app = Flowrra(broker=broker)
    app.worker.poll_interval = 3600
    await app.start()
    await asyncio.wait_for(broker.reserving.wait(), 10)
    async with asyncio.timeout(10):  # a slot still waiting on reserve would hold it up
        await app.stop(wait=True, timeout=30)
    assert not app.is_running
