"""The read model of an app: what ``flowrra status`` prints and what the web UI shows.

:class:`Monitor` answers from the app's broker, result backend and (if it has one) its
scheduler, so it works in any process that imports the app: the worker itself, or a web
app in front of Redis workers. Everything it returns is plain JSON-ready data.

Counts and throughput are computed over the most recent ``sample`` records the backend
holds (default 1,000), not over all time: a backend keeps results for a while (TTL,
bounded store), and reading all of them on every page view would not scale.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from flowrra.events import EventHub, TaskEvent
from flowrra.protocols import EventSource, NamedQueues, WorkerDirectory
from flowrra.task import DEFAULT_QUEUE, TaskResult, TaskStatus

if TYPE_CHECKING:
    from flowrra.app import Flowrra

__all__ = ["Monitor"]


@functools.cache
def _takes_on_connection(kind: type[Any]) -> bool:
    try:
        return "on_connection" in inspect.signature(kind.subscribe_events).parameters
    except (TypeError, ValueError):  # a signature that cannot be read
        return False


def _reports_connection(source: EventSource) -> bool:
    """Whether ``source.subscribe_events`` takes ``on_connection`` (an optional keyword of
    the :class:`~flowrra.protocols.EventSource` protocol)."""
    return _takes_on_connection(type(source))


class Monitor:
    """Read-only views of one :class:`flowrra.Flowrra` app (see the module docs)."""

    def __init__(self, app: Flowrra, *, sample: int = 1000) -> None:
        if sample < 1:
            raise ValueError(f"sample must be >= 1, got {sample}")
        self.app = app
        self.sample = sample

    def tasks(self) -> list[dict[str, Any]]:
        """The registered tasks and their options, by name."""
        out = []
        for handle in sorted(self.app.registry, key=lambda h: h.name):
            options = handle.options
            out.append(
                {
                    "name": handle.name,
                    "cpu_bound": options.cpu_bound,
                    "max_retries": options.retry.max_retries,
                    "retry_delay": options.retry.delay,
                    "retry_max_delay": options.retry.max_delay,
                    "timeout": options.timeout,
                    "doc": (handle.__doc__ or "").strip() or None,
                }
            )
        return out

    async def queues(self) -> dict[str, int]:
        """Live message counts by state. Brokers shared between processes
        (:class:`~flowrra.protocols.WorkerDirectory`) give ``queued``, ``delayed``,
        ``leased`` and ``dead``; the in-memory broker knows its own queue only."""
        broker = self.app.broker
        if isinstance(broker, WorkerDirectory):
            return await broker.queue_depths()
        return {"queued": broker.pending_count()}

    async def queue_stats(self) -> dict[str, dict[str, Any]]:
        """Per named queue: ``queued``, ``delayed``, ``leased`` and ``priorities`` (due
        messages by priority, keys as text for JSON), from a
        :class:`~flowrra.protocols.NamedQueues` broker; else the default queue's count."""
        broker = self.app.broker
        if isinstance(broker, NamedQueues):
            stats = await broker.queue_stats()
            return {
                name: {**entry, "priorities": {str(p): n for p, n in entry["priorities"].items()}}
                for name, entry in stats.items()
            }
        return {DEFAULT_QUEUE: {"queued": broker.pending_count()}}

    async def workers(self) -> list[dict[str, Any]]:
        """Workers whose heartbeat is current (none on the in-memory broker, whose only
        worker is this process's own)."""
        broker = self.app.broker
        if isinstance(broker, WorkerDirectory):
            return sorted(await broker.workers(), key=lambda w: str(w.get("id")))
        return []

    async def executions(
        self,
        *,
        status: TaskStatus | str | None = None,
        task_name: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Recent task records, newest first, filtered and paginated."""
        wanted = TaskStatus(status) if status is not None else None
        if limit < 1 or offset < 0:
            raise ValueError(f"limit must be >= 1 and offset >= 0, got {limit}, {offset}")
        records = await self.app.backend.list(
            status=wanted, task_name=task_name, limit=limit, offset=offset
        )
        return [record.to_dict() for record in records]

    async def execution(self, task_id: str) -> dict[str, Any] | None:
        """One task's record, or ``None``."""
        record: TaskResult | None = await self.app.backend.get(task_id)
        return record.to_dict() if record is not None else None

    async def stats(self, *, minutes: int = 15) -> dict[str, Any]:
        """Totals by status and completions per minute over the last ``minutes``, both over
        the latest ``sample`` records; plus queues, workers alive and recent failures."""
        records: list[TaskResult] = await self.app.backend.list(limit=self.sample)
        totals = Counter(record.status.value for record in records)
        now = time.time()
        start = (int(now) // 60 - minutes + 1) * 60
        buckets = [0] * minutes
        for record in records:
            finished = record.finished_ts
            if finished is not None and finished >= start:
                index = int(finished - start) // 60
                if 0 <= index < minutes:
                    buckets[index] += 1
        failures = [r.to_dict() for r in records if r.status is TaskStatus.FAILED][:10]
        return {
            "sampled": len(records),
            "totals": {status.value: totals.get(status.value, 0) for status in TaskStatus},
            "throughput": [
                {"minute": start + 60 * i, "completed": count} for i, count in enumerate(buckets)
            ],
            "queues": await self.queues(),
            "workers": len(await self.workers()),
            "recent_failures": failures,
            "tasks_registered": len(self.app.registry),
        }

    async def schedules(self) -> list[dict[str, Any]]:
        """The schedules of the app's scheduler (``app.create_scheduler()``), or none."""
        scheduler = self.app.scheduler
        if scheduler is None:
            return []
        return [schedule.to_dict() for schedule in await scheduler.list()]

    def events(
        self,
        max_buffer: int = 10_000,
        on_connection: Callable[[bool], None] | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[TaskEvent]]:
        """Live task events: from every process when the backend is an
        :class:`~flowrra.protocols.EventSource` (Redis), else from this process's
        ``app.events``. ``async with monitor.events() as events: async for e in events``.

        ``on_connection`` is told when a subscription over the network is lost (``False``)
        and when it holds (``True``, again after each reconnect: events in between are
        missed), for an event source that reports it (Redis does); the in-process hub
        cannot lose any, and says nothing."""
        backend = self.app.backend
        if isinstance(backend, EventSource):
            if on_connection is not None and _reports_connection(backend):
                subscribe: Any = backend.subscribe_events
                return subscribe(max_buffer, on_connection=on_connection)  # type: ignore[no-any-return]
            return backend.subscribe_events(max_buffer)
        hub: EventHub = self.app.events
        return hub.subscribe(max_buffer)

    async def status(self) -> dict[str, Any]:
        """What ``flowrra status`` prints: the broker, its queues and the live workers."""
        return {
            "broker": repr(self.app.broker),
            "queues": await self.queues(),
            "by_queue": await self.queue_stats(),
            "workers": await self.workers(),
        }
