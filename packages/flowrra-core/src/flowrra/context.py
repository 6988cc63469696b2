"""The running task's context: ``flowrra.current_task()`` inside a task.

::

    @app.task()
    async def import_rows(path: str) -> int:
        task = current_task()
        log.info("attempt %d of task %s", task.attempt, task.id)
        ...
        task.set_progress(0.4, "parsed 4,000 rows")

The worker's :class:`~flowrra.worker.running.Runner` makes one :class:`TaskContext` per
attempt and sets it in a context variable around the task's execution, so it is seen by
the task's coroutine, by what the task starts (context variables are copied into new
asyncio tasks and into a thread task's thread) and by middleware. A ``cpu_bound`` task gets
a copy with the call in its pool process (:func:`run_with_context`); there it can read its
context, but not report progress. Outside a task, :func:`current_task` raises
:class:`NoTaskContextError`.

Progress is stored as the task's RUNNING record with ``progress`` and
``progress_message`` set, and published as an event. Reports are not awaited by the task:
the latest one is written once the one before it is stored, and the runner waits for the
last one before it records the outcome, so a progress report never lands after it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

from flowrra.events import TaskEvent
from flowrra.exceptions import NoTaskContextError
from flowrra.task import Progress, TaskMessage, TaskResult

if TYPE_CHECKING:
    from flowrra.events import EventHub
    from flowrra.protocols import ResultBackend
    from flowrra.registry import TaskHandle

__all__ = [
    "MAX_PROGRESS_MESSAGE",
    "ProgressWriter",
    "TaskContext",
    "current_task",
    "run_with_context",
]

logger = logging.getLogger("flowrra.task")

#: Characters of a progress message kept (a longer one is cut, ending in "…"): it is
#: stored in the task's record and sent to every monitor at each report.
MAX_PROGRESS_MESSAGE = 1000

#: The attempt running in this context. Its value is one of:
#:
#: - ``None``: no attempt;
#: - an *attempt*: its :class:`TaskContext`, or the tuple ``(message, handle, started,
#:   runner)`` that one is made from on first use (a task that never asks for its context
#:   costs no object);
#: - a worker slot's *cell* (:func:`new_cell`), the list ``[message or None, runner, slot
#:   task, handle, started, TaskContext or None]``: a slot is an asyncio task of its own
#:   that runs one attempt after another, and setting a context variable per attempt cost
#:   2.5% of the engine's work per task, so the runner sets the cell once per slot and
#:   writes each attempt into it. The cell answers only in the slot task itself (see
#:   :func:`attempt_here`); a thread task's thread gets the attempt itself
#:   (:func:`pin_attempt`).
CURRENT: ContextVar[TaskContext | tuple[Any, ...] | list[Any] | None] = ContextVar(
    "flowrra_current_task", default=None
)
_current_asyncio_task = asyncio.current_task


def new_cell(runner: Reporter) -> list[Any]:
    """A slot's cell (see :data:`CURRENT`), for the asyncio task running here."""
    return [None, runner, _current_asyncio_task(), None, 0.0, None]


def attempt_here() -> TaskContext | tuple[Any, ...] | None:
    """The attempt running here (a :class:`TaskContext` or its tuple), or ``None``."""
    value = CURRENT.get()
    if value.__class__ is list:
        assert isinstance(value, list)
        message, runner, owner, handle, started, context = value
        if message is None:
            return None
        try:
            here = _current_asyncio_task()
        except RuntimeError:  # no loop in this thread
            here = None
        if here is not owner:
            return None
        return context if context is not None else (message, handle, started, runner)
    return value  # type: ignore[return-value]


def current_task() -> TaskContext:
    """The context of the task attempt running here; raises :class:`NoTaskContextError`
    outside a task."""
    value = CURRENT.get()
    attempt = attempt_here()
    if attempt is None:
        if value.__class__ is list and value[0] is not None:
            raise NoTaskContextError(
                "current_task() was called from an asyncio task or a thread that a task "
                "started (asyncio.create_task, asyncio.to_thread, ...): call it in the task "
                "function and pass the context to what it starts"
            )
        raise NoTaskContextError()
    if attempt.__class__ is tuple:
        context = TaskContext(*attempt)
        if value.__class__ is list:
            value[5] = context  # the same object from now on
        else:
            CURRENT.set(context)
        return context
    return attempt  # type: ignore[return-value]


def pin_attempt() -> None:
    """In a copy of a slot's context made for a thread task: hold the attempt itself, so
    the thread keeps answering with it whatever the slot runs next."""
    value = CURRENT.get()
    if value.__class__ is list:
        attempt = attempt_here()
        CURRENT.set(attempt)


