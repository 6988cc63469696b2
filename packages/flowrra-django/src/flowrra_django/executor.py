"""Database connections around each task, as Django handles them around each request.

Django opens a connection per thread on first use, and ``close_old_connections()`` (on the
``request_started`` and ``request_finished`` signals) closes the ones that outlived
``CONN_MAX_AGE``, errored, or were left out of autocommit, and re-arms
``CONN_HEALTH_CHECKS``. A worker serves no request: without the same around each task, a
``CONN_MAX_AGE = 0`` connection is never closed, and one the server dropped (a restart, an
idle timeout, ``pg_terminate_backend``) fails every later task of its thread. Celery's
Django fixup does it on ``task_prerun``/``task_postrun``; django_dramatiq in a middleware.

:class:`DjangoIOExecutor` is Flowrra's I/O executor with ``close_old_connections()`` before
and after each task, **in the thread whose connections the task uses**:

- a plain ``def`` task runs in a thread of the pool: the calls wrap the function there;
- an ``async def`` task reaches the ORM through ``sync_to_async`` (Django's async ORM
  methods included), which runs in asgiref's one thread for sync code: the calls go there
  the same way, so an async task pays two hand-offs to that thread.

CPU tasks (``cpu_bound=True``, a process pool) are not wrapped.

The seam is the public executor protocol (:class:`flowrra.protocols.Executor`): an executor
runs ``task.fn`` of the handle it is given, so this one hands :class:`~flowrra.IOExecutor`
a twin of each handle whose ``fn`` is wrapped (made once per task, then a dict lookup per
run). :func:`prepare_app` puts it in place of the app's I/O executor before the app starts.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections

from flowrra import Flowrra, IOExecutor, TaskHandle

__all__ = ["DjangoIOExecutor", "has_connection_handling", "prepare_app"]

logger = logging.getLogger("flowrra.django")


def _close_old_connections() -> None:
    """``close_old_connections()``; a failure to close is logged, never the task's error."""
    try:
        close_old_connections()
    except Exception:
        logger.warning("could not close old database connections", exc_info=True)


def _close_all() -> None:
    try:
        connections.close_all()
    except Exception:
        logger.warning("could not close the database connections", exc_info=True)


# thread_sensitive (the default): the thread where sync_to_async runs an async task's ORM.
_close_old_connections_async = sync_to_async(_close_old_connections)
_close_all_async = sync_to_async(_close_all)


def _around_thread_task(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        _close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            _close_old_connections()

    return run


def _around_async_task(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> Any:
        await _close_old_connections_async()
        try:
            return await fn(*args, **kwargs)
        finally:
            await _close_old_connections_async()

    return run


def _twin(task: TaskHandle[Any, Any]) -> TaskHandle[Any, Any]:
    """``task`` with its function wrapped: what the executor runs in its place."""
    twin = copy.copy(task)
    twin.fn = _around_thread_task(task.fn) if task.in_thread else _around_async_task(task.fn)
    return twin


class DjangoIOExecutor(IOExecutor):
    """:class:`~flowrra.IOExecutor` that closes old database connections before and after
    each task, in the thread the task's ORM calls run in (see the module docs)."""

    def __init__(self, concurrency: int = 4, threads: int | None = None) -> None:
        super().__init__(concurrency, threads)
        self._twins: dict[TaskHandle[Any, Any], TaskHandle[Any, Any]] = {}

    def run(
        self, task: TaskHandle[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Awaitable[Any]:
        twin = self._twins.get(task)
        if twin is None:
            twin = self._twins[task] = _twin(task)
        return super().run(twin, args, kwargs)

    async def stop(self, wait: bool) -> None:
        await super().stop(wait)
        # The connections async tasks opened live in asgiref's sync thread, which outlives
        # the app: close them with it (a pool thread's go with the thread).
        await _close_all_async()


def prepare_app(app: Flowrra) -> None:
    """Run ``app``'s I/O tasks on a :class:`DjangoIOExecutor` with the same concurrency and
    threads. An app with an I/O executor of its own keeps it, with a warning (and the
    ``flowrra_django.W001`` check): its tasks get no connection handling."""
    worker = app.worker
    current = worker.io_executor
    if isinstance(current, DjangoIOExecutor):
        return
    if type(current) is not IOExecutor or app.is_running:
        logger.warning(
            "%r keeps its I/O executor %r: database connections are not closed around its "
            "tasks (call django.db.close_old_connections() in them)",
            app,
            current,
        )
        return
    worker.io_executor = DjangoIOExecutor(current.concurrency, current.threads)


def has_connection_handling(app: Flowrra) -> bool:
    """Whether ``app``'s I/O tasks run with database connections handled."""
    return isinstance(app.worker.io_executor, DjangoIOExecutor)
