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
    running in its process until it returns; its outcome is dropped.
    """

    def __init__(self, concurrency: int | None = None) -> None:
        self.concurrency = concurrency or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    async def start(self) -> None:
        """The pool is created lazily, on the first task, so apps without CPU tasks pay
        nothing."""

    async def stop(self, wait: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
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
        loop = asyncio.get_running_loop()
        current = attempt_here()
        return await loop.run_in_executor(
            self._pool,
            _call_by_name,
            module,
            task.fn.__qualname__,
            args,
            kwargs,
            None if current is None else snapshot(current),
        )
