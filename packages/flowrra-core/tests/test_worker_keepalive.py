"""Keeping alive (flowrra.worker.keepalive): leases of the messages held renewed while they
run, the worker's heartbeat announced and retired; both loops outlive a failing broker
and stop even when its client swallows the cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import pytest

from flowrra import MemoryBroker
from flowrra.clock import ManualClock
from flowrra.exceptions import BrokerError
from flowrra.task import TaskMessage
from flowrra.worker.keepalive import Heartbeat, Leases


class LeasingBroker(MemoryBroker):
    """A memory broker with 30 s leases that keeps what it was asked to extend; its first
    ``failures`` extends fail."""

    lease_seconds = 30.0

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.failures = failures
        self.extended: asyncio.Queue[list[str]] = asyncio.Queue()

    async def extend(self, messages: Sequence[TaskMessage]) -> None:
        if self.failures:
            self.failures -= 1
            raise BrokerError("connection reset")
        self.extended.put_nowait([m.id for m in messages])


class DirectoryBroker(MemoryBroker):
    """A memory broker that keeps a directory of live workers (a WorkerDirectory); its
    first ``failures`` announcements fail."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.failures = failures
        self.announced: asyncio.Queue[tuple[dict[str, Any], float]] = asyncio.Queue()
        self.retired: list[str] = []

    async def announce(self, info: dict[str, Any], ttl: float) -> None:
        if self.failures:
            self.failures -= 1
            raise BrokerError("connection reset")
        self.announced.put_nowait((info, ttl))

    async def retire(self, worker_id: str) -> None:
        self.retired.append(worker_id)

    async def workers(self) -> list[dict[str, Any]]:
        return []

    async def queue_depths(self) -> dict[str, int]:
        return {"queued": self.pending_count()}


class SwallowingDirectoryBroker(DirectoryBroker):
    """Its client turns a cancellation into another error, as redis-py's pipelines can."""

    async def announce(self, info: dict[str, Any], ttl: float) -> None:
        self.announced.put_nowait((info, ttl))
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise ConnectionError("connection closed while cancelling") from None


class SilentlySwallowingDirectoryBroker(DirectoryBroker):
    """Its client swallows a cancellation and returns as if the call had succeeded."""

    async def announce(self, info: dict[str, Any], ttl: float) -> None:
        self.announced.put_nowait((info, ttl))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)


def message(task_id: str) -> TaskMessage:
    return TaskMessage(task_id, "job", submitted_at=time.time())


def loop_tasks(name: str) -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == name and not t.done()]


async def next_renewal(clock: ManualClock) -> None:
    """Wait until the lease keeper sleeps on ``clock``: it renews a third of a lease (10 s)
    after now; move the clock there."""
    async with asyncio.timeout(10):
        await clock.waiting()
    assert clock.next_wake == clock.time() + 10
    clock.advance(9.5)
    assert clock.sleepers == 1  # not yet
    clock.advance(0.5)


async def test_leases_of_held_messages_are_renewed_every_third_of_a_lease_until_stop() -> None:
    clock = ManualClock()
    broker = LeasingBroker()
    leases = Leases(broker, clock)
    leases.held.update({"a": message("a"), "b": message("b")})
    leases.start()
    await next_renewal(clock)
    assert await asyncio.wait_for(broker.extended.get(), 10) == ["a", "b"]
    del leases.held["a"]  # settled: no longer renewed
    await next_renewal(clock)
    assert await asyncio.wait_for(broker.extended.get(), 10) == ["b"]
    await leases.stop()
    assert loop_tasks("flowrra-leases") == [] and list(leases.held) == ["b"]
    assert broker.extended.empty() and clock.sleepers == 0


async def test_renewing_outlives_a_failing_broker(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    broker = LeasingBroker(failures=2)
    leases = Leases(broker, clock)
    leases.held["a"] = message("a")
    leases.start()
    for _ in range(3):  # two renewals fail, the third lands
        await next_renewal(clock)
    assert await asyncio.wait_for(broker.extended.get(), 10) == ["a"]
    await leases.stop()
    assert [r.getMessage() for r in caplog.records] == ["could not extend task leases"] * 2


async def test_no_renewing_on_a_broker_without_leases() -> None:
    leases = Leases(MemoryBroker())
    leases.held["a"] = message("a")
    leases.start()
    assert loop_tasks("flowrra-leases") == []
    await leases.stop()


async def test_the_heartbeat_announces_the_worker_and_retires_it() -> None:
    broker = DirectoryBroker()
    beats = iter(range(100))
    heartbeat = Heartbeat(broker, "w-1", lambda: {"id": "w-1", "beat": next(beats)})
    heartbeat.start(interval=0.01)
    first = await asyncio.wait_for(broker.announced.get(), 10)
    second = await asyncio.wait_for(broker.announced.get(), 10)
    # describe() is asked anew each time; each announcement lives three intervals
    assert [first, second] == [({"id": "w-1", "beat": 0}, 0.03), ({"id": "w-1", "beat": 1}, 0.03)]
    await heartbeat.stop()
    assert loop_tasks("flowrra-heartbeat") == [] and broker.retired == []
    await heartbeat.retire()
    await heartbeat.retire()  # once is enough
    assert broker.retired == ["w-1"]


async def test_the_heartbeat_outlives_a_failing_broker(caplog: pytest.LogCaptureFixture) -> None:
    broker = DirectoryBroker(failures=1)
    heartbeat = Heartbeat(broker, "w-1", lambda: {"id": "w-1"})
    heartbeat.start(interval=0.01)
    assert await asyncio.wait_for(broker.announced.get(), 10) == ({"id": "w-1"}, 0.03)
    await heartbeat.stop()
    assert [r.getMessage() for r in caplog.records] == ["could not send the worker heartbeat"]


@pytest.mark.parametrize("broker", [SwallowingDirectoryBroker, SilentlySwallowingDirectoryBroker])
async def test_the_heartbeat_stops_when_a_client_swallows_the_cancellation(broker) -> None:
    directory = broker()
    heartbeat = Heartbeat(directory, "w-1", lambda: {"id": "w-1"})
    heartbeat.start(interval=0.01)
    await asyncio.wait_for(directory.announced.get(), 10)  # an announcement is in flight
    async with asyncio.timeout(10):  # a loop that carried on would wait for ever
        await heartbeat.stop()
    assert loop_tasks("flowrra-heartbeat") == []


async def test_no_heartbeat_on_a_broker_without_a_directory() -> None:
    heartbeat = Heartbeat(MemoryBroker(), "w-1", lambda: {"id": "w-1"})
    heartbeat.start(interval=0.01)
    assert loop_tasks("flowrra-heartbeat") == []
    await heartbeat.stop()
    await heartbeat.retire()
