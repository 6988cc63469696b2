"""The embedded result store: a bounded dict in this process.

Records of tasks still queued or running are kept until they complete. Complete records
(SUCCESS / FAILED) are kept in completion order and evicted oldest first once there are more
than ``max_entries`` of them, or once they are older than ``ttl`` seconds, so a process that
runs for weeks holds a bounded amount. A waiter is a future resolved by the ``store`` that
completes its task: no polling.

It is a :class:`~flowrra.protocols.ResultPages` (pages by cursor; a task-name filter reads
the ids of that task, a status filter the live or the complete records only) and a
:class:`~flowrra.protocols.ResultCounts` (completions and retries counted as they are
stored, per minute for the last four hours). Both start when first asked for (the
process that never shows the UI pays one attribute test per record stored): the counts
begin with the records held at the first ``counts()``, each complete one a completion and
each one's ``retries``, and count every change from then on.
"""

from __future__ import annotations

import asyncio
import builtins
import heapq
import math
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from flowrra.backends.base import BaseResultBackend
from flowrra.cursors import decode_keyset, encode_keyset
from flowrra.exceptions import ConfigError
from flowrra.serialization import ensure_encodable
from flowrra.task import TaskResult, TaskStatus

__all__ = ["InMemoryBackend", "MemoryBackend"]

_SUCCESS = TaskStatus.SUCCESS
_FAILED = TaskStatus.FAILED
_CANCELLED = TaskStatus.CANCELLED
_RETRYING = TaskStatus.RETRYING
_monotonic = time.monotonic
DEFAULT_MAX_ENTRIES = 100_000
#: Minutes of completion counts kept (the dashboard's longest window, and a little more).
MINUTES_KEPT = 245
_LIVE = (TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.RETRYING)


def _place(record: TaskResult) -> tuple[float, str]:
    """A record's place in a listing: newest submitted first, then by id."""
    return (record.submitted_ts or 0.0, record.task_id)


