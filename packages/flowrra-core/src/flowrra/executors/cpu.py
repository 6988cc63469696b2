"""The CPU executor: runs plain ``def`` tasks in a process pool.

The pool is given the task's module and qualified name, not the function: the module-level
name of a decorated function is its :class:`~flowrra.registry.TaskHandle`, and the child
imports the module and unwraps it. Arguments and return values cross to the child by
pickle; that is between this process and its own children, never data read from a broker.
The attempt's context goes with the call, so ``flowrra.current_task()`` answers in the
child (progress cannot be reported from there).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import importlib
import os
from typing import TYPE_CHECKING, Any

from flowrra.context import attempt_here, run_with_context, snapshot
from flowrra.exceptions import TaskRegistrationError
from flowrra.registry import TaskHandle

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

__all__ = ["CPUExecutor"]


def _call_by_name(
    module: str,
    qualname: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    context: tuple[Any, ...] | None = None,
) -> Any:
    """In the pool's child: find the function by name and call it, with the attempt's
    ``context`` (:func:`flowrra.context.snapshot`) for ``current_task()``."""
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    handle = target if isinstance(target, TaskHandle) else None
    if handle is not None:
        target = handle.fn
    if context is None:
        return target(*args, **kwargs)
    return run_with_context(context, handle, target, *args, **kwargs)


class CPUExecutor:
    """Runs CPU-bound tasks in a ``ProcessPoolExecutor`` of ``concurrency`` processes.

    The pool starts on the first CPU task. A task cancelled here (timeout, shutdown) keeps
    running in its process until it returns; its outcome is dropped. :meth:`stop` does not
    wait for such abandoned calls: nobody awaits their outcome (the worker released their
    messages), so it ends the pool's processes instead of outliving the grace period.
    """

    def __init__(self, concurrency: int | None = None) -> None:
        self.concurrency = concurrency or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None
        #: Calls still running in the pool whose caller stopped waiting for them.
        self._abandoned: set[concurrent.futures.Future[Any]] = set()

    async def start(self) -> None:
        """The pool is created lazily, on the first task, so apps without CPU tasks pay
        nothing."""

    async def stop(self, wait: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        abandoned = {f for f in self._abandoned if not f.done()}
        self._abandoned.clear()
        if abandoned:
            # Waiting would outlast the grace period for results nobody will store.
            _end_processes(pool)
            wait = False
        await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(pool.shutdown, wait=wait, cancel_futures=not wait)
        )

    async def run(
        self, task: TaskHandle[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        module = getattr(task.fn, "__module__", None)
        if module is None:
            raise TaskRegistrationError(f"task {task.name!r} has no module to import it from")
        if self._pool is None:
            # Imported here: multiprocessing costs a worker's start ~13 ms, and most apps
            # have no CPU task.
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(max_workers=self.concurrency)
        current = attempt_here()
        call = self._pool.submit(
            _call_by_name,
            module,
            task.fn.__qualname__,
            args,
            kwargs,
            None if current is None else snapshot(current),
        )
        try:
            return await asyncio.wrap_future(call)
        except asyncio.CancelledError:
            if not call.cancel() and not call.done():  # running: it goes on without us
                self._abandoned.add(call)
                call.add_done_callback(self._abandoned.discard)
            raise


def _end_processes(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's processes (SIGKILL, as Python 3.14's ``kill_workers`` does: a
    forked child inherits the worker's SIGTERM handler, so SIGTERM would not end it); the
    pool then fails what they ran, and ``shutdown`` returns at once."""
    kill = getattr(pool, "kill_workers", None)
    if kill is not None:
        kill()
        return
    processes = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        with contextlib.suppress(Exception):
            process.kill()
