"""Settling: what becomes of a message once its attempt is over, and the records that say so.

Success → record SUCCESS, then ack (never before the record is stored: a message whose
record could not be stored is delivered again once its lease expires). Retry → record
RETRYING, then ``requeue`` the next attempt with its due time (no slot sleeps). Failure
for good → record FAILED, ack. A message that can never run → dead-letter, record FAILED.
A redelivery (a broker that can tell, :class:`~flowrra.protocols.Redeliveries`) of a task
whose record is already complete → ack, without running it again. Cancelled (``app.cancel``,
before or while it ran) → record CANCELLED, ack; a chain step's later steps are recorded
CANCELLED too.

A slot does not wait for a networked backend: ``backend.store`` sends the record in that
loop turn (so a short task's RUNNING and SUCCESS records share one write, and those of the
tasks finishing together share it too) and returns an awaitable of the reply, which
:meth:`Settler.succeeded` hands to the *settle loop*, one coroutine that awaits each and
then acks its message. The slot is free for the next message while the record travels.
A backend says which it is with ``sends_when_called`` (see
:class:`~flowrra.protocols.ResultBackend`): an ``async def`` store (the in-memory backend,
``False``) has not started when called; the slot runs it and acks itself (a settle loop
would only add a hop). At most ``bound`` successes wait
for the settle loop; a slot that would add one more waits for room.

A chain step (a message with the :data:`~flowrra.canvas.CHAIN_HEADER` header) that
succeeds has its SUCCESS record stored, then is settled and its next step queued in one
``requeue``; one that fails for good has the rest of its chain recorded FAILED before it is
acked. A redelivered chain step whose record is complete goes on from that record. The
check is one look at ``message.headers``, empty for every other message.

A unique task (a message with the :data:`~flowrra.unique.UNIQUE_HEADER` header) that
completes for good has its record stored, then its unique key released (compare and
delete: kept ``unique_for`` seconds after a success), then its message acked; a retry
keeps the key. See :mod:`flowrra.unique`.

A settled message leaves :attr:`Leases.held <flowrra.worker.keepalive.Leases.held>` and
counts in :attr:`Settler.processed`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from flowrra.awaitables import DONE
from flowrra.backends.base import store_many
from flowrra.canvas import CHAIN_HEADER, ChainLink
from flowrra.clock import SYSTEM_CLOCK, Clock
from flowrra.events import EventHub, TaskEvent
from flowrra.exceptions import SerializationError
from flowrra.middleware import MiddlewareChain
from flowrra.protocols import Broker, Redeliveries, ResultBackend, UniqueJobs
from flowrra.task import TaskMessage, TaskResult, TaskStatus
from flowrra.unique import UNIQUE_HEADER, Unique
from flowrra.worker._cancel import reraise_if_cancelled

__all__ = ["Settler"]

logger = logging.getLogger("flowrra.worker")

_FAILED = TaskStatus.FAILED
_SUCCESS = TaskStatus.SUCCESS
_COMPLETE = (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED)


class Settler:
    """Records each attempt's outcome to ``backend``, publishes it to ``events`` and settles
    its message with ``broker``."""

    def __init__(
        self,
        broker: Broker,
        backend: ResultBackend,
        events: EventHub,
        held: dict[str, TaskMessage],
        clock: Clock = SYSTEM_CLOCK,
        middleware: MiddlewareChain | None = None,
    ) -> None:
        self.broker = broker
        #: Whose ``on_dead_letter`` hooks hear of each message dead-lettered here.
        self.middleware = middleware if middleware is not None else MiddlewareChain()
        #: Where a retry's due time is read: now on this clock, plus the delay.
        self.clock = clock
        self.backend = backend
        #: The backend's ``store`` starts the write when called (its class declares it).
        self.sends_when_called = backend.sends_when_called
        self.events = events
        #: The broker's :meth:`~flowrra.protocols.Redeliveries.redelivered`, or None when it
        #: cannot tell a redelivery (the runner then runs every message it gets).
        self.redelivered: Callable[[TaskMessage], bool] | None = (
            broker.redelivered if isinstance(broker, Redeliveries) else None
        )
        #: The broker, if it keeps unique keys (it releases them here).
        self.unique_keys: UniqueJobs | None = broker if isinstance(broker, UniqueJobs) else None
        #: Tasks settled (succeeded, failed for good, or sent to retry) since start.
        self.processed = 0
        self._held = held
        self._bound = 1
        self._waiting: list[tuple[TaskMessage, TaskResult, Awaitable[None]]] = []
        self._room: list[asyncio.Future[None]] = []
        self._loop: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._closing = False

    def start(self, bound: int) -> None:
        """Start the settle loop; at most ``bound`` writes under way wait for it."""
        self._bound = bound
        self._waiting = []
        self._room = []
        self._closing = False
        self._loop = asyncio.create_task(self._settle_writes(), name="flowrra-settler")

    # -- outcomes --------------------------------------------------------------------------

    async def succeeded(self, message: TaskMessage, result: TaskResult) -> None:
        """``message`` returned ``result`` (SUCCESS): store it, then publish and ack."""
        if message.headers:
            if CHAIN_HEADER in message.headers:
                await self._passed_on(message, result)
                return
            if UNIQUE_HEADER in message.headers:
                await self._unique_done(message, result)
                return
        if len(self._waiting) >= self._bound:
            await self._wait_for_room()
        try:
            # A networked backend sends the record in this loop turn (with the task's
            # RUNNING record, for a short task) and returns an awaitable of the reply.
            stored = self.backend.store(message.id, result)
        except SerializationError as exc:
            stored = self.backend.store(message.id, _unencodable(result, exc))
        if not self.sends_when_called:
            # An async def store has not started: run it here (an in-process backend
            # does not suspend, so the settle loop would only add a hop).
            try:
                await stored
            except SerializationError as exc:
                result = _unencodable(result, exc)
                await self.backend.store(message.id, result)
            # _acknowledge, inlined on this hot path
            if self.events.active:
                self.publish(result)
            self._held.pop(message.id, None)
            self.processed += 1
            acked = self.broker.ack(message)
            if acked is not DONE:  # (an in-memory broker has nothing to send)
                await acked
            return
        self._waiting.append((message, result, stored))
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def retry(self, message: TaskMessage, result: TaskResult, delay: float) -> None:
        """Record ``result`` (RETRYING) and requeue ``message``'s next attempt, due in
        ``delay`` seconds."""
        await self.record(result, retry_in=delay)
        self._settled(message)
        await self.broker.requeue(message, message.next_attempt(self.clock.time() + delay))

    async def failed(self, message: TaskMessage, result: TaskResult) -> None:
        """Record ``result`` (FAILED, for good) and ack ``message``."""
        await self.record(result)
        if message.headers:
            await self.stop_chain(message, result.error)
            await self.release_unique(message, succeeded=False)
        self._settled(message)
        await self.broker.ack(message)

    async def cancelled(self, message: TaskMessage, result: TaskResult) -> None:
        """``message``'s task was cancelled: record ``result`` (CANCELLED) and ack it; if it
        is a chain step, every later step is recorded CANCELLED too (the chain stops)."""
        await self.record(result)
        link = ChainLink.of(message) if message.headers else None
        if link is not None and link.rest:
            reason = (
                f"its chain stopped: step {link.step} ({message.name}, id {message.id}) "
                "was cancelled"
            )
            finished = result.finished_ts or time.time()
            stopped = [
                TaskResult.cancelled(record, reason, finished=finished)
                for record in link.stopped(message, None, finished)
            ]
            await store_many(self.backend, stopped)
            if self.events.active:
                for record in stopped:
                    self.publish(record)
        if message.headers:  # a unique task's key is free again
            await self.release_unique(message, succeeded=False)
        self._settled(message)
        await self.broker.ack(message)

    async def reject(self, message: TaskMessage) -> None:
        """``message`` can never run here (it names no registered task, or it could not be
        decoded): dead-letter it, and record it FAILED if it has an id."""
        if message.undeliverable is not None:
            error = "UndeliverableMessage"
            reason = message.undeliverable
        else:
            error = "TaskNotRegisteredError"
            reason = (
                f"task {message.name!r} is not registered in this worker: decorate it with "
                "@app.task() in a module the worker imports"
            )
        logger.error("task %s[%s] dead-lettered: %s", message.name, message.id, reason)
        self._settled(message)
        await self.broker.dead_letter(message, reason)
        if message.id:  # (else there is nothing to record it under)
            failed = TaskResult.failed(message, f"{error}: {reason}", finished=time.time())
            await self.record(failed)
            if message.headers:
                await self.stop_chain(message, failed.error)
        if message.headers:
            await self.release_unique(message, succeeded=False)
        if self.middleware.dead_letters:  # once it is dead-lettered and recorded
            await self.middleware.on_dead_letter(message, reason)

    async def completed_before(self, message: TaskMessage) -> bool:
        """``message`` is a redelivery: if its task's record is already complete (it ran,
        and only its ack was lost), ack it and return True: it does not run again."""
        record = await self.backend.get(message.id)
        if record is None or record.status not in _COMPLETE:
            return False
        logger.warning(
            "task %s[%s] was delivered again after it completed (%s): acked without "
            "running it again",
            message.name,
            message.id,
            record.status.value,
        )
        if message.headers:
            if CHAIN_HEADER in message.headers:
                await self._go_on(message, record)  # what the lost ack left undone
                return True
            await self.release_unique(message, succeeded=record.status is _SUCCESS)
        self._held.pop(message.id, None)
        await self.broker.ack(message)
        return True

    # -- unique jobs -----------------------------------------------------------------------

    async def _unique_done(self, message: TaskMessage, result: TaskResult) -> None:
        """A unique task succeeded: store its record (awaited: the key is released only
        once it is stored), release its key, then ack it."""
        try:
            await self.backend.store(message.id, result)
        except SerializationError as exc:
            result = _unencodable(result, exc)
            await self.backend.store(message.id, result)
        if self.events.active:
            self.publish(result)
        await self.release_unique(message, succeeded=result.status is _SUCCESS)
        self._settled(message)
        acked = self.broker.ack(message)
        if acked is not DONE:
            await acked

    async def release_unique(self, message: TaskMessage, *, succeeded: bool) -> None:
        """``message`` completed for good: release its unique key, if it has one and the
        key still names it (kept ``unique_for`` seconds after a success, else deleted).
        A failure is logged: the key then lives until its safety expiry."""
        broker = self.unique_keys
        unique = Unique.of(message)
        if unique is None or broker is None:
            return
        try:
            await broker.release_unique(
                unique.key, message.id, unique.keep_for if succeeded else 0.0
            )
        except Exception:
            reraise_if_cancelled()
            logger.warning(
                "task %s[%s]: could not release its unique key %r; it expires after the "
                "broker's unique_ttl",
                message.name,
                message.id,
                unique.key,
                exc_info=True,
            )

    # -- chains ----------------------------------------------------------------------------

    async def _passed_on(self, message: TaskMessage, result: TaskResult) -> None:
        """A chain step succeeded: store its record (awaited: the next step is queued only
        once it is stored), then settle it and go on."""
        try:
            await self.backend.store(message.id, result)
        except SerializationError as exc:
            result = _unencodable(result, exc)
            await self.backend.store(message.id, result)
        if self.events.active:
            self.publish(result)
        await self._go_on(message, result)

    async def _go_on(self, message: TaskMessage, record: TaskResult) -> None:
        """``message``, a chain step, has its complete ``record`` stored: settle it and
        queue the next step with its result, in one ``requeue`` (SUCCESS), or record the
        rest of the chain FAILED and ack it."""
        link = ChainLink.of(message)
        if link is not None and link.rest:
            error = record.error
            if record.status is _SUCCESS:
                try:
                    following = link.next_message(message, record.result, self.clock.time())
                except SerializationError as exc:
                    error = f"SerializationError: {exc}"
                else:
                    self._settled(message)
                    await self.broker.requeue(message, following)
                    return
            await self._stop(link, message, error)
        self._settled(message)
        await self.broker.ack(message)

    async def stop_chain(self, message: TaskMessage, error: str | None) -> None:
        """``message`` failed for good with ``error``: if it is a chain step, record every
        later step FAILED (``ChainStopped``), so nobody waits on them for ever."""
        link = ChainLink.of(message)
        if link is not None and link.rest:
            await self._stop(link, message, error)

    async def _stop(self, link: ChainLink, message: TaskMessage, error: str | None) -> None:
        stopped = link.stopped(message, error, time.time())
        logger.warning(
            "chain stopped at step %d of %d, task %s[%s]: %d later steps recorded FAILED",
            link.step,
            link.total,
            message.name,
            message.id,
            len(stopped),
        )
        await store_many(self.backend, stopped)
        if self.events.active:
            for record in stopped:
                self.publish(record)

    def unsettled(self, message: TaskMessage) -> None:
        """Settling ``message`` failed (its broker or backend is unreachable): stop renewing
        its lease, so a durable broker delivers it again once the lease expires."""
        logger.exception(
            "task %s[%s]: could not be settled; it will be delivered again when its lease "
            "expires (durable brokers)",
            message.name,
            message.id,
        )
        self._held.pop(message.id, None)

    def _settled(self, message: TaskMessage) -> None:
        self._held.pop(message.id, None)
        self.processed += 1

    # -- records ---------------------------------------------------------------------------

    async def record(self, result: TaskResult, retry_in: float | None = None) -> None:
        """Store ``result`` and publish its event.

        The hot paths (PENDING in submit, RUNNING in the runner, SUCCESS here) inline these
        two steps.
        """
        await self.backend.store(result.task_id, result)
        if self.events.active:
            self.publish(result, retry_in)

    def publish(self, result: TaskResult, retry_in: float | None = None) -> None:
        """Tell the event listeners about ``result``'s new status."""
        self.events.publish(TaskEvent.from_result(result, retry_in))

    # -- the settle loop -------------------------------------------------------------------

    async def _wait_for_room(self) -> None:
        room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room.append(room)
        try:
            await room
        finally:
            if room in self._room:
                self._room.remove(room)

    async def _settle_writes(self) -> None:
        """Await the SUCCESS records slots started storing, then publish and ack each.
        Runs until :meth:`close` has let it empty the batch it holds."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                if self._closing:
                    return
                self._wake = loop.create_future()
                await self._wake
                continue
            batch, self._waiting = self._waiting, []
            room, self._room = self._room, []
            for waiter in room:
                if not waiter.done():
                    waiter.set_result(None)
            for message, result, stored in batch:
                try:
                    try:
                        await stored
                    except SerializationError as exc:  # a backend that finds it out late
                        result = _unencodable(result, exc)
                        await self.backend.store(message.id, result)
                except Exception:
                    reraise_if_cancelled()
                    self.unsettled(message)
                    continue
                await self._acknowledge(message, result)

    async def _acknowledge(self, message: TaskMessage, result: TaskResult) -> None:
        """``message``'s final record is stored: publish it, count it and ack it."""
        if self.events.active:
            self.publish(result)
        self._held.pop(message.id, None)
        self.processed += 1
        try:
            acked = self.broker.ack(message)
            if acked is not DONE:
                await acked
        except Exception:
            reraise_if_cancelled()
            logger.exception("task %s[%s]: could not be acked", message.name, message.id)

    async def close(self, timeout: float) -> None:
        """Let the settle loop store and ack what it was handed, within ``timeout``: it
        returns once it has nothing left."""
        settle_loop = self._loop
        if settle_loop is None or settle_loop.done():
            return
        self._closing = True
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        await asyncio.wait([settle_loop], timeout=timeout)

    async def stop(self) -> None:
        """Stop the settle loop. Writes still under way are dropped: their messages are
        still held, and released or recorded FAILED by the drain."""
        settle_loop, self._loop = self._loop, None
        if settle_loop is not None:
            settle_loop.cancel()
            await asyncio.gather(settle_loop, return_exceptions=True)
        self._waiting = []


def _unencodable(result: TaskResult, exc: SerializationError) -> TaskResult:
    """``result``, FAILED because its value cannot be stored."""
    result.status = _FAILED
    result.result = None
    result.error = f"SerializationError: {exc}"
    return result
