"""The embedded result store: a bounded dict in this process.

Records of tasks still queued or running are kept until they complete. Complete records
(SUCCESS / FAILED) are kept in completion order and evicted oldest first once there are more
than ``max_entries`` of them, or once they are older than ``ttl`` seconds, so a process that
runs for weeks holds a bounded amount. A waiter is a future resolved by the ``store`` that
completes its task: no polling.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from flowrra.backends.base import BaseResultBackend
from flowrra.exceptions import ConfigError
from flowrra.serialization import ensure_encodable
from flowrra.task import TaskResult, TaskStatus

__all__ = ["InMemoryBackend", "MemoryBackend"]

_SUCCESS = TaskStatus.SUCCESS
_FAILED = TaskStatus.FAILED
_CANCELLED = TaskStatus.CANCELLED
_monotonic = time.monotonic
DEFAULT_MAX_ENTRIES = 100_000


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

    async def store(self, task_id: str, result: TaskResult) -> None:
        status = result.status
        if status is _SUCCESS:
            if result.result is not None:
                ensure_encodable(result.result, f"the result of task {result.task_name!r}")
        elif status is not _FAILED and status is not _CANCELLED:
            self._live[task_id] = result
            return
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

    def _evict(self) -> None:
        done = self._done
        if self.max_entries is not None:
            while len(done) > self.max_entries:
                done.popitem(last=False)
        if self.ttl is not None and done:
            expired_before = time.monotonic() - self.ttl
            while done and next(iter(done.values()))[0] < expired_before:
                done.popitem(last=False)

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

    async def list(
        self,
        *,
        status: TaskStatus | None = None,
        task_name: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[TaskResult]:
        self._evict()
        records = [*self._live.values(), *(entry[1] for entry in self._done.values())]
        if status is not None:
            records = [r for r in records if r.status is status]
        if task_name is not None:
            records = [r for r in records if r.task_name == task_name]
        records.sort(key=lambda r: r.submitted_ts or 0.0, reverse=True)
        return records[offset : offset + limit]

    async def delete(self, task_id: str) -> bool:
        """Forget a task's record; True if there was one."""
        found = self._live.pop(task_id, None) is not None
        return self._done.pop(task_id, None) is not None or found

    async def clear(self) -> int:
        """Forget every record; returns how many there were."""
        count = len(self)
        self._live.clear()
        self._done.clear()
        return count

    def __len__(self) -> int:
        return len(self._live) + len(self._done)


# flowrra 0.1.8's name for the in-memory backend.
InMemoryBackend = MemoryBackend
