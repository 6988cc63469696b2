"""Eager runs: an app in eager mode (``Flowrra(eager=True)``, ``with app.eager():``) runs
each submitted task at once, in the caller, for tests.

The attempt goes through the worker's :class:`~flowrra.worker.running.Runner` (RUNNING,
the task's timeout, its retry policy) with an :class:`EagerSettler` in place of the
worker's settler: it stores each record in the app's backend, where ``wait_for_result``
finds it, and involves no broker. A retry runs at once: its delay is recorded (the
RETRYING record's ``retry_in`` event, the next attempt's due time) but not waited. A
chain step that succeeds is followed at once by the next step (its delay not waited
either); one that fails for good records the rest of its chain FAILED, as a worker does.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Mapping
from typing import Any

from flowrra.backends.base import store_many
from flowrra.canvas import CHAIN_HEADER, ChainLink
from flowrra.clock import Clock
from flowrra.events import EventHub, TaskEvent
from flowrra.exceptions import SerializationError
from flowrra.middleware import MiddlewareChain
from flowrra.protocols import ResultBackend
from flowrra.registry import TaskHandle
from flowrra.task import TaskMessage, TaskResult, TaskStatus
from flowrra.worker.running import Runner

__all__ = ["EagerSettler", "InlineExecutor", "run_eagerly"]


class InlineExecutor:
    """Runs a task here, in the caller's loop: awaits an ``async def``, calls a ``def``
    (a thread task or a ``cpu_bound`` one alike) directly."""

    concurrency = 1

    async def start(self) -> None:
        """Nothing to start."""

    async def stop(self, wait: bool) -> None:
        """Nothing to stop."""

    async def run(
        self, task: TaskHandle[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        value = task.fn(*args, **kwargs)
        if inspect.isawaitable(value):
            value = await value
        return value


INLINE = InlineExecutor()


class EagerSettler:
    """Records each outcome of an eager run; a retry becomes :attr:`next`, the attempt
    :func:`run_eagerly` runs at once."""

    def __init__(self, backend: ResultBackend, events: EventHub, clock: Clock) -> None:
        self.backend = backend
        self.events = events
        self.clock = clock
        #: The next attempt to run, after a retry, or a chain's next step; ``None`` once
        #: the task is settled.
        self.next: TaskMessage | None = None

    def take_next(self) -> TaskMessage | None:
        """The attempt to run next (see :attr:`next`), which is then forgotten."""
        following, self.next = self.next, None
        return following

    async def succeeded(self, message: TaskMessage, result: TaskResult) -> None:
        """Store ``result`` (SUCCESS), or FAILED if its value cannot be stored."""
        try:
            await self.backend.store(message.id, result)
        except SerializationError as exc:
            result.status = TaskStatus.FAILED
            result.result = None
            result.error = f"SerializationError: {exc}"
            await self.backend.store(message.id, result)
        if self.events.active:
            self.publish(result)
        if message.headers and CHAIN_HEADER in message.headers:
            await self._go_on(message, result)

    async def _go_on(self, message: TaskMessage, result: TaskResult) -> None:
        """A chain step is complete: its next step runs next, or the chain stops."""
        link = ChainLink.of(message)
        if link is None or not link.rest:
            return
        error = result.error
        if result.status is TaskStatus.SUCCESS:
            try:
                self.next = link.next_message(message, result.result, self.clock.time())
                return
            except SerializationError as exc:
                error = f"SerializationError: {exc}"
        await self._stop(link, message, error)

    async def _stop(self, link: ChainLink, message: TaskMessage, error: str | None) -> None:
        stopped = link.stopped(message, error, time.time())
        await store_many(self.backend, stopped)
        if self.events.active:
            for record in stopped:
                self.publish(record)

    async def retry(self, message: TaskMessage, result: TaskResult, delay: float) -> None:
        """Record ``result`` (RETRYING); the next attempt runs at once (due, on paper, in
        ``delay`` seconds)."""
        await self.record(result, retry_in=delay)
        self.next = message.next_attempt(self.clock.time() + delay)

    async def failed(self, message: TaskMessage, result: TaskResult) -> None:
        """Record ``result`` (FAILED, for good), and the rest of its chain if any."""
        await self.record(result)
        link = ChainLink.of(message) if message.headers else None
        if link is not None and link.rest:
            await self._stop(link, message, result.error)

    async def cancelled(self, message: TaskMessage, result: TaskResult) -> None:
        """Record ``result`` (CANCELLED). (An eager run is never cancelled while it runs:
        it has ended before ``submit`` returns its id.)"""
        await self.record(result)

    async def reject(self, message: TaskMessage) -> None:
        """``message`` names no registered task: record it FAILED (nothing is
        dead-lettered: there is no broker)."""
        error = f"TaskNotRegisteredError: task {message.name!r} is not registered"
        await self.failed(message, TaskResult.failed(message, error, finished=time.time()))

    async def record(self, result: TaskResult, retry_in: float | None = None) -> None:
        await self.backend.store(result.task_id, result)
        if self.events.active:
            self.publish(result, retry_in)

    def publish(self, result: TaskResult, retry_in: float | None = None) -> None:
        self.events.publish(TaskEvent.from_result(result, retry_in))


async def run_eagerly(
    handle: TaskHandle[Any, Any] | None,
    message: TaskMessage,
    backend: ResultBackend,
    events: EventHub,
    clock: Clock,
    middleware: MiddlewareChain | None = None,
    tasks: Mapping[str, TaskHandle[Any, Any]] | None = None,
) -> None:
    """Run ``message`` and its retries here, until it succeeds or fails for good; then,
    for a chain step, the chain's next steps (``tasks``: the registry, by name)."""
    settler = EagerSettler(backend, events, clock)
    runner = Runner(backend, events, settler, middleware)
    runner.loop = asyncio.get_running_loop()
    runner.restores_context = True  # the caller's own context: leave it as it was
    attempt: TaskMessage | None = message
    while attempt is not None:
        await runner.run(handle, attempt, INLINE)
        attempt = settler.take_next()
        if attempt is not None and tasks is not None:  # (a chain's next step: another task)
            handle = tasks.get(attempt.name)
