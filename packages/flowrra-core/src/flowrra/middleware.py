"""Middleware: code that runs around each submit and each attempt, in every app.

A middleware is an object with any of the hooks of :class:`Middleware` (subclass it, or
not: the hooks are found by name). Each hook may be a plain method or an ``async def``.
Install one per app with ``app.add_middleware(m)`` (or ``Flowrra(middleware=[...])``), or
in every app of the process with :func:`install` (what instrumentors such as
flowrra-opentelemetry's do).

Where each hook runs:

=====================  ==========================================================
``before_submit``      producer side, before anything is stored or queued: may add
                       ``message.headers`` (a trace context, a tenant id)
``after_submit``       producer side, once the task is queued (``exception`` is
                       ``None``) or refused (the exception ``submit`` raises)
``before_attempt``     worker side, before each attempt runs, inside the task's
                       context (see :func:`flowrra.current_task`): context variables
                       it sets are seen by the task
``after_attempt``      after each attempt: ``result`` is the record it produced
                       (SUCCESS, RETRYING or FAILED), ``exception`` what it raised;
                       an attempt the worker's stop interrupts gets its RUNNING
                       record and the ``CancelledError``
``on_retry``           an attempt failed and another follows in ``delay`` seconds
``on_failure``         the task failed for good (no retry left)
``on_dead_letter``     a message that can never run was dead-lettered
``on_worker_start``    the app's worker started (``flowrra worker``, ``async with app``)
``on_worker_stop``     the app's worker is about to stop
=====================  ==========================================================

``before_*`` hooks run in the order the middleware was added, ``after_*`` hooks in the
reverse order, so a middleware wraps those added after it. A hook that raises is logged
(``flowrra.middleware``, with its traceback) and the task goes on as if it had not been
there: middleware never loses a task. Installed middleware costs the engine nothing when
there is none: the worker and ``submit`` test one list each.
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from flowrra.awaitables import DONE

if TYPE_CHECKING:
    from flowrra.context import TaskContext
    from flowrra.task import TaskMessage, TaskResult

__all__ = [
    "HOOKS",
    "Middleware",
    "MiddlewareChain",
    "install",
    "installed",
    "uninstall",
]

logger = logging.getLogger("flowrra.middleware")


class Middleware:
    """Base class of middleware: every hook does nothing. Override the ones you need,
    with ``def`` or ``async def``."""

    def before_submit(self, message: TaskMessage) -> Any:
        """A task is about to be queued (``message.headers`` may be added to)."""

    def after_submit(self, message: TaskMessage, exception: BaseException | None) -> Any:
        """The task was queued (``exception`` is ``None``), or ``submit`` raises
        ``exception``."""

    def before_attempt(self, task: TaskContext) -> Any:
        """An attempt is about to run."""

    def after_attempt(
        self, task: TaskContext, result: TaskResult, exception: BaseException | None
    ) -> Any:
        """An attempt is over: ``result`` is its record, ``exception`` what it raised."""

    def on_retry(self, task: TaskContext, exception: BaseException, delay: float) -> Any:
        """The attempt raised ``exception``; the next one is due in ``delay`` seconds."""

    def on_failure(self, task: TaskContext, exception: BaseException) -> Any:
        """The task failed for good with ``exception``."""

    def on_dead_letter(self, message: TaskMessage, reason: str) -> Any:
        """``message`` could never run and was dead-lettered for ``reason``."""

    def on_worker_start(self, app: Any) -> Any:
        """``app``'s worker started."""

    def on_worker_stop(self, app: Any) -> Any:
        """``app``'s worker is about to stop."""


#: The hook names, in the order of the table above.
HOOKS = (
    "before_submit",
    "after_submit",
    "before_attempt",
    "after_attempt",
    "on_retry",
    "on_failure",
    "on_dead_letter",
    "on_worker_start",
    "on_worker_stop",
)
_AFTER = {"after_submit", "after_attempt", "on_worker_stop"}

#: Middleware of every app in this process (see :func:`install`).
_installed: list[Any] = []
_chains: weakref.WeakSet[MiddlewareChain] = weakref.WeakSet()


def install(middleware: Any) -> None:
    """Add ``middleware`` to every app of this process, present and future, ahead of each
    app's own. Installing the same object twice does nothing."""
    if any(m is middleware for m in _installed):
        return
    _check(middleware)
    _installed.append(middleware)
    for chain in list(_chains):
        chain.refresh()


def uninstall(middleware: Any) -> None:
    """Undo :func:`install` (a middleware not installed is ignored)."""
    _installed[:] = [m for m in _installed if m is not middleware]
    for chain in list(_chains):
        chain.refresh()


def installed() -> list[Any]:
    """The middleware :func:`install` added, in order."""
    return list(_installed)


def _check(middleware: Any) -> None:
    if isinstance(middleware, type):
        raise TypeError(
            f"middleware is an instance, not a class: add {middleware.__name__}(), "
            f"not {middleware.__name__}"
        )
    if not any(callable(getattr(middleware, name, None)) for name in HOOKS):
        raise TypeError(
            f"{middleware!r} has none of the middleware hooks ({', '.join(HOOKS)}); "
            "subclass flowrra.middleware.Middleware"
        )


