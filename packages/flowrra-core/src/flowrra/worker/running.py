"""Running: one attempt of one message, from RUNNING to an outcome for the settler.

The runner records RUNNING, runs the task on the executor it is given (the slot's, or a
CPU lane's) within the task's ``timeout``, and judges the outcome: the value, or an error
that the task's :class:`~flowrra.retry.RetryPolicy` retries (after ``delay_for`` the next
attempt) or not. A task that runs past its timeout fails with :class:`TaskTimeoutExpired`;
one that cancels itself fails with ``CancelledError``; a cancellation from outside (the
worker stopping) is not an outcome, it propagates and the drain settles what is left.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from typing import Any, Protocol

from flowrra.events import EventHub
from flowrra.protocols import Executor, ResultBackend
from flowrra.registry import TaskHandle
from flowrra.task import TaskMessage, TaskResult

__all__ = ["Outcomes", "Runner", "TaskTimeoutExpired"]

logger = logging.getLogger("flowrra.worker")

# Bound once: looking a classmethod up on its class costs more than the call.
_running = TaskResult.running
_succeeded = TaskResult.succeeded


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


class Runner:
    """Runs attempts and hands each outcome to ``settler``."""

    def __init__(self, backend: ResultBackend, events: EventHub, settler: Outcomes) -> None:
        self.backend = backend
        self.events = events
        self.settler = settler
        self._succeeded = settler.succeeded
        # A worker's Settler: a redelivery of a completed task is acked, not run again.
        self._redelivered = getattr(settler, "redelivered", None)

    async def run(
        self, handle: TaskHandle[Any, Any] | None, message: TaskMessage, executor: Executor
    ) -> None:
        """Run ``message`` (``handle`` is its registered task, if any) on ``executor``."""
        if handle is None or message.undeliverable is not None:
            await self.settler.reject(message)
            return
        redelivered = self._redelivered
        if (
            redelivered is not None
            and redelivered(message)
            and await self.settler.completed_before(message)  # type: ignore[attr-defined]
        ):
            return
        started = time.time()
        # Settler.record() inlined on the hot path: a coroutine less.
        running = _running(message, started=started)
        await self.backend.store(message.id, running)
        if self.events.active:
            self.settler.publish(running)
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
                raise  # shutdown: the drain settles what is left in flight
            await self._failed(
                handle, message, started, asyncio.CancelledError("the task cancelled itself")
            )
        except Exception as exc:
            if timeout is not None and deadline.expired():
                exc = TaskTimeoutExpired(f"task exceeded its timeout of {timeout}s", exc)
            await self._failed(handle, message, started, exc)
        else:
            await self._succeeded(
                message,
                _succeeded(message, value, started=started, finished=time.time()),
            )

    async def _failed(
        self,
        handle: TaskHandle[Any, Any],
        message: TaskMessage,
        started: float,
        exc: BaseException,
    ) -> None:
        """The attempt raised ``exc``: retry it if the task's policy says so, else fail."""
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
            retrying = TaskResult.retrying(message, error, started=started, traceback=trace)
            await self.settler.retry(message, retrying, delay)
            return
        logger.warning(
            "task %s[%s] failed after %d retries: %s", message.name, message.id, retries, error
        )
        failed = TaskResult.failed(
            message, error, started=started, finished=time.time(), traceback=trace
        )
        await self.settler.failed(message, failed)
