"""Keeping alive: what a worker tells its broker every few seconds so that it is not taken
for dead.

:class:`Leases` holds the messages this worker has reserved and not yet settled, and
renews their leases every ``lease_seconds / 3`` on a broker that has leases; a message it
stops holding (settled, or given up on) is delivered again once its lease expires.
:class:`Heartbeat` announces the worker every ``heartbeat_interval`` seconds on a broker
that is a :class:`~flowrra.protocols.WorkerDirectory`, and retires it when it stops.

Both loops outlive a broker that fails: they log and try again next time. Both wait on the
worker's :class:`~flowrra.clock.Clock`, so a test drives them with a
:class:`~flowrra.clock.ManualClock` instead of waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from flowrra.clock import SYSTEM_CLOCK, Clock
from flowrra.protocols import Broker, WorkerDirectory
from flowrra.task import TaskMessage
from flowrra.worker._cancel import reraise_if_cancelled

__all__ = ["Heartbeat", "Leases"]

logger = logging.getLogger("flowrra.worker")


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class Leases:
    """The messages this worker holds (reserved, not yet settled), by id, and the loop
    that renews their leases while they run."""

    def __init__(self, broker: Broker, clock: Clock = SYSTEM_CLOCK) -> None:
        self.broker = broker
        self.clock = clock
        #: Reserved and not yet settled. The reserver adds to it, the settler takes from
        #: it; the dict is never replaced, so they may keep a reference to it.
        self.held: dict[str, TaskMessage] = {}
        self._keeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start renewing, if the broker has leases."""
        lease_seconds = self.broker.lease_seconds
        if lease_seconds:
            self._keeper = asyncio.create_task(self._keep(lease_seconds), name="flowrra-leases")

    async def stop(self) -> None:
        """Stop renewing. What is still held stays held (see :mod:`.draining`)."""
        keeper, self._keeper = self._keeper, None
        await _cancel(keeper)

    async def _keep(self, lease_seconds: float) -> None:
        clock = self.clock
        while True:
            await clock.sleep_until(clock.monotonic() + lease_seconds / 3)
            if self.held:
                try:
                    await self.broker.extend(list(self.held.values()))
                except Exception:
                    reraise_if_cancelled()
                    logger.exception("could not extend task leases")
                reraise_if_cancelled()  # a client may swallow the cancellation outright


class Heartbeat:
    """Announces worker ``worker_id`` (as ``describe()`` tells it) to a broker that keeps a
    directory of live workers."""

    def __init__(
        self,
        broker: Broker,
        worker_id: str,
        describe: Callable[[], dict[str, Any]],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.broker = broker
        self.clock = clock
        self.worker_id = worker_id
        self.describe = describe
        self._beat: asyncio.Task[None] | None = None
        self._announced = False

    def start(self, interval: float) -> None:
        """Start announcing every ``interval`` seconds (each announcement lives three
        intervals), if the broker keeps a directory."""
        if isinstance(self.broker, WorkerDirectory):
            self._announced = True
            self._beat = asyncio.create_task(
                self._run(self.broker, interval), name="flowrra-heartbeat"
            )

    async def stop(self) -> None:
        """Stop announcing; the last announcement stands until :meth:`retire`."""
        beat, self._beat = self._beat, None
        await _cancel(beat)

    async def retire(self) -> None:
        """Remove this worker from the directory, if it was announced there."""
        if not self._announced:
            return
        self._announced = False
        if isinstance(self.broker, WorkerDirectory):
            try:
                await self.broker.retire(self.worker_id)
            except Exception:
                logger.warning("could not remove this worker's heartbeat", exc_info=True)

    async def _run(self, directory: WorkerDirectory, interval: float) -> None:
        clock = self.clock
        while True:
            try:
                await directory.announce(self.describe(), interval * 3)
            except Exception:
                reraise_if_cancelled()
                logger.warning("could not send the worker heartbeat", exc_info=True)
            # A client may also swallow the cancellation outright and return (redis-py's
            # transaction pipelines can): the sleep would then wait for a stop() already
            # asked, and this loop would never end.
            reraise_if_cancelled()
            await clock.sleep_until(clock.monotonic() + interval)