class TaskContext:
    """One attempt of one task, as the task and middleware see it.

    ``id``, ``name``, ``priority``, ``headers`` and ``eta`` are the message's; ``attempt``
    counts from 1 (the first run) and ``max_retries`` is the task's retry budget, so the
    last attempt is ``attempt == max_retries + 1``. ``started`` is the attempt's start
    (Unix seconds). ``state`` is a dict that middleware may use to carry what it started
    in ``before_attempt`` (a span, a timer) to ``after_attempt``.
    """

    __slots__ = ("_runner", "_state", "handle", "message", "started")
    _state: dict[str, Any]

    def __init__(
        self,
        message: TaskMessage,
        handle: TaskHandle[Any, Any] | None,
        started: float,
        runner: Reporter | None = None,
    ) -> None:
        self.message = message
        #: The registered task (``None`` in a process pool child that could not find it).
        self.handle = handle
        self.started = started
        self._runner = runner

    # -- what the message says ------------------------------------------------------------

    @property
    def id(self) -> str:
        """The task id (the same on every attempt: an idempotency key)."""
        return self.message.id

    @property
    def name(self) -> str:
        """The registered task name."""
        return self.message.name

    @property
    def attempt(self) -> int:
        """1 on the first run, 2 on the first retry, …"""
        return self.message.attempt + 1

    @property
    def retries(self) -> int:
        """Retries made before this attempt (``attempt - 1``)."""
        return self.message.attempt

    @property
    def max_retries(self) -> int:
        """The task's retry budget."""
        return self.handle.options.retry.max_retries if self.handle is not None else 0

    @property
    def priority(self) -> int:
        return self.message.priority

    @property
    def headers(self) -> Mapping[str, str]:
        """The message's headers (text to text; read-only)."""
        return self.message.headers

    @property
    def eta(self) -> float | None:
        """When this attempt was due (Unix seconds), or ``None`` for "at once"."""
        return self.message.eta

    @property
    def submitted_at(self) -> float:
        """When the task was first submitted (Unix seconds)."""
        return self.message.submitted_at

    @property
    def app(self) -> Any:
        """The :class:`~flowrra.Flowrra` app the task is registered in."""
        return self.handle._submitter if self.handle is not None else None

    @property
    def state(self) -> dict[str, Any]:
        """A dict private to this attempt, for middleware."""
        try:
            return self._state
        except AttributeError:
            state: dict[str, Any] = {}
            self._state = state
            return state

    # -- progress --------------------------------------------------------------------------

    def set_progress(self, progress: float, message: str | None = None) -> None:
        """Report progress: ``progress`` a fraction from 0 to 1, ``message`` an optional
        text (cut to :data:`MAX_PROGRESS_MESSAGE` characters). Stored (``get_result``
        shows it while the task runs) and published as an event; callable from the task's
        coroutine or its thread. Does not wait."""
        if progress.__class__ is bool or not isinstance(progress, int | float):
            raise TypeError(f"progress is a number from 0 to 1, got {progress!r}")
        if not (0.0 <= progress <= 1.0) or math.isnan(progress):
            raise ValueError(f"progress is a number from 0 to 1, got {progress!r}")
        if message is not None:
            if not isinstance(message, str):
                raise TypeError(f"a progress message is a str, got {type(message).__name__}")
            if len(message) > MAX_PROGRESS_MESSAGE:
                message = message[: MAX_PROGRESS_MESSAGE - 1] + "…"
        runner = self._runner
        loop = None if runner is None else runner.loop
        if runner is None or loop is None:
            raise RuntimeError(
                "set_progress() is not available here: a cpu_bound task's process cannot "
                "report progress (a plain def task without cpu_bound runs in a thread of "
                "the worker, and can)"
            )
        record = TaskResult.running(self.message, started=self.started)
        record.progress = Progress(float(progress), message)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            runner.report(self.message, record)
        else:  # a thread task's thread
            loop.call_soon_threadsafe(runner.report, self.message, record)

    def __repr__(self) -> str:
        return f"<TaskContext {self.name!r} id={self.id} attempt={self.attempt}>"


class Reporter(Protocol):
    """Where a context's progress goes: the :class:`~flowrra.worker.running.Runner`."""

    loop: asyncio.AbstractEventLoop | None

    def report(self, message: TaskMessage, record: TaskResult) -> None: ...


class ProgressWriter:
    """Stores one attempt's progress reports in order, the latest only once the one
    before it is stored (reports that come faster than the backend writes are
    skipped, never reordered)."""

    def __init__(self, backend: ResultBackend, events: EventHub) -> None:
        self.backend = backend
        self.events = events
        self.latest: TaskResult | None = None
        self.writing: asyncio.Task[None] | None = None

    def report(self, record: TaskResult) -> None:
        self.latest = record
        if self.writing is None or self.writing.done():
            self.writing = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while self.latest is not None:
            record, self.latest = self.latest, None
            try:
                await self.backend.store(record.task_id, record)
            except Exception:
                logger.warning(
                    "task %s[%s]: could not store its progress",
                    record.task_name,
                    record.task_id,
                    exc_info=True,
                )
                continue
            if self.events.active:
                self.events.publish(TaskEvent.from_result(record))

    async def flush(self) -> None:
        """Wait until every report made so far is stored (or failed to be)."""
        writing = self.writing
        if writing is not None:
            await asyncio.shield(writing)


def snapshot(context: TaskContext | tuple[Any, ...]) -> tuple[Any, ...]:
    """What a process pool child needs to rebuild ``context`` (a value of
    :data:`CURRENT`) as picklable data."""
    if isinstance(context, tuple):
        m, started = context[0], context[2]
    else:
        m, started = context.message, context.started
    return (m.id, m.name, m.priority, m.attempt, m.eta, m.submitted_at, dict(m.headers), started)


def run_with_context(
    state: tuple[Any, ...], handle: TaskHandle[Any, Any] | None, call: Any, *args: Any, **kw: Any
) -> Any:
    """In a process pool child: run ``call`` with :func:`current_task` answering from
    ``state`` (:func:`snapshot`)."""
    task_id, name, priority, attempt, eta, submitted_at, headers, started = state
    message = TaskMessage(
        task_id, name, priority=priority, attempt=attempt, eta=eta, submitted_at=submitted_at
    )
    if headers:
        message.headers = headers
    token = CURRENT.set(TaskContext(message, handle, started))  # no runner: no progress
    try:
        return call(*args, **kw)
    finally:
        CURRENT.reset(token)
