"""The read model of an app: what ``flowrra status`` prints and what the web UI shows.

:class:`Monitor` answers from the app's broker, result backend and (if it has one) its
scheduler, so it works in any process that imports the app: the worker itself, or a web
app in front of Redis workers. Everything it returns is plain JSON-ready data.

Totals and throughput come from the counts the backend keeps as it writes (a
:class:`~flowrra.protocols.ResultCounts`: the in-memory and Redis ones), exact at any
volume; over a backend without them, from the most recent ``sample`` records (default
1,000). Executions are listed a page at a time by cursor (:meth:`Monitor.executions_page`),
from the backend's indexes when it is a :class:`~flowrra.protocols.ResultPages`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from flowrra.cursors import MAX_OFFSET, decode_offset, encode_offset
from flowrra.events import EventHub, TaskEvent
from flowrra.protocols import (
    EventSource,
    NamedQueues,
    ResultCounts,
    ResultPages,
    WorkerDirectory,
)
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


#: Records turned into dicts between two yields to the event loop: a 500-record page is
#: a few milliseconds of work; in chunks of ~0.1 ms, the host's other requests run in
#: between, however many pages are being made at once.
CHUNK = 10


async def _as_dicts(records: list[TaskResult]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for start in range(0, len(records), CHUNK):
        if start:
            await asyncio.sleep(0)
        out += [record.to_dict() for record in records[start : start + CHUNK]]
    return out


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

    async def executions_page(
        self,
        *,
        status: TaskStatus | str | None = None,
        task_name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of task records, newest first, and the cursor of the next one (``None``
        at the end). From the backend's indexes when it is a
        :class:`~flowrra.protocols.ResultPages`; else by offset, to
        :data:`~flowrra.cursors.MAX_OFFSET` records deep. A cursor this listing did not
        make raises ``ValueError``."""
        wanted = TaskStatus(status) if status is not None else None
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        backend = self.app.backend
        if isinstance(backend, ResultPages):
            records, next_cursor = await backend.list_page(
                status=wanted, task_name=task_name, limit=limit, cursor=cursor
            )
        else:
            offset = 0 if cursor is None else decode_offset(cursor)
            records = await backend.list(
                status=wanted, task_name=task_name, limit=limit + 1, offset=offset
            )
            deeper = offset + limit
            more = len(records) > limit and deeper <= MAX_OFFSET
            next_cursor = encode_offset(deeper) if more else None
            records = records[:limit]
        return await _as_dicts(records), next_cursor

    async def stats(self, *, minutes: int = 15) -> dict[str, Any]:
        """Totals by status and completions per minute over the last ``minutes``; plus
        queues, workers alive and the ten latest failures. ``exact`` says whether the
        figures are the backend's counts (a :class:`~flowrra.protocols.ResultCounts`:
        ``success`` and ``failed`` count every completion recorded, including those whose
        record has expired since; the live statuses count the records in them now) or
        ``sampled`` from its latest records."""
        backend = self.app.backend
        if isinstance(backend, ResultCounts):
            counts = await backend.counts(minutes)
            failures, _ = await self.executions_page(status=TaskStatus.FAILED, limit=10)
            figures: dict[str, Any] = {
                "exact": True,
                "sampled": None,
                "totals": {s.value: counts["totals"].get(s.value, 0) for s in TaskStatus},
                "retries": counts["totals"].get("retries", 0),
                "throughput": [
                    {
                        "minute": m["minute"],
                        "completed": m["success"] + m["failed"],
                        "failed": m["failed"],
                    }
                    for m in counts["per_minute"]
                ],
            }
        else:
            figures, failures = await self._sampled(minutes)
        return {
            **figures,
            "queues": await self.queues(),
            "workers": len(await self.workers()),
            "recent_failures": failures,
            "tasks_registered": len(self.app.registry),
        }

    async def _sampled(self, minutes: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The figures of :meth:`stats` from the latest ``sample`` records."""
        records: list[TaskResult] = await self.app.backend.list(limit=self.sample)
        totals = Counter(record.status.value for record in records)
        now = time.time()
        start = (int(now) // 60 - minutes + 1) * 60
        buckets = [0] * minutes
        failed = [0] * minutes
        for record in records:
            finished = record.finished_ts
            if finished is not None and finished >= start:
                index = int(finished - start) // 60
                if 0 <= index < minutes:
                    buckets[index] += 1
                    failed[index] += record.status is TaskStatus.FAILED
        failures = [r.to_dict() for r in records if r.status is TaskStatus.FAILED][:10]
        figures = {
            "exact": False,
            "sampled": len(records),
            "totals": {status.value: totals.get(status.value, 0) for status in TaskStatus},
            "retries": None,
            "throughput": [
                {"minute": start + 60 * i, "completed": count, "failed": failed[i]}
                for i, count in enumerate(buckets)
            ],
        }
        return figures, failures

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
