"""Reserving: taking messages from the broker for the worker's slots.

Only one slot at a time waits on the broker (the *fetcher*); the others wait for it to
bring work, each on a future of its own. It reserves as many messages as there are idle
slots (never more, so a worker does not hoard work other workers could run) into a local
buffer that every slot drains; a slot takes a buffered message without calling in here.
The fetcher keeps one message and wakes one idle slot per other message, and one more to
wait on the broker next: an arrival wakes only the slots it needs, so idle slots cost
nothing per task (waking them all cost a task step and a new future per idle slot).

Each reserved message is held (see :class:`~flowrra.worker.keepalive.Leases`) until it is
settled. A broker that fails to deliver is asked again after a back-off, longer each time,
up to 10 s: workers outlive outages.

Stopping: the fetcher's wait is cancelled and no slot waits on the broker again. The
reserver then hands out nothing more, or, when told to empty the queue (a broker that
dies with the process), what the broker has due now, without waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from flowrra.protocols import Broker
from flowrra.task import TaskMessage
from flowrra.worker._cancel import reraise_if_cancelled

__all__ = ["Reserver"]

logger = logging.getLogger("flowrra.worker")


class Reserver:
    """Feeds ``slots`` slots from ``broker``; adds what it reserves to ``held``."""

    def __init__(self, broker: Broker, held: dict[str, TaskMessage]) -> None:
        self.broker = broker
        #: Reserved, not yet taken by a slot.
        self.buffer: deque[TaskMessage] = deque()
        #: Slots running a message; the others are idle and count towards a reserve.
        self.busy = 0
        #: True once :meth:`stop` was called; a slot cancelled while waiting then returns.
        self.stopping = False
        self._held = held
        self._slots = 1
        self._poll_interval = 1.0
        self._empty_queue = False
        self._fetcher: asyncio.Task[object] | None = None
        #: One future per idle slot waiting for the fetcher, oldest first.
        self._idle: deque[asyncio.Future[None]] = deque()
        self._failures = 0

    def start(self, slots: int, poll_interval: float) -> None:
        """Serve ``slots`` slots; a reserve waits up to ``poll_interval`` seconds."""
        self._slots = slots
        self._poll_interval = poll_interval
        self.stopping = False
        self._empty_queue = False
        self.buffer.clear()
        self.busy = 0
        self._idle = deque()

    def wanted(self) -> int:
        """How many messages to ask for: one per idle slot, less what is buffered."""
        return max(1, self._slots - self.busy - len(self.buffer))

    async def next(self) -> TaskMessage | None:
        """The next message for the calling slot, or None when the slot should end."""
        buffer = self.buffer
        while not buffer:
            if self._fetcher is not None and not self.stopping:
                # Another slot is waiting on the broker; wait for it to bring work. (Not
                # once stopping: a slot woken before stop() that runs before the cancelled
                # fetcher has ended would wait here for a wake that never comes.)
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._idle.append(waiter)
                try:
                    await waiter
                except asyncio.CancelledError:
                    if not waiter.cancelled():
                        self._wake(1)  # woken, then cancelled: pass the wake on
                    raise
                continue
            if self.stopping:
                if not self._empty_queue:
                    return None
                batch = await self.broker.reserve(self.wanted(), 0)
                if not batch:
                    return None
            else:
                self._fetcher = asyncio.current_task()
                fetched = False
                try:
                    if self.broker.durable:
                        # One loop turn first: slots finishing in this turn become idle
                        # and are counted, so a networked broker is asked once for them all.
                        await asyncio.sleep(0)
                    batch = await self.broker.reserve(self.wanted(), self._poll_interval)
                    self._failures = 0
                    fetched = True
                except Exception:
                    reraise_if_cancelled()
                    await self._back_off()
                    batch = []
                    fetched = True
                finally:
                    self._fetcher = None
                    if not fetched:
                        self._wake(1)  # cancelled: another idle slot waits on the broker
            held = self._held
            for message in batch:
                held[message.id] = message
            buffer.extend(batch)
            if self._idle:
                # This slot takes one; the others are for idle slots, and one more idle
                # slot becomes the next fetcher.
                self._wake(len(buffer))
        return buffer.popleft()

    def stop(self, empty_queue: bool) -> None:
        """Stop waiting on the broker; with ``empty_queue``, keep handing out what is due
        now until the broker has none."""
        self.stopping = True
        self._empty_queue = empty_queue
        if self._fetcher is not None:
            self._fetcher.cancel()
        self._wake(len(self._idle))

    def clear(self) -> None:
        """Forget what is buffered (the drain has released or failed it)."""
        self.buffer.clear()

    async def _back_off(self) -> None:
        """The broker failed to deliver (a dropped connection, a restarting server): wait,
        longer each time up to 10 s, and let the caller try again."""
        self._failures += 1
        delay = min(0.1 * 2 ** (self._failures - 1), 10.0)
        logger.warning(
            "could not reserve tasks (attempt %d); retrying in %.1fs",
            self._failures,
            delay,
            exc_info=self._failures == 1,
        )
        await asyncio.sleep(delay)

    def _wake(self, count: int) -> None:
        """Wake up to ``count`` idle slots, those waiting longest first."""
        idle = self._idle
        while count > 0 and idle:
            waiter = idle.popleft()
            if not waiter.done():  # a cancelled slot's future stays until it comes up
                waiter.set_result(None)
                count -= 1
