"""Running: one attempt of one message, from RUNNING to an outcome for the settler.

The runner records RUNNING, runs the task on the executor it is given (the slot's, or a
CPU lane's) within the task's ``timeout``, and judges the outcome: the value, or an error
that the task's :class:`~flowrra.retry.RetryPolicy` retries (after ``delay_for`` the next
attempt) or not. A task that runs past its timeout fails with :class:`TaskTimeoutExpired`;
one that cancels itself fails with ``CancelledError``; a cancellation from outside (the
worker stopping) is not an outcome, it propagates and the drain settles what is left.
A cancellation by ``app.cancel`` (:mod:`flowrra.worker.cancelling`) is one: the attempt is
settled CANCELLED, and so is a message of a cancelled task before its attempt starts.

Each attempt runs with its :class:`~flowrra.context.TaskContext` set (what
``flowrra.current_task()`` returns), between the middleware's ``before_attempt`` and
``after_attempt`` hooks when there are any, and is reported on the ``flowrra.task``
logger (see :mod:`flowrra.logs`). A task that raises :class:`~flowrra.retry.Retry` is
retried at the delay it asks for while its ``max_retries`` allow.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from typing import Any, Protocol

from flowrra.awaitables import DONE
from flowrra.context import CURRENT, ProgressWriter, TaskContext, new_cell
from flowrra.events import EventHub
from flowrra.logs import install_record_factory, level_cache, task_logger
from flowrra.middleware import MiddlewareChain
from flowrra.protocols import Executor, ResultBackend
from flowrra.registry import TaskHandle
from flowrra.retry import Retry
from flowrra.task import TaskMessage, TaskResult
from flowrra.worker.cancelling import Cancels

__all__ = ["Outcomes", "Runner", "TaskTimeoutExpired"]

# Bound once: looking a classmethod up on its class costs more than the call.
_running = TaskResult.running
_succeeded = TaskResult.succeeded
_set_current = CURRENT.set
_get_current = CURRENT.get
_reset_current = CURRENT.reset
_log_level_cached = level_cache(task_logger).get
_DEBUG = logging.DEBUG
_INFO = logging.INFO


class TaskTimeoutExpired(TimeoutError):
    """A task ran past its ``timeout``; recorded as its error."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.__cause__ = cause


class Outcomes(Protocol):
    """What :class:`Runner` hands each attempt's outcome to: the worker's
    :class:`~flowrra.worker.settling.Settler`, or an eager app's
    :class:`~flowrra.worker.eager.EagerSettler` (which runs a retry at once)."""

    async def succeeded(self, message: TaskMessage, result: TaskResult) -> None: ...

    async def retry(self, message: TaskMessage, result: TaskResult, delay: float) -> None: ...

    async def failed(self, message: TaskMessage, result: TaskResult) -> None: ...

    async def reject(self, message: TaskMessage) -> None: ...

    def publish(self, result: TaskResult, retry_in: float | None = None) -> None: ...

    async def cancelled(self, message: TaskMessage, result: TaskResult) -> None: ...


