"""Draining: what a stopping worker does with the work it holds and the work still queued.

On a durable broker the worker stops reserving, lets running tasks finish within the grace
period (the settler stores and acks what they returned), and releases whatever it still
holds for immediate redelivery. On the in-memory broker, which dies with the process, it
first drains the queue; tasks left at the deadline (and retries not yet due) are recorded
FAILED so no waiter hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from flowrra.protocols import Broker
from flowrra.task import TaskResult
from flowrra.worker.keepalive import Heartbeat, Leases
from flowrra.worker.reserving import Reserver
from flowrra.worker.settling import Settler

__all__ = ["Drainer"]

logger = logging.getLogger("flowrra.worker")

_CANCELLED = "Cancelled: the app stopped before this task finished"


class Drainer:
    """Stops the worker's parts in order, within one deadline."""

    def __init__(
        self,
        broker: Broker,
        reserver: Reserver,
        settler: Settler,
        leases: Leases,
        heartbeat: Heartbeat,
    ) -> None:
        self.broker = broker
        self.reserver = reserver
        self.settler = settler
        self.leases = leases
        self.heartbeat = heartbeat

    async def drain(
        self,
        slots: Sequence[asyncio.Task[None]],
        lanes: Sequence[asyncio.Task[None]],
        cpu_queue: asyncio.Queue[Any],
        *,
        wait: bool,
        timeout: float,
    ) -> None:
        """Stop ``slots`` and ``lanes`` (letting them finish what they run within
        ``timeout`` seconds if ``wait``), then settle what the worker still holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.reserver.stop(empty_queue=not self.broker.durable)
        if wait:
            await asyncio.wait(slots, timeout=max(deadline - loop.time(), 0))
            if all(slot.done() for slot in slots):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(deadline - loop.time(), 0)):
                        await cpu_queue.join()
        workers = [*slots, *lanes]
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        # What the slots finished is stored and acked before leftovers are released.
        await self.settler.close(max(deadline - loop.time(), 0))
        await asyncio.gather(self.leases.stop(), self.heartbeat.stop(), self.settler.stop())
        await self.leftovers()
        await self.heartbeat.retire()
        self.reserver.clear()

    async def leftovers(self) -> None:
        """Settle what is still held: release it to a durable broker; on one that dies
        with the process, record it FAILED with everything still queued."""
        held = list(self.leases.held.values())
        self.leases.held.clear()
        if self.broker.durable:
            if held:
                logger.info("releasing %d unfinished tasks for redelivery", len(held))
                await self.broker.release(held)
            return
        lost = held + await self.broker.purge()
        if lost:
            logger.warning(
                "%d tasks did not run before the app stopped; recorded FAILED", len(lost)
            )
        now = time.time()
        for message in lost:
            await self.settler.record(TaskResult.failed(message, _CANCELLED, finished=now))
            if message.headers:
                await self.settler.stop_chain(message, _CANCELLED)
                await self.settler.release_unique(message, succeeded=False)
