"""Task state changes, for monitors (the demo, the CLI, the web UI).

The worker publishes a :class:`TaskEvent` each time it records a task's new status. In one
process, ``app.events`` delivers them to listeners (plain callables) and to async
``subscribe()`` streams. Publishing costs nothing when nobody listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime

from flowrra.task import Progress, TaskResult, TaskStatus

__all__ = ["EventHub", "TaskEvent"]

logger = logging.getLogger("flowrra.events")


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One status change of one task."""

    task_id: str
    task_name: str | None
    status: TaskStatus
    retries: int
    at: datetime | None
    error: str | None = None
    #: For RETRYING: seconds until the next attempt.
    retry_in: float | None = None
    #: For RUNNING: the progress the task reported (``set_progress``), if it did.
    progress: Progress | None = None

    @classmethod
    def from_result(cls, result: TaskResult, retry_in: float | None = None) -> TaskEvent:
        at = result.finished_at or result.started_at or result.submitted_at
        return cls(
            result.task_id,
            result.task_name,
            result.status,
            result.retries,
            at,
            result.error,
            retry_in,
            result.progress,
        )


Listener = Callable[[TaskEvent], None]


class EventHub:
    """Fans task events out to in-process listeners and subscribers."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._queues: list[asyncio.Queue[TaskEvent]] = []
        #: True if anyone is listening (publishers skip building events otherwise).
        self.active = False

    def _update(self) -> None:
        self.active = bool(self._listeners or self._queues)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for each event; returns a function that removes it.
        A listener that raises is logged and kept."""
        self._listeners.append(listener)
        self._update()

        def remove() -> None:
            self._listeners.remove(listener)
            self._update()

        return remove

    @contextlib.asynccontextmanager
    async def subscribe(self, max_buffer: int = 10_000) -> AsyncIterator[AsyncIterator[TaskEvent]]:
        """``async with hub.subscribe() as events: async for event in events: ...``.
        A subscriber that falls ``max_buffer`` events behind loses the oldest ones."""
        queue: asyncio.Queue[TaskEvent] = asyncio.Queue(max_buffer)
        self._queues.append(queue)
        self._update()

        async def stream() -> AsyncIterator[TaskEvent]:
            while True:
                yield await queue.get()

        try:
            yield stream()
        finally:
            self._queues.remove(queue)
            self._update()

    def publish(self, event: TaskEvent) -> None:
        """Deliver ``event`` to every listener and subscriber."""
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("event listener %r failed", listener)
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)
