"""The embedded broker: heaps in this process.

``_ready`` holds the default queue's due messages ordered by ``(priority, sequence)``, so
lower priority numbers come first and equal priorities keep submit order; each named queue
has a heap of its own in ``_queues`` (the default's is ``_ready``). ``_delayed`` holds
messages with a future ``eta`` ordered by due time, moved to their queue's heap when due.
``reserve`` takes from the queues :meth:`MemoryBroker.consume` selected, in the turns of
:func:`flowrra.queues.take_in_turns`. After :meth:`MemoryBroker.limit`, ``reserve`` and
``ack`` are the instance's limited versions (the class's stay as they were): a message
over its rate goes to ``_delayed``, due when the window allows; one over its concurrency
waits in ``_parked`` until a run of its task settles. Nothing is encoded, but arguments
are checked against the JSON wire format so an app behaves the same on a durable broker.

``cancel`` (:class:`~flowrra.protocols.Cancellation`) takes a task's waiting messages
out of the heaps at once and tells the watchers (the app's worker, in this process), which
settle a message of that task already reserved without running it, and interrupt it if it
runs.

Due times are read on the broker's :class:`~flowrra.clock.Clock` (the app's, when the app
builds the broker): with a :class:`~flowrra.clock.ManualClock` a delayed message becomes
due when the test advances the clock. ``reserve``'s ``timeout`` is real time (a budget).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from flowrra.awaitables import DONE
from flowrra.brokers.base import BaseBroker
from flowrra.clock import SYSTEM_CLOCK, Clock
from flowrra.limits import Limiter, TaskLimits
from flowrra.queues import Cursor, QueueSelection, take_in_turns
from flowrra.task import DEFAULT_QUEUE, TaskMessage
from flowrra.unique import UNIQUE_TTL, check_unique_ttl, hold_seconds

__all__ = ["MemoryBroker"]


class MemoryBroker(BaseBroker):
    """In-process priority queue with due times. Not durable: it lives and dies with the app.

    ``max_queue_size`` (0 = unbounded) bounds the messages due now in each queue:
    ``enqueue`` waits for room (back-pressure on producers). Delayed messages do not
    count, and retries and released messages are never held back. A
    :class:`~flowrra.protocols.NamedQueues`, a :class:`~flowrra.protocols.UniqueJobs`
    (``unique_ttl``: seconds a unique key lives unless released, see :mod:`flowrra.unique`),
    a :class:`~flowrra.protocols.Cancellation` and a
    :class:`~flowrra.protocols.LimitedTasks`.
    """

    def __init__(
        self,
        max_queue_size: int = 0,
        dead_letter_limit: int = 1000,
        *,
        clock: Clock = SYSTEM_CLOCK,
        unique_ttl: float = UNIQUE_TTL,
    ) -> None:
        self.max_queue_size = max_queue_size
        #: Seconds a unique key lives after its task is due, unless released.
        self.unique_ttl = check_unique_ttl(unique_ttl)
        #: Unique keys: key -> (the id of the task holding it, when it expires).
        self._unique: dict[str, tuple[str, float]] = {}
        self._unique_taken = 0
        #: What "now" is for due times.
        self.clock = clock
        self._ready: list[tuple[int, int, TaskMessage]] = []
        #: Each queue's heap of due messages (the default queue's is ``_ready``).
        self._queues: dict[str, list[tuple[int, int, TaskMessage]]] = {DEFAULT_QUEUE: self._ready}
        #: The heaps ``reserve`` takes from, with the selection's weights and order.
        self._selection = QueueSelection()
        self._consumed: list[list[tuple[int, int, TaskMessage]]] = [self._ready]
        self._turn: Cursor = (0, 0)
        self._delayed: list[tuple[float, int, TaskMessage]] = []
        self._seq = itertools.count()
        self._available: asyncio.Event | None = None
        self._space: asyncio.Event | None = None
        self._consumers_waiting = 0
        self._producers_waiting = 0
        #: Messages that could never run, with the reason (newest last).
        self.dead_letters: deque[tuple[TaskMessage, str]] = deque(maxlen=dead_letter_limit)
        #: Who :meth:`watch_cancels` (the app's worker).
        self._cancel_watchers: list[Callable[[str], None]] = []
        #: The task limits :meth:`limit` set (None: none, and no work for them).
        self._limiter: Limiter | None = None
        #: Messages waiting for a concurrency place of their task, by task name.
        self._parked: dict[str, deque[TaskMessage]] = {}

    # Events are made per connect() so that one app object can be started in several event
    # loops one after another (asyncio.Event binds to the loop that first waits on it).
    async def connect(self) -> None:
        self._available = asyncio.Event()
        self._space = asyncio.Event()

    async def close(self) -> None:
        self._available = None
        self._space = None

    def _events(self) -> tuple[asyncio.Event, asyncio.Event]:
        if self._available is None or self._space is None:
            self._available = asyncio.Event()
            self._space = asyncio.Event()
        return self._available, self._space

    def consume(self, selection: QueueSelection) -> None:
        """Reserve from these queues from now on (see :mod:`flowrra.queues`)."""
        self._selection = selection
        self._consumed = [self._queues.setdefault(name, []) for name in selection.names]
        if selection.others:
            for name, heap in self._queues.items():
                if name not in selection.names:
                    self._selection = self._selection.adding(name)
                    self._consumed.append(heap)
        self._turn = (0, 0)
        if self._available is not None:
            self._available.set()  # a waiting reserve looks again

    def _heap(self, queue: str) -> list[tuple[int, int, TaskMessage]]:
        heap = self._queues.get(queue)
        if heap is None:
            heap = self._queues[queue] = []
            if self._selection.others:  # a worker started without -Q takes it too
                self._selection = self._selection.adding(queue)
                self._consumed.append(heap)
        return heap

    def _push(self, message: TaskMessage) -> None:
        eta = message.eta
        if eta is not None and eta > self.clock.time():
            heapq.heappush(self._delayed, (eta, next(self._seq), message))
        else:
            heap = self._ready if message.queue == DEFAULT_QUEUE else self._heap(message.queue)
            heapq.heappush(heap, (message.priority, next(self._seq), message))
        if self._consumers_waiting and self._available is not None:
            self._available.set()

    async def enqueue(self, message: TaskMessage) -> None:
        if message.args or message.kwargs:
            self.check_encodable(message)
        if message.eta is not None:
            if self.max_queue_size:
                await self._wait_for_space(self._heap(message.queue))
            self._push(message)
            return
        queue = message.queue
        heap = self._ready if queue == DEFAULT_QUEUE else self._queues.get(queue)
        if heap is None:
            heap = self._heap(queue)
        if self.max_queue_size and len(heap) >= self.max_queue_size:
            await self._wait_for_space(heap)
        # _push's due-now branch, inlined: this is every plain submit.
        heapq.heappush(heap, (message.priority, next(self._seq), message))
        if self._consumers_waiting and self._available is not None:
            self._available.set()

    # -- unique jobs (flowrra.unique) ----------------------------------------------------------

    async def enqueue_unique(self, message: TaskMessage, key: str) -> str:
        """Queue ``message`` unless ``key`` is held (see
        :class:`~flowrra.protocols.UniqueJobs`); the id of the task that holds it after."""
        now = self.clock.time()
        held = self._unique.get(key)
        if held is not None and held[1] > now:
            return held[0]
        self.check_encodable(message)
        self._unique[key] = (message.id, now + hold_seconds(message, now, self.unique_ttl))
        self._unique_taken += 1
        if self._unique_taken % 1024 == 0:
            self._forget_expired_keys(now)
        try:
            await self.enqueue(message)  # (it may wait for room: the key is held meanwhile)
        except BaseException:
            if self._unique.get(key, ("",))[0] == message.id:
                del self._unique[key]
            raise
        return message.id

    async def release_unique(self, key: str, task_id: str, keep_for: float) -> bool:
        """Release ``key`` if ``task_id`` holds it: deleted, or kept ``keep_for`` seconds."""
        held = self._unique.get(key)
        if held is None or held[0] != task_id:
            return False
        if keep_for > 0:
            self._unique[key] = (task_id, self.clock.time() + keep_for)
        else:
            del self._unique[key]
        return True

    async def unique_holder(self, key: str) -> str | None:
        """The id of the task holding ``key`` now, or ``None``."""
        held = self._unique.get(key)
        return held[0] if held is not None and held[1] > self.clock.time() else None

    def _forget_expired_keys(self, now: float) -> None:
        for key in [k for k, (_, expires) in self._unique.items() if expires <= now]:
            del self._unique[key]

    async def enqueue_many(self, messages: Sequence[TaskMessage]) -> None:
        for message in messages:
            self.check_encodable(message)
        for message in messages:
            if self.max_queue_size:
                await self._wait_for_space(self._heap(message.queue))
            self._push(message)

    async def _wait_for_space(self, heap: list[tuple[int, int, TaskMessage]]) -> None:
        if len(heap) < self.max_queue_size:
            return
        space = self._events()[1]
        while len(heap) >= self.max_queue_size:
            space.clear()
            self._producers_waiting += 1
            try:
                await space.wait()
            finally:
                self._producers_waiting -= 1

    def _promote_due(self) -> None:
        now = self.clock.time()
        delayed, ready = self._delayed, self._ready
        while delayed and delayed[0][0] <= now:
            _, seq, message = heapq.heappop(delayed)
            heap = ready if message.queue == DEFAULT_QUEUE else self._heap(message.queue)
            heapq.heappush(heap, (message.priority, seq, message))

    def _take_in_turns(self, max_messages: int) -> list[TaskMessage]:
        """Up to ``max_messages`` from several consumed queues, in the selection's turns."""
        consumed = self._consumed
        pop = heapq.heappop
        out: list[TaskMessage] = []
        waiting = [heap for heap in consumed if heap]
        if len(waiting) <= 1:
            # Nothing or one queue has messages: the others pass their turns on, so the
            # turns would take from it alone (and the cursor may stay where it is).
            if waiting:
                ready = waiting[0]
                out.append(pop(ready)[2])
                while ready and len(out) < max_messages:
                    out.append(pop(ready)[2])
            return out

        def take(index: int, most: int) -> int:
            heap = consumed[index]
            got = 0
            while heap and got < most:
                out.append(pop(heap)[2])
                got += 1
            return got

        self._turn = take_in_turns(self._selection, self._turn, max_messages, take)
        return out

    async def reserve(self, max_messages: int, timeout: float) -> list[TaskMessage]:
        deadline = time.monotonic() + timeout
        while True:
            if self._delayed:
                self._promote_due()
            consumed = self._consumed
            if len(consumed) == 1:  # one queue: its heap, as before named queues
                ready = consumed[0]
                if ready:
                    pop = heapq.heappop
                    out = [pop(ready)[2]]
                    while ready and len(out) < max_messages:
                        out.append(pop(ready)[2])
                    if self._producers_waiting:
                        self._events()[1].set()
                    return out
            elif out := self._take_in_turns(max_messages):
                if self._producers_waiting:
                    self._events()[1].set()
                return out
            wait = deadline - time.monotonic()
            if wait <= 0:
                return []
            available = self._events()[0]
            available.clear()
            self._consumers_waiting += 1
            try:
                async with asyncio.timeout(wait):
                    if self._delayed:
                        await self._wait_until_due(available)
                    else:
                        await available.wait()
            except TimeoutError:
                pass
            finally:
                self._consumers_waiting -= 1

    async def _wait_until_due(self, available: asyncio.Event) -> None:
        """Wait for a new message, or until the earliest delayed one is due on the clock."""
        clock = self.clock
        due = clock.monotonic() + (self._delayed[0][0] - clock.time())
        async with clock.timeout_at(due):
            await available.wait()

    def ack(self, message: TaskMessage) -> Awaitable[None]:
        """Nothing to settle: a reserved message already left the queue (no coroutine:
        the worker awaits one ack per task)."""
        return DONE

    async def requeue(self, message: TaskMessage, retry: TaskMessage) -> None:
        if self._limiter is not None:
            self._settle(message)
        self._push(retry)

    async def release(self, messages: Sequence[TaskMessage]) -> None:
        for message in messages:
            if self._limiter is not None:
                self._settle(message)
            self._push(message)

    async def dead_letter(self, message: TaskMessage, reason: str) -> None:
        if self._limiter is not None:
            self._settle(message)
        self.dead_letters.append((message, reason))

    # -- task limits (flowrra.limits) ------------------------------------------------------

    def limit(self, limits: Mapping[str, TaskLimits]) -> None:
        """Enforce these task limits at reserve from now on (see
        :class:`~flowrra.protocols.LimitedTasks`); an empty mapping turns them off."""
        if not limits:
            self._limiter = None
            for parked in self._parked.values():
                for message in parked:
                    self._push(message)
            self._parked.clear()
            vars(self).pop("reserve", None)
            vars(self).pop("ack", None)
            return
        self._limiter = Limiter(limits)
        # Instance attributes: a broker without limits keeps the class's methods, and
        # pays nothing for this feature per task.
        self.reserve = self._reserve_limited  # type: ignore[method-assign]
        self.ack = self._ack_limited  # type: ignore[method-assign]

    async def _reserve_limited(self, max_messages: int, timeout: float) -> list[TaskMessage]:
        """``reserve``, keeping back the messages over their task's limits."""
        limiter = self._limiter
        deadline = time.monotonic() + timeout
        while True:
            batch = await MemoryBroker.reserve(self, max_messages, timeout)
            if limiter is None or not batch:
                return batch
            now = self.clock.time()
            excess: dict[str, int] = {}
            out = []
            for message in batch:
                due = limiter.admit(message, now, excess)
                if due is None:
                    out.append(message)
                elif due == math.inf:
                    self._parked.setdefault(message.name, deque()).append(message)
                else:
                    heapq.heappush(self._delayed, (due, next(self._seq), message))
            timeout = deadline - time.monotonic()
            if out or timeout <= 0:
                return out

    def _ack_limited(self, message: TaskMessage) -> Awaitable[None]:
        self._settle(message)
        return DONE

    def _settle(self, message: TaskMessage) -> None:
        """A run of ``message`` ended: its place goes to the next parked message."""
        assert self._limiter is not None
        if self._limiter.settle(message):
            parked = self._parked.get(message.name)
            if parked:
                self._push(parked.popleft())

    async def purge(self) -> list[TaskMessage]:
        messages = [entry[2] for heap in self._queues.values() for entry in heap]
        messages += [entry[2] for entry in self._delayed]
        for parked in self._parked.values():
            messages += parked
        self._parked.clear()
        for heap in self._queues.values():
            heap.clear()
        self._delayed.clear()
        if self._producers_waiting:
            self._events()[1].set()
        return messages

    def pending_count(self) -> int:
        parked = sum(map(len, self._parked.values())) if self._parked else 0
        return sum(len(heap) for heap in self._queues.values()) + len(self._delayed) + parked

    async def queue_stats(self) -> dict[str, dict[str, Any]]:
        """Per queue: ``queued``, ``delayed`` and ``priorities`` (see
        :class:`~flowrra.protocols.NamedQueues`); nothing is leased in memory."""
        stats: dict[str, dict[str, Any]] = {}
        for name, heap in self._queues.items():
            priorities = Counter(entry[0] for entry in heap)
            stats[name] = {
                "queued": len(heap),
                "delayed": 0,
                "leased": 0,
                "priorities": dict(sorted(priorities.items())),
            }
        waiting = [entry[2] for entry in self._delayed]
        for parked in self._parked.values():
            waiting += parked
        for message in waiting:
            entry = stats.setdefault(
                message.queue, {"queued": 0, "delayed": 0, "leased": 0, "priorities": {}}
            )
            entry["delayed"] += 1
        return stats

    # -- cancellation ----------------------------------------------------------------------

    async def cancel(self, task_id: str) -> None:
        """Drop the messages of ``task_id`` that wait (due or delayed), then tell the
        watchers (see :class:`~flowrra.protocols.Cancellation`)."""
        for heap in self._queues.values():
            kept = [entry for entry in heap if entry[2].id != task_id]
            if len(kept) != len(heap):
                heap[:] = kept
                heapq.heapify(heap)
        kept_delayed = [entry for entry in self._delayed if entry[2].id != task_id]
        if len(kept_delayed) != len(self._delayed):
            self._delayed[:] = kept_delayed
            heapq.heapify(self._delayed)
        if self._producers_waiting:
            self._events()[1].set()
        for watcher in list(self._cancel_watchers):
            watcher(task_id)

    async def watch_cancels(self, cancelled: Callable[[str], None]) -> None:
        """Call ``cancelled(task_id)`` for each :meth:`cancel`, until cancelled."""
        self._cancel_watchers.append(cancelled)
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            self._cancel_watchers.remove(cancelled)
