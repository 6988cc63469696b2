"""A base class for result backends (the import path flowrra 0.1.8 documented).

Subclass it and implement ``store``, ``get`` and ``wait_for``; the rest has working
defaults. A backend does not have to subclass it: any object satisfying
:class:`flowrra.protocols.ResultBackend` will do.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, ClassVar

from flowrra.exceptions import BackendError
from flowrra.protocols import BatchStore, ResultPages
from flowrra.task import TaskResult, TaskStatus

if TYPE_CHECKING:
    from flowrra.protocols import ResultBackend

__all__ = ["BaseResultBackend", "list_by_pages", "store_many"]


class BaseResultBackend(ABC):
    """Stores each task's latest :class:`TaskResult`; see ``ResultBackend`` for the contract.

    ``sends_when_called`` is ``False``: ``store`` is taken to be an ``async def``, run by
    whoever awaits it. A backend whose ``store`` starts the write when called says
    ``True``. Optional capabilities are protocols of :mod:`flowrra.protocols` a subclass
    also implements (``BatchStore``, ``KnownTasks``, ``EventSource``).
    """

    sends_when_called: ClassVar[bool] = False

    async def connect(self) -> None:
        """Open connections. The default has none to open."""

    async def close(self) -> None:
        """Release connections. The default has none to release."""

    @abstractmethod
    def store(self, task_id: str, result: TaskResult) -> Awaitable[None]:
        """Record ``result`` as the latest state of ``task_id`` (an ``async def`` will do;
        see ``ResultBackend.store`` for backends that start the write when called)."""

    @abstractmethod
    async def get(self, task_id: str) -> TaskResult | None:
        """The latest record for ``task_id``, or ``None``."""

    @abstractmethod
    async def wait_for(self, task_id: str, timeout: float | None) -> TaskResult:
        """Wait until ``task_id`` is complete; raise ``TimeoutError`` after ``timeout``."""

    async def list(
        self,
        *,
        status: TaskStatus | None = None,
        task_name: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[TaskResult]:
        """Recent records, newest first. Backends that cannot list say so."""
        raise BackendError(f"{type(self).__name__} cannot list results")

    async def list_by_status(
        self, status: TaskStatus, limit: int | None = None, offset: int = 0
    ) -> builtins.list[TaskResult]:
        """flowrra 0.1.8's listing call, kept: ``list(status=...)``."""
        return await self.list(status=status, limit=limit or 1_000_000, offset=offset)


async def list_by_pages(
    backend: ResultPages,
    *,
    status: TaskStatus | None,
    task_name: str | None,
    limit: int,
    offset: int,
) -> builtins.list[TaskResult]:
    """``list(offset=...)`` (flowrra 0.1.8's call) for a backend that pages by cursor:
    pages of its ``list_page`` up to ``offset + limit``, so it costs what lies before the
    page (prefer ``list_page``)."""
    wanted = offset + limit
    found: builtins.list[TaskResult] = []
    cursor: str | None = None
    while len(found) < wanted:
        page, cursor = await backend.list_page(
            status=status, task_name=task_name, limit=min(wanted - len(found), 500), cursor=cursor
        )
        found += page
        if cursor is None:
            break
    return found[offset:wanted]


def store_many(backend: ResultBackend, results: Sequence[TaskResult]) -> Awaitable[None]:
    """Store several records: in one call if the backend is a
    :class:`~flowrra.protocols.BatchStore` (the Redis backend sends them when called, in
    script calls of up to 1,000), else one ``store`` each when awaited."""
    if isinstance(backend, BatchStore):
        return backend.store_many(results)
    return _store_each(backend, results)


async def _store_each(backend: ResultBackend, results: Sequence[TaskResult]) -> None:
    for result in results:
        await backend.store(result.task_id, result)