class MemoryBackend(BaseResultBackend):
    """Bounded in-process result store (the default).

    ``max_entries``: most complete results kept (``None``: no count limit).
    ``ttl``: seconds a complete result is kept (``None``: no age limit).
    Results must be JSON-encodable, as on every other backend.
    """

    def __init__(self, max_entries: int | None = DEFAULT_MAX_ENTRIES, ttl: float | None = None):
        if max_entries is not None and max_entries < 1:
            raise ConfigError(f"max_entries must be >= 1 or None, got {max_entries}")
        if ttl is not None and ttl <= 0:
            raise ConfigError(f"ttl must be > 0 seconds or None, got {ttl}")
        self.max_entries = max_entries
        self.ttl = ttl
        self._live: dict[str, TaskResult] = {}
        self._done: OrderedDict[str, tuple[float, TaskResult]] = OrderedDict()
        self._waiters: dict[str, list[asyncio.Future[TaskResult]]] = {}
        # What the UI asks for, kept only once asked (a process that never shows the UI
        # pays one attribute test per record stored): the task-name index (task name ->
        # its ids), made by the first listing by name, and the counts, started by the
        # first ``counts()`` from the records held then.
        self._keeping = False
        self._by_name: dict[str | None, dict[str, None]] | None = None
        self._counting = False
        self._totals = {"success": 0, "failed": 0, "retries": 0}  # up to the last minute
        # Completions per Unix minute, [successes, failures]: earlier minutes, and the
        # current one, which ends at monotonic time _minute_end (one comparison per
        # completion; the wall clock is read once).
        self._minutes: dict[int, list[int]] = {}
        self._minute = 0
        self._minute_end = -math.inf
        self._current = [0, 0]
        self._wall_offset = 0.0

    async def store(self, task_id: str, result: TaskResult) -> None:
        status = result.status
        if status is _SUCCESS:
            if result.result is not None:
                ensure_encodable(result.result, f"the result of task {result.task_name!r}")
        elif status is not _FAILED and status is not _CANCELLED:
            if self._keeping:
                self._note_live(task_id, result)
            self._live[task_id] = result
            return
        if self._keeping:
            self._note_done(task_id, result)
        self._live.pop(task_id, None)
        done = self._done
        if task_id in done:
            done.move_to_end(task_id)
        done[task_id] = (_monotonic(), result)
        if (self.max_entries is not None and len(done) > self.max_entries) or self.ttl is not None:
            self._evict()
        waiters = self._waiters.pop(task_id, None)
        if waiters:
            for future in waiters:
                if not future.done():
                    future.set_result(result)

    def _note_live(self, task_id: str, record: TaskResult) -> None:
        """Keep the name index and the retries count up to date with a live record."""
        earlier = self._live.get(task_id)
        if earlier is None and self._by_name is not None and task_id not in self._done:
            self._by_name.setdefault(record.task_name, {})[task_id] = None
        if (
            self._counting
            and record.status is _RETRYING
            and (earlier is None or earlier.status is not _RETRYING)
        ):
            self._totals["retries"] += 1

    def _note_done(self, task_id: str, record: TaskResult) -> None:
        """Keep the name index and the counts up to date with a complete record."""
        if task_id in self._done:
            return  # stored again: counted and indexed already
        if self._by_name is not None and task_id not in self._live:
            self._by_name.setdefault(record.task_name, {})[task_id] = None
        if self._counting:
            now = _monotonic()
            if now >= self._minute_end:
                self._next_minute(now)
            self._current[record.status is _FAILED] += 1

    def _start_counting(self) -> None:
        """Count from now on, starting from the records held: completions by outcome and
        by minute of ``finished_at``, and each record's retries."""
        self._wall_offset = time.time() - _monotonic()
        self._next_minute(_monotonic())
        first = self._minute - MINUTES_KEPT + 1
        retries = 0
        for record in self._live.values():
            retries += record.retries
        for _, record in self._done.values():
            retries += record.retries
            failed = record.status is _FAILED
            self._totals["failed" if failed else "success"] += 1
            finished = record.finished_ts
            minute = self._minute if finished is None else int(finished) // 60
            if first <= minute < self._minute:
                self._minutes.setdefault(minute, [0, 0])[failed] += 1
            elif minute == self._minute:  # counted in the totals when this minute ends
                self._totals["failed" if failed else "success"] -= 1
                self._current[failed] += 1
        self._totals["retries"] = retries
        self._counting = self._keeping = True

    def _next_minute(self, now: float) -> None:
        """Close the current minute's count (into the totals) and start the one of ``now``
        (monotonic time)."""
        ok, bad = self._current
        if ok or bad:
            self._minutes[self._minute] = self._current
            self._totals["success"] += ok
            self._totals["failed"] += bad
        minute = int(now + self._wall_offset) // 60
        self._minute, self._minute_end = minute, (minute + 1) * 60 - self._wall_offset
        self._current = [0, 0]
        for old in [m for m in self._minutes if m <= minute - MINUTES_KEPT]:
            del self._minutes[old]

    def _forget(self, task_id: str, record: TaskResult) -> None:
        by_name = self._by_name
        ids = None if by_name is None else by_name.get(record.task_name)
        if by_name is not None and ids is not None:
            ids.pop(task_id, None)
            if not ids:
                del by_name[record.task_name]

    def _names(self) -> dict[str | None, dict[str, None]]:
        """The task-name index, made now if it was not."""
        if self._by_name is None:
            by_name: dict[str | None, dict[str, None]] = {}
            for task_id, record in self._live.items():
                by_name.setdefault(record.task_name, {})[task_id] = None
            for task_id, (_, record) in self._done.items():
                by_name.setdefault(record.task_name, {})[task_id] = None
            self._by_name = by_name
            self._keeping = True
        return self._by_name

    def _evict(self) -> None:
        done = self._done
        if self.max_entries is not None:
            while len(done) > self.max_entries:
                task_id, (_, record) = done.popitem(last=False)
                self._forget(task_id, record)
        if self.ttl is not None and done:
            expired_before = time.monotonic() - self.ttl
            while done and next(iter(done.values()))[0] < expired_before:
                task_id, (_, record) = done.popitem(last=False)
                self._forget(task_id, record)

    async def get(self, task_id: str) -> TaskResult | None:
        live = self._live.get(task_id)
        if live is not None:
            return live
        entry = self._done.get(task_id)
        if entry is None:
            return None
        if self.ttl is not None and entry[0] < time.monotonic() - self.ttl:
            self._evict()
            return None
        return entry[1]

    async def wait_for(self, task_id: str, timeout: float | None) -> TaskResult:
        current = await self.get(task_id)
        if current is not None and current.is_complete:
            return current
        future: asyncio.Future[TaskResult] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(task_id, []).append(future)
        try:
            if timeout is None:
                return await future
            async with asyncio.timeout(timeout):
                return await future
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiters[task_id]

    def _records(self, status: TaskStatus | None, task_name: str | None) -> Iterable[TaskResult]:
        """The records a listing looks at: the task's (by its ids), or the live or the
        complete ones for a status, or all; filtered by ``status``."""
        self._evict()
        live, done = self._live, self._done
        records: Iterable[TaskResult]
        if task_name is not None:
            ids = self._names().get(task_name, {})
            records = [
                record
                for record in (
                    live.get(i) or (done[i][1] if i in done else None) for i in list(ids)
                )
                if record is not None
            ]
        elif status is None:
            return [*live.values(), *(entry[1] for entry in done.values())]
        elif status in _LIVE:
            records = live.values()
        else:
            records = (entry[1] for entry in done.values())
        if status is None:
            return records
        return [record for record in records if record.status is status]

    async def list(
        self,
        *,
        status: TaskStatus | None = None,
        task_name: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[TaskResult]:
        records = heapq.nlargest(offset + limit, self._records(status, task_name), key=_place)
        return records[offset : offset + limit]

    async def list_page(
        self,
        *,
        status: TaskStatus | None = None,
        task_name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[builtins.list[TaskResult], str | None]:
        """A page newest first, after ``cursor`` (see ``ResultPages``)."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        records = self._records(status, task_name)
        if cursor is not None:
            _, score, after = decode_keyset(cursor)
            records = [r for r in records if _place(r) < (score, after)]
        page = heapq.nlargest(limit + 1, records, key=_place)
        if len(page) <= limit:
            return page, None
        last = page[limit - 1]
        return page[:limit], encode_keyset(repr(last.submitted_ts or 0.0), last.task_id)

    async def counts(self, minutes: int) -> dict[str, Any]:
        """Totals and completions per minute (see ``ResultCounts``)."""
        if not 1 <= minutes <= MINUTES_KEPT - 5:
            raise ValueError(f"minutes must be between 1 and {MINUTES_KEPT - 5}, got {minutes}")
        if not self._counting:
            self._start_counting()
        elif _monotonic() >= self._minute_end:
            self._next_minute(_monotonic())
        now = self._minute
        live = {status.value: 0 for status in _LIVE}
        for record in self._live.values():
            live[record.status.value] += 1
        per_minute = []
        for minute in range(now - minutes + 1, now + 1):
            ok, bad = self._current if minute == now else self._minutes.get(minute, (0, 0))
            per_minute.append({"minute": minute * 60, "success": ok, "failed": bad})
        totals = {
            **self._totals,
            "success": self._totals["success"] + self._current[0],
            "failed": self._totals["failed"] + self._current[1],
        }
        return {"totals": {**live, **totals}, "per_minute": per_minute}

    async def delete(self, task_id: str) -> bool:
        """Forget a task's record; True if there was one."""
        record = self._live.pop(task_id, None)
        entry = self._done.pop(task_id, None)
        if entry is not None:
            record = entry[1]
        if record is not None:
            self._forget(task_id, record)
        return record is not None

    async def clear(self) -> int:
        """Forget every record; returns how many there were."""
        count = len(self)
        self._live.clear()
        self._done.clear()
        self._by_name = None
        self._keeping = self._counting
        return count

    def __len__(self) -> int:
        return len(self._live) + len(self._done)


# flowrra 0.1.8's name for the in-memory backend.
InMemoryBackend = MemoryBackend
