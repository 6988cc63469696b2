"""A broker in one list: the worked example of docs/plugins.md ("Writing a broker"),
which includes this file as it is, passing flowrra.testing.BrokerContract."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from flowrra import BaseBroker, TaskMessage
from flowrra.clock import SYSTEM_CLOCK, Clock, ManualClock
from flowrra.testing import BrokerContract


class ListBroker(BaseBroker):
    """Every queued message in one list, in this process (not durable, no leases)."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock  # "now" for due times: the contract suite moves it
        self.queue: list[TaskMessage] = []
        self.dead: list[tuple[TaskMessage, str]] = []
        self.arrived = asyncio.Event()

    async def enqueue(self, message: TaskMessage) -> None:
        self.check_encodable(message)  # fail as a broker that encodes would
        self.queue.append(message)
        self.arrived.set()

    async def reserve(self, max_messages: int, timeout: float) -> list[TaskMessage]:
        deadline = time.monotonic() + timeout
        while True:
            now = self.clock.time()
            due = [m for m in self.queue if m.eta is None or m.eta <= now]
            if due:  # a stable sort: FIFO among equal priorities
                taken = sorted(due, key=lambda m: m.priority)[:max_messages]
                self.queue = [m for m in self.queue if all(m is not t for t in taken)]
                return taken
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):  # look again for newly due ones
                await asyncio.wait_for(self.arrived.wait(), min(left, 0.05))

    async def ack(self, message: TaskMessage) -> None:
        """Nothing to do: reserve took the message off the list."""

    async def requeue(self, message: TaskMessage, retry: TaskMessage) -> None:
        await self.enqueue(retry)

    async def dead_letter(self, message: TaskMessage, reason: str) -> None:
        self.dead.append((message, reason))

    async def purge(self) -> list[TaskMessage]:
        purged, self.queue = self.queue, []
        return purged

    def pending_count(self) -> int:
        return len(self.queue)


class TestListBroker(BrokerContract):
    @pytest.fixture
    async def broker(self, clock: ManualClock) -> AsyncIterator[ListBroker]:
        broker = ListBroker(clock=clock)
        await broker.connect()
        yield broker
        await broker.close()