class Runner:
    """Runs attempts and hands each outcome to ``settler``; ``middleware`` hooks around
    each attempt (an app's chain; default: the middleware installed process-wide)."""

    def __init__(
        self,
        backend: ResultBackend,
        events: EventHub,
        settler: Outcomes,
        middleware: MiddlewareChain | None = None,
    ) -> None:
        self.backend = backend
        self.events = events
        self.settler = settler
        self.middleware = middleware if middleware is not None else MiddlewareChain()
        self._succeeded = settler.succeeded
        # A worker's Settler: a redelivery of a completed task is acked, not run again.
        self._redelivered = getattr(settler, "redelivered", None)
        #: The loop attempts run in (where a thread task's progress reports are sent).
        self.loop: asyncio.AbstractEventLoop | None = None
        #: Attempts that reported progress (by message), and the writer of their reports.
        self.progressing: dict[TaskMessage, ProgressWriter] = {}
        #: Restore the caller's context after each attempt (an eager run, in the caller's
        #: task); a worker's slots are tasks of their own, and skip that.
        self.restores_context = False
        #: The cancelled tasks this runner knows of (a worker's; an eager run's stays empty).
        self.cancels = Cancels()
        install_record_factory()

    def report(self, message: TaskMessage, record: TaskResult) -> None:
        """``message``'s attempt reported progress (``record``): store it, in order."""
        writer = self.progressing.get(message)
        if writer is None:
            writer = self.progressing[message] = ProgressWriter(self.backend, self.events)
        writer.report(record)

    async def run(
        self, handle: TaskHandle[Any, Any] | None, message: TaskMessage, executor: Executor
    ) -> None:
        """Run ``message`` (``handle`` is its registered task, if any) on ``executor``."""
        if handle is None or message.undeliverable is not None:
            await self.settler.reject(message)
            return
        cancels = self.cancels
        if cancels.requested and message.id in cancels.requested:
            await self._cancelled(message, None, None)
            return
        redelivered = self._redelivered
        if (
            redelivered is not None
            and redelivered(message)
            and await self.settler.completed_before(message)  # type: ignore[attr-defined]
        ):
            return
        started = time.time()
        middleware = self.middleware
        # Without middleware, current_task() makes the object if the task asks for it.
        context = TaskContext(message, handle, started, self) if middleware.attempts else None
        if self.restores_context:  # an eager run: in the caller's own context
            token = _set_current((message, handle, started, self) if context is None else context)
            cell = None
        else:  # a worker slot: an asyncio task of its own, with a cell set once
            cell = _get_current()
            # (A slot inherits the context it was started from: a cell there is another
            # runner's.)
            if cell.__class__ is not list or cell[1] is not self:
                cell = new_cell(self)
                _set_current(cell)
                cancels.watch(cell)
            cell[0] = message
            cell[3] = handle
            cell[4] = started
            cell[5] = context
        try:
            # Settler.record() inlined on the hot path: a coroutine less.
            running = _running(message, started=started)
            await self.backend.store(message.id, running)
            if self.events.active:
                self.settler.publish(running)
            # One look at the logger's cache per attempt: DEBUG is on only if INFO is.
            info = _log_level_cached(_INFO)
            if info is None:
                info = task_logger.isEnabledFor(_INFO)
            if info and task_logger.isEnabledFor(_DEBUG):
                task_logger.debug(
                    "task %s[%s] started (attempt %d)",
                    message.name,
                    message.id,
                    message.attempt + 1,
                )
            if context is not None and (hooked := middleware.before_attempt(context)) is not DONE:
                await hooked
            timeout = handle.options.timeout
            try:
                if timeout is None:
                    value = await executor.run(handle, message.args, message.kwargs)
                else:
                    async with asyncio.timeout(timeout) as deadline:
                        value = await executor.run(handle, message.args, message.kwargs)
            except asyncio.CancelledError as cancelled:
                me = asyncio.current_task()
                if me is not None and me.cancelling():
                    if cancels.interrupting and self._interrupted(me):
                        await self._cancelled(message, started, context, cancelled)
                        return
                    self.progressing.pop(message, None)
                    if context is not None:  # let middleware close what it opened
                        await middleware.after_attempt(context, running, cancelled)
                    raise  # shutdown: the drain settles what is left in flight
                await self._failed(
                    handle,
                    message,
                    started,
                    context,
                    asyncio.CancelledError("the task cancelled itself"),
                )
            except Exception as exc:
                if timeout is not None and deadline.expired():
                    exc = TaskTimeoutExpired(f"task exceeded its timeout of {timeout}s", exc)
                await self._failed(handle, message, started, context, exc)
            else:
                if self.progressing:
                    await self._flush(message)  # progress never lands after the outcome
                finished = time.time()
                result = _succeeded(message, value, started=started, finished=finished)
                if info:
                    task_logger.info(
                        "task %s[%s] succeeded in %.3fs",
                        message.name,
                        message.id,
                        finished - started,
                    )
                if (
                    context is not None
                    and (hooked := middleware.after_attempt(context, result, None)) is not DONE
                ):
                    await hooked
                await self._succeeded(message, result)
        except asyncio.CancelledError:
            # Cancelled outside the task's own code (recording, a hook, settling).
            me = asyncio.current_task()
            if not (cancels.interrupting and me is not None and self._interrupted(me)):
                raise
            await self._cancelled(message, started, context)
        finally:
            if cell is None:
                _reset_current(token)
            else:
                cell[0] = None  # type: ignore[index]
            if cancels.interrupting:
                self._interrupted(asyncio.current_task())  # the task may have ignored it

    def _interrupted(self, me: asyncio.Task[Any] | None) -> bool:
        """Whether ``me`` was cancelled only by :class:`Cancels` (``app.cancel``): then
        that cancellation is taken back (it is an outcome, not a shutdown)."""
        if me is None or self.cancels.interrupting.pop(me, None) is None:
            return False
        return me.uncancel() == 0

    async def _cancelled(
        self,
        message: TaskMessage,
        started: float | None,
        context: TaskContext | None,
        error: BaseException | None = None,
    ) -> None:
        """``message``'s task was cancelled (before its attempt, if ``started`` is None):
        settle it CANCELLED."""
        self.progressing.pop(message, None)
        self.cancels.forget(message.id)
        reason = "cancelled while it ran" if started is not None else "cancelled before it ran"
        record = TaskResult.cancelled(
            _running(message, started=started or 0.0), reason, finished=time.time()
        )
        if started is None:
            record.started_ts = None
        task_logger.warning("task %s[%s] %s", message.name, message.id, reason)
        if context is not None and self.middleware.attempts:
            await self.middleware.after_attempt(context, record, error)
        await self.settler.cancelled(message, record)

    async def _flush(self, message: TaskMessage) -> None:
        """Wait for ``message``'s progress reports to be stored, and forget them."""
        writer = self.progressing.pop(message, None)
        if writer is not None:
            await writer.flush()

    async def _failed(
        self,
        handle: TaskHandle[Any, Any],
        message: TaskMessage,
        started: float,
        context: TaskContext | None,
        exc: BaseException,
    ) -> None:
        """The attempt raised ``exc``: retry it if the task's policy says so (or it raised
        :class:`Retry` with retries left), else fail. ``context``: the attempt's, if the
        middleware has one."""
        if self.progressing:
            await self._flush(message)
        if context is None and self.middleware.outcomes:
            context = TaskContext(message, handle, started, self)
        error = f"{type(exc).__name__}: {exc}"
        trace = "".join(traceback.format_exception(exc))
        policy = handle.options.retry
        retries = message.attempt
        middleware = self.middleware
        if isinstance(exc, Retry):
            retrying = retries < policy.max_retries
            delay = policy.delay_for(retries + 1) if exc.delay is None else exc.delay
        else:
            retrying = policy.should_retry(retries, exc) and not (
                # arguments that do not bind fail the same way every time
                isinstance(exc, TypeError) and not handle.binds(message.args, message.kwargs)
            )
            delay = policy.delay_for(retries + 1) if retrying else 0.0
        if retrying:
            task_logger.warning(
                "task %s[%s] failed (%s); retry %d of %d in %.3gs",
                message.name,
                message.id,
                error,
                retries + 1,
                policy.max_retries,
                delay,
            )
            result = TaskResult.retrying(message, error, started=started, traceback=trace)
            if middleware.outcomes:
                assert context is not None
                await middleware.on_retry(context, exc, delay)
            if middleware.attempts and context is not None:
                await middleware.after_attempt(context, result, exc)
            await self.settler.retry(message, result, delay)
            return
        task_logger.error(
            "task %s[%s] failed after %d retries: %s",
            message.name,
            message.id,
            retries,
            error,
            exc_info=exc,
        )
        result = TaskResult.failed(
            message, error, started=started, finished=time.time(), traceback=trace
        )
        if middleware.outcomes:
            assert context is not None
            await middleware.on_failure(context, exc)
        if middleware.attempts and context is not None:
            await middleware.after_attempt(context, result, exc)
        await self.settler.failed(message, result)
