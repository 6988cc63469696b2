"""The engine loop: reserve → execute → settle → record. The same loop runs embedded in an
app and in ``flowrra worker``.

Concurrency comes from *slots*: ``io_executor.concurrency`` coroutines each take one
message at a time and run it. Only one slot at a time waits on the broker (the others wait for it
to bring work); it reserves as many messages as there are idle slots (never more, so a
worker does not hoard work other workers could run) into a local buffer that every slot
drains. A slot whose task does not suspend goes straight on to the next message. A
CPU-bound message is handed to one of ``cpu_executor.concurrency`` lanes through a small
queue, so CPU work never holds an I/O slot while it runs.

Settling: success → record SUCCESS, ack. A slot does not wait for a networked backend:
``backend.store`` sends the record in that loop turn (so a short task's RUNNING and
SUCCESS records share one write, and those of the tasks finishing together share it too)
and returns an awaitable of the reply, which the slot hands to the *settler*, one
coroutine that awaits each and then acks its message (never before its record is stored:
a message whose record could not be stored is delivered again once its lease expires).
The slot is free for the next message while the record travels. An ``async def`` store
(the in-memory backend) has not started when called; the slot runs it and acks itself.
At most ``concurrency`` successes wait to be settled; a slot that would add one more
waits for room. Failure with retries left → record RETRYING, then ``requeue`` the next
attempt with a due time (no slot sleeps). Failure for good → record FAILED, ack. A
message naming an unknown task is dead-lettered and recorded FAILED.

Stopping: on a durable broker the worker stops reserving, lets running tasks finish within
the grace period (the settler stores and acks what they returned), and releases whatever
it still holds for immediate redelivery. On the in-memory broker, which dies with the
process, it first drains the queue; tasks left at the deadline (and retries not yet due)
are recorded FAILED so no waiter hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import traceback
from collections import deque
from collections.abc import Awaitable
from types import CoroutineType
from typing import Any

from flowrra.events import EventHub, TaskEvent
from flowrra.exceptions import SerializationError
from flowrra.protocols import Broker, Executor, ResultBackend, WorkerDirectory
from flowrra.registry import TaskHandle, TaskRegistry
from flowrra.task import TaskMessage, TaskResult, TaskStatus

__all__ = ["Worker"]

logger = logging.getLogger("flowrra.worker")


def _reraise_if_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop. A client library may turn a
    cancellation into another exception, or swallow it and return (redis-py's pipelines
    do both); a loop that carries on would then never stop, and ``Worker.stop`` would wait
    on it for ever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


_HOST = socket.gethostname()

_RUNNING = TaskStatus.RUNNING
_SUCCESS = TaskStatus.SUCCESS
_FAILED = TaskStatus.FAILED
_RETRYING = TaskStatus.RETRYING


class Worker:
    """Runs the tasks of ``registry`` that ``broker`` delivers; records to ``backend``."""

    def __init__(
        self,
        registry: TaskRegistry,
        broker: Broker,
        backend: ResultBackend,
        io_executor: Executor,
        cpu_executor: Executor,
        events: EventHub,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 5.0,
    ) -> None:
        self.registry = registry
        self.broker = broker
        self.backend = backend
        self.io_executor = io_executor
        self.cpu_executor = cpu_executor
        self.events = events
        self.poll_interval = poll_interval
        #: Tasks settled (succeeded, failed for good, or sent to retry) since start.
        self.processed = 0
        self._running = False
        self._stopping = False
        self._slots: list[asyncio.Task[None]] = []
        self._lanes: list[asyncio.Task[None]] = []
        self._lease_keeper: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        #: Unique per worker process: host, pid and a random suffix.
        self.worker_id = f"{_HOST}-{os.getpid()}-{os.urandom(3).hex()}"
        self.heartbeat_interval = heartbeat_interval
        self.started_at: float | None = None
        self._buffer: deque[TaskMessage] = deque()
        self._in_flight: dict[str, TaskMessage] = {}
        self._busy = 0
        self._reserve_failures = 0
        self._fetcher: asyncio.Task[Any] | None = None
        self._idle: list[asyncio.Future[None]] = []
        self._settling: list[tuple[TaskMessage, TaskResult, Awaitable[None]]] = []
        self._settler: asyncio.Task[None] | None = None
        self._settler_wake: asyncio.Future[None] | None = None
        self._settler_closing = False
        self._room: list[asyncio.Future[None]] = []
        self._cpu_queue: asyncio.Queue[tuple[TaskHandle[Any, Any], TaskMessage]]

    @property
    def is_running(self) -> bool:
        return self._running

    async def start(self) -> None:
        if self._running:
            return
        await self.io_executor.start()
        await self.cpu_executor.start()
        self._stopping = False
        self._buffer.clear()
        self._busy = 0
        self._idle = []
        self._settling = []
        self._room = []
        self._settler_closing = False
        self._settler = asyncio.create_task(self._settle_successes(), name="flowrra-settler")
        self._cpu_queue = asyncio.Queue(self.cpu_executor.concurrency)
        self._slots = [
            asyncio.create_task(self._io_slot(), name=f"flowrra-slot-{n}")
            for n in range(self.io_executor.concurrency)
        ]
        self._lanes = [
            asyncio.create_task(self._cpu_lane(), name=f"flowrra-cpu-lane-{n}")
            for n in range(self.cpu_executor.concurrency)
        ]
        if self.broker.lease_seconds:
            self._lease_keeper = asyncio.create_task(self._keep_leases(self.broker.lease_seconds))
        self.started_at = time.time()
        if isinstance(self.broker, WorkerDirectory):
            self._heartbeat = asyncio.create_task(self._beat(self.broker))
        self._running = True

    # -- the loop ------------------------------------------------------------------------

    async def _next_message(self) -> TaskMessage | None:
        buffer = self._buffer
        while not buffer:
            if self._fetcher is not None:
                # Another slot is waiting on the broker; wait for it to bring work.
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._idle.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter in self._idle:
                        self._idle.remove(waiter)
                continue
            if self._stopping:
                if self.broker.durable:
                    return None
                batch = await self.broker.reserve(self._wanted(), 0)
                if not batch:
                    return None
            else:
                self._fetcher = asyncio.current_task()
                try:
                    if self.broker.durable:
                        # One loop turn first: slots finishing in this turn become idle
                        # and are counted, so a networked broker is asked once for them all.
                        await asyncio.sleep(0)
                    batch = await self.broker.reserve(self._wanted(), self.poll_interval)
                    self._reserve_failures = 0
                except Exception:
                    _reraise_if_cancelled()
                    batch = []
                    await self._back_off()
                finally:
                    self._fetcher = None
                    self._wake_idle()
            in_flight = self._in_flight
            for message in batch:
                in_flight[message.id] = message
            buffer.extend(batch)
        return buffer.popleft()

    async def _back_off(self) -> None:
        """The broker failed to deliver (a dropped connection, a restarting server): wait,
        longer each time up to 10 s, and let the caller try again. Workers outlive outages."""
        self._reserve_failures += 1
        delay = min(0.1 * 2 ** (self._reserve_failures - 1), 10.0)
        logger.warning(
            "could not reserve tasks (attempt %d); retrying in %.1fs",
            self._reserve_failures,
            delay,
            exc_info=self._reserve_failures == 1,
        )
        await asyncio.sleep(delay)

    def _wake_idle(self) -> None:
        idle, self._idle = self._idle, []
        for waiter in idle:
            if not waiter.done():
                waiter.set_result(None)

    def _wanted(self) -> int:
        return max(1, self.io_executor.concurrency - self._busy - len(self._buffer))

    async def _io_slot(self) -> None:
        buffer = self._buffer
        while True:
            try:
                # A batch already reserved is taken without a call into the fetch path.
                message = buffer.popleft() if buffer else await self._next_message()
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if self._stopping and me is not None and me.uncancel() == 0:
                    return  # stop() woke the slot waiting on the broker
                raise
            if message is None:
                return
            self._busy += 1
            try:
                handle = self.registry.by_name.get(message.name)
                if handle is not None and handle.options.cpu_bound:
                    await self._cpu_queue.put((handle, message))
                else:
                    await self._process(handle, message, self.io_executor)
            except asyncio.CancelledError:
                raise
            except Exception:
                self._unsettled(message)
                _reraise_if_cancelled()
            finally:
                self._busy -= 1

    async def _cpu_lane(self) -> None:
        queue = self._cpu_queue
        while True:
            handle, message = await queue.get()
            try:
                try:
                    await self._process(handle, message, self.cpu_executor)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self._unsettled(message)
                    _reraise_if_cancelled()
            finally:
                queue.task_done()

    async def _process(
        self, handle: TaskHandle[Any, Any] | None, message: TaskMessage, executor: Executor
    ) -> None:
        if handle is None or message.undeliverable is not None:
            await self._reject(message)
            return
        started = time.time()
        submitted_at = message.submitted_at or None
        # record() inlined on the hot path (RUNNING here, SUCCESS below): a coroutine less.
        running = TaskResult(
            message.id,
            _RUNNING,
            message.name,
            None,
            None,
            submitted_at,
            started,
            None,
            message.attempt,
            message.args,
            message.kwargs,
            None,
            message.priority,
        )
        await self.backend.store(message.id, running)
        if self.events.active:
            self.publish(running)
        timeout = handle.options.timeout
        try:
            if timeout is None:
                value = await executor.run(handle, message.args, message.kwargs)
            else:
                async with asyncio.timeout(timeout) as deadline:
                    value = await executor.run(handle, message.args, message.kwargs)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise  # shutdown: stop() settles what is left in flight
            await self._fail(
                handle,
                message,
                submitted_at,
                started,
                asyncio.CancelledError("the task cancelled itself"),
            )
        except Exception as exc:
            if timeout is not None and deadline.expired():
                exc = TaskTimeoutExpired(f"task exceeded its timeout of {timeout}s", exc)
            await self._fail(handle, message, submitted_at, started, exc)
        else:
            result = TaskResult(
                message.id,
                _SUCCESS,
                message.name,
                value,
                None,
                submitted_at,
                started,
                time.time(),
                message.attempt,
                message.args,
                message.kwargs,
                None,
                message.priority,
            )
            if len(self._settling) >= self.io_executor.concurrency:
                await self._wait_for_room()
            try:
                # A networked backend sends the record in this loop turn (with the task's
                # RUNNING record, for a short task) and returns an awaitable of the reply.
                stored = self.backend.store(message.id, result)
            except SerializationError as exc:
                stored = self.backend.store(message.id, _unencodable(result, exc))
            if stored.__class__ is CoroutineType:
                # An async def store has not started: run it here (an in-process backend
                # does not suspend, so a settler would only add a hop).
                try:
                    await stored
                except SerializationError as exc:
                    result = _unencodable(result, exc)
                    await self.backend.store(message.id, result)
                # _acknowledge, inlined on this hot path
                if self.events.active:
                    self.publish(result)
                self._in_flight.pop(message.id, None)
                self.processed += 1
                await self.broker.ack(message)
                return
            self._settling.append((message, result, stored))
            wake = self._settler_wake
            if wake is not None and not wake.done():
                wake.set_result(None)

    async def _wait_for_room(self) -> None:
        room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room.append(room)
        try:
            await room
        finally:
            if room in self._room:
                self._room.remove(room)

    async def _settle_successes(self) -> None:
        """The settler (see the module docstring): awaits the SUCCESS records slots
        started storing, then publishes and acks each. Runs until stop() has let it empty
        the batch it holds."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._settling:
                if self._settler_closing:
                    return
                self._settler_wake = loop.create_future()
                await self._settler_wake
                continue
            batch, self._settling = self._settling, []
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
                    _reraise_if_cancelled()
                    self._unsettled(message)
                    continue
                await self._acknowledge(message, result)

    async def _acknowledge(self, message: TaskMessage, result: TaskResult) -> None:
        """``message``'s final record is stored: publish it, count it and ack it."""
        if self.events.active:
            self.publish(result)
        self._in_flight.pop(message.id, None)
        self.processed += 1
        try:
            await self.broker.ack(message)
        except Exception:
            _reraise_if_cancelled()
            logger.exception("task %s[%s]: could not be acked", message.name, message.id)

    async def _fail(
        self,
        handle: TaskHandle[Any, Any],
        message: TaskMessage,
        submitted_at: float | None,
        started: float,
        exc: BaseException,
    ) -> None:
        error = f"{type(exc).__name__}: {exc}"
        trace = "".join(traceback.format_exception(exc))
        policy = handle.options.retry
        retries = message.attempt
        if policy.should_retry(retries, exc):
            delay = policy.delay_for(retries + 1)
            logger.info(
                "task %s[%s] failed (%s); retry %d in %.3gs",
                message.name,
                message.id,
                error,
                retries + 1,
                delay,
            )
            await self.record(
                TaskResult(
                    message.id,
                    _RETRYING,
                    message.name,
                    None,
                    error,
                    submitted_at,
                    started,
                    None,
                    retries,
                    message.args,
                    message.kwargs,
                    trace,
                    message.priority,
                ),
                retry_in=delay,
            )
            self._settled(message)
            await self.broker.requeue(message, message.next_attempt(time.time() + delay))
            return
        logger.warning(
            "task %s[%s] failed after %d retries: %s", message.name, message.id, retries, error
        )
        await self.record(
            TaskResult(
                message.id,
                _FAILED,
                message.name,
                None,
                error,
                submitted_at,
                started,
                time.time(),
                retries,
                message.args,
                message.kwargs,
                trace,
                message.priority,
            )
        )
        self._settled(message)
        await self.broker.ack(message)

    async def _reject(self, message: TaskMessage) -> None:
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
        if not message.id:
            return  # nothing to record it under
        now = time.time()
        await self.record(
            TaskResult(
                message.id,
                _FAILED,
                message.name,
                None,
                f"{error}: {reason}",
                None,
                None,
                now,
                message.attempt,
                message.args,
                message.kwargs,
                None,
                message.priority,
            )
        )

    def _unsettled(self, message: TaskMessage) -> None:
        """Settling ``message`` failed (its broker or backend is unreachable): stop renewing
        its lease, so a durable broker delivers it again once the lease expires."""
        logger.exception(
            "task %s[%s]: could not be settled; it will be delivered again when its lease "
            "expires (durable brokers)",
            message.name,
            message.id,
        )
        self._in_flight.pop(message.id, None)

    def _settled(self, message: TaskMessage) -> None:
        self._in_flight.pop(message.id, None)
        self.processed += 1

    async def record(self, result: TaskResult, retry_in: float | None = None) -> None:
        """Store ``result`` and publish its event (``submit`` records PENDING with it).

        The hot paths (PENDING in submit, RUNNING and SUCCESS here) inline these two steps.
        """
        await self.backend.store(result.task_id, result)
        if self.events.active:
            self.publish(result, retry_in)

    def publish(self, result: TaskResult, retry_in: float | None = None) -> None:
        """Tell the event listeners about ``result``'s new status."""
        self.events.publish(TaskEvent.from_result(result, retry_in))

    async def _keep_leases(self, lease_seconds: float) -> None:
        while True:
            await asyncio.sleep(lease_seconds / 3)
            if self._in_flight:
                try:
                    await self.broker.extend(list(self._in_flight.values()))
                except Exception:
                    _reraise_if_cancelled()
                    logger.exception("could not extend task leases")
                _reraise_if_cancelled()  # a client may swallow the cancellation outright

    def describe(self) -> dict[str, Any]:
        """This worker as its heartbeat announces it (see :class:`WorkerDirectory`)."""
        return {
            "id": self.worker_id,
            "host": _HOST,
            "pid": os.getpid(),
            "concurrency": self.io_executor.concurrency,
            "cpu_workers": self.cpu_executor.concurrency,
            "started": self.started_at,
            "processed": self.processed,
            "busy": self._busy,
            "tasks": sorted(handle.name for handle in self.registry),
            "at": time.time(),
        }

    async def _beat(self, directory: WorkerDirectory) -> None:
        while True:
            try:
                await directory.announce(self.describe(), self.heartbeat_interval * 3)
            except Exception:
                _reraise_if_cancelled()
                logger.warning("could not send the worker heartbeat", exc_info=True)
            # A client may also swallow the cancellation outright and return (redis-py's
            # transaction pipelines can): the sleep would then wait for a stop() already
            # asked, and this loop would never end.
            _reraise_if_cancelled()
            await asyncio.sleep(self.heartbeat_interval)

    # -- stopping ------------------------------------------------------------------------

    async def stop(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Stop; see the module docstring for what happens to queued and running tasks."""
        if not self._running:
            return
        self._stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._fetcher is not None:
            self._fetcher.cancel()
        self._wake_idle()
        if wait:
            await asyncio.wait(self._slots, timeout=max(deadline - loop.time(), 0))
            if all(slot.done() for slot in self._slots):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(deadline - loop.time(), 0)):
                        await self._cpu_queue.join()
        workers = [*self._slots, *self._lanes]
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        # What the slots finished is stored and acked before leftovers are released.
        await self._drain_settler(max(deadline - loop.time(), 0))
        tasks = [t for t in (self._lease_keeper, self._heartbeat, self._settler) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._slots, self._lanes, self._lease_keeper, self._settler = [], [], None, None
        self._settling = []  # writes under way; their messages are released below
        await self._settle_leftovers()
        if self._heartbeat is not None:
            self._heartbeat = None
            if isinstance(self.broker, WorkerDirectory):
                try:
                    await self.broker.retire(self.worker_id)
                except Exception:
                    logger.warning("could not remove this worker's heartbeat", exc_info=True)
        self._buffer.clear()
        await self.io_executor.stop(wait)
        await self.cpu_executor.stop(wait)
        self._running = False

    async def _drain_settler(self, timeout: float) -> None:
        """Let the settler store and ack what the slots handed it, within ``timeout``: it
        returns once it has nothing left and the worker is stopping."""
        settler = self._settler
        if settler is None or settler.done():
            return
        self._settler_closing = True
        wake = self._settler_wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        await asyncio.wait([settler], timeout=timeout)

    async def _settle_leftovers(self) -> None:
        held = list(self._in_flight.values())
        self._in_flight.clear()
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
            await self.record(
                TaskResult(
                    message.id,
                    _FAILED,
                    message.name,
                    None,
                    "Cancelled: the app stopped before this task finished",
                    message.submitted_at or None,
                    None,
                    now,
                    message.attempt,
                    message.args,
                    message.kwargs,
                    None,
                    message.priority,
                )
            )


def _unencodable(result: TaskResult, exc: SerializationError) -> TaskResult:
    """``result``, FAILED because its value cannot be stored."""
    result.status = _FAILED
    result.result = None
    result.error = f"SerializationError: {exc}"
    return result


class TaskTimeoutExpired(TimeoutError):
    """A task ran past its ``timeout``; recorded as its error."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.__cause__ = cause