def _hook(middleware: Any, name: str) -> Callable[..., Any] | None:
    """``middleware``'s ``name`` hook, unless it is missing or the base class's no-op."""
    method = getattr(middleware, name, None)
    if method is None or not callable(method):
        return None
    if getattr(method, "__func__", None) is getattr(Middleware, name):
        return None
    return method  # type: ignore[no-any-return]


class MiddlewareChain:
    """One app's middleware, hook by hook. Each hook's list (``submits``, ``attempts``, …)
    is empty when no middleware has that hook: callers test it before calling."""

    def __init__(self, middleware: Iterable[Any] = ()) -> None:
        self._own: list[Any] = []
        self.submits = False
        self.attempts = False
        self.outcomes = False
        self.dead_letters = False
        self.lifecycle = False
        self._hooks: dict[str, list[Callable[..., Any]]] = {name: [] for name in HOOKS}
        _chains.add(self)
        for m in middleware:
            self.add(m)
        self.refresh()

    def add(self, middleware: Any) -> None:
        """Append ``middleware`` to this chain."""
        _check(middleware)
        self._own.append(middleware)
        self.refresh()

    def remove(self, middleware: Any) -> None:
        """Remove ``middleware`` from this chain (``ValueError`` if it is not there)."""
        for index, m in enumerate(self._own):
            if m is middleware:
                del self._own[index]
                self.refresh()
                return
        raise ValueError(f"{middleware!r} is not in this app's middleware")

    @property
    def middleware(self) -> list[Any]:
        """Every middleware this chain runs, in order: the installed, then the app's."""
        return [*_installed, *self._own]

    def refresh(self) -> None:
        everything = self.middleware
        for name in HOOKS:
            hooks = [h for h in (_hook(m, name) for m in everything) if h is not None]
            if name in _AFTER:
                hooks.reverse()
            self._hooks[name] = hooks
        h = self._hooks
        self.submits = bool(h["before_submit"] or h["after_submit"])
        self.attempts = bool(h["before_attempt"] or h["after_attempt"])
        self.outcomes = bool(h["on_retry"] or h["on_failure"])
        self.dead_letters = bool(h["on_dead_letter"])
        self.lifecycle = bool(h["on_worker_start"] or h["on_worker_stop"])

    def __bool__(self) -> bool:
        return bool(self._own or _installed)

    def __len__(self) -> int:
        return len(self._own) + len(_installed)

    def call(self, name: str, *args: Any) -> Awaitable[None]:
        """Run every ``name`` hook with ``args``; one that raises is logged and skipped.

        Plain hooks run here and now; what is returned is awaited by the caller, and
        finishes the hooks from the first one that returned an awaitable (an ``async
        def``): a chain of plain hooks costs no coroutine."""
        hooks = self._hooks[name]
        for index, hook in enumerate(hooks):
            try:
                outcome = hook(*args)
            except Exception:
                _log_failure(hook, name)
                continue
            if outcome is not None and inspect.isawaitable(outcome):
                return self._finish(outcome, hook, hooks[index + 1 :], name, args)
        return DONE

    @staticmethod
    async def _finish(
        pending: Awaitable[Any],
        hook: Callable[..., Any],
        rest: list[Callable[..., Any]],
        name: str,
        args: tuple[Any, ...],
    ) -> None:
        try:
            await pending
        except Exception:
            _log_failure(hook, name)
        for hook in rest:
            try:
                outcome = hook(*args)
                if outcome is not None and inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                _log_failure(hook, name)

    # Named shortcuts, so call sites read as what they do (``await chain.before_attempt(t)``).
    def before_submit(self, message: TaskMessage) -> Awaitable[None]:
        return self.call("before_submit", message)

    def after_submit(
        self, message: TaskMessage, exception: BaseException | None
    ) -> Awaitable[None]:
        return self.call("after_submit", message, exception)

    def before_attempt(self, task: TaskContext) -> Awaitable[None]:
        return self.call("before_attempt", task)

    def after_attempt(
        self, task: TaskContext, result: TaskResult, exception: BaseException | None
    ) -> Awaitable[None]:
        return self.call("after_attempt", task, result, exception)

    def on_retry(
        self, task: TaskContext, exception: BaseException, delay: float
    ) -> Awaitable[None]:
        return self.call("on_retry", task, exception, delay)

    def on_failure(self, task: TaskContext, exception: BaseException) -> Awaitable[None]:
        return self.call("on_failure", task, exception)

    def on_dead_letter(self, message: TaskMessage, reason: str) -> Awaitable[None]:
        return self.call("on_dead_letter", message, reason)

    def on_worker_start(self, app: Any) -> Awaitable[None]:
        return self.call("on_worker_start", app)

    def on_worker_stop(self, app: Any) -> Awaitable[None]:
        return self.call("on_worker_stop", app)


def _log_failure(hook: Callable[..., Any], name: str) -> None:
    logger.exception(
        "middleware %r failed in %s; the task goes on", getattr(hook, "__self__", hook), name
    )


#: The chain of an engine part built without an app (a bare Worker, an eager run): empty.
def empty_chain() -> MiddlewareChain:
    return MiddlewareChain()
