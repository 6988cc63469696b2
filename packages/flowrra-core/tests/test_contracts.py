"""The in-memory broker and store pass the same contract suites every plugin must."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from flowrra import MemoryBackend, MemoryBroker
from flowrra.clock import ManualClock
from flowrra.testing import BrokerContract, ResultBackendContract


class TestMemoryBroker(BrokerContract):
    @pytest.fixture
    async def broker(self, clock: ManualClock) -> AsyncIterator[MemoryBroker]:
        broker = MemoryBroker(clock=clock)
        await broker.connect()
        yield broker
        await broker.close()


class TestMemoryBackend(ResultBackendContract):
    @pytest.fixture
    async def backend(self) -> AsyncIterator[MemoryBackend]:
        backend = MemoryBackend()
        await backend.connect()
        yield backend
        await backend.close()
