"""The I/O executor: awaits an ``async def`` task's coroutine on the worker's event loop,
and runs a plain ``def`` task (one not ``cpu_bound``) in a thread pool, so blocking I/O
(a database driver, the Django ORM, ``requests``) does not block the loop."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flowrra.context import pin_attempt
from flowrra.registry import TaskHandle

__all__ = ["IOExecutor"]


class IOExecutor:
    """Runs ``async def`` tasks on the event loop and plain ``def`` tasks in ``threads``
    threads (default: one per slot), ``concurrency`` tasks at a time in all.

    The pool starts with the first plain ``def`` task: an app without one has no thread.
    A thread cannot be interrupted: a thread task that outlives its ``timeout`` fails the
    attempt at once, but its thread runs on until the function returns, and its result is
    dropped. The function runs in a copy of the running coroutine's context, so context
    variables set around the task are seen in its thread."""

    def __init__(self, concurrency: int = 4, threads: int | None = None) -> None:
        self.concurrency = concurrency
        #: Threads for plain ``def`` tasks; ``None``: as many as ``concurrency``.
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Nothing to acquire: the event loop is already running; threads start on demand."""

    async def stop(self, wait: bool) -> None:
        """Let the threads go once their task returns; with ``wait``, wait for that (in a
        thread of its own, so the loop keeps serving)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if wait:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
        else:
            pool.shutdown(wait=False, cancel_futures=True)

    def run(
        self, task: TaskHandle[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Awaitable[Any]:
        if task.in_thread:
            return self._in_thread(task, args, kwargs)
        # The task's own coroutine, not a wrapper around it: one frame less per task.
        return task.fn(*args, **kwargs)  # type: ignore[no-any-return]

    def _in_thread(
        self, task: TaskHandle[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Awaitable[Any]:
        pool = self._pool
        if pool is None:
            pool = self._pool = ThreadPoolExecutor(
                self.threads or self.concurrency, thread_name_prefix="flowrra-task"
            )
        context = contextvars.copy_context()
        context.run(pin_attempt)  # current_task() in the thread: this attempt, for good
        call = functools.partial(context.run, task.fn, *args, **kwargs)
        return asyncio.get_running_loop().run_in_executor(pool, call)
