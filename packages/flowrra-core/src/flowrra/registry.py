"""Task registration: name → function and its options, and the typed handle users hold.

``@app.task()`` returns a :class:`TaskHandle`. It keeps the function's signature for type
checkers (``ParamSpec``): calling it runs the function directly, and
``await handle.submit(...)`` enqueues it with arguments checked by mypy at the call site.
``handle.with_options(priority=1, delay=5, queue="emails").submit(...)`` sets per-call
options without colliding with the task's own keyword arguments. Sync code calls
``handle.delay(...)`` (and ``handle.with_options(...).delay(...)``) instead of
``await handle.submit(...)``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from flowrra.canvas import Signature
from flowrra.clock import SYSTEM_CLOCK, Clock
from flowrra.exceptions import TaskNotRegisteredError, TaskRegistrationError
from flowrra.limits import TaskLimits
from flowrra.queues import check_queue_name
from flowrra.retry import RetryPolicy
from flowrra.task import DEFAULT_QUEUE, check_headers
from flowrra.times import as_aware
from flowrra.unique import Unique, check_unique_for, check_unique_key, derived_key

__all__ = ["TaskCall", "TaskHandle", "TaskOptions", "TaskRegistry", "eta_from"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """How a registered task runs: where (I/O loop or process pool), retries, time limit,
    the queue it goes to (``None``: the app's routes decide, else the default), whether
    a submit is deduplicated on a key derived from its arguments (``unique``), kept
    ``unique_for`` seconds after a success (see :mod:`flowrra.unique`), and how often and
    how many at once it may start (``limits``)."""

    cpu_bound: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None
    queue: str | None = None
    unique: bool = False
    unique_for: float = 0.0
    #: Its rate limit and concurrency limit (``None``: unlimited; see :mod:`flowrra.limits`).
    limits: TaskLimits | None = None


class _Submitter(Protocol):
    @property
    def clock(self) -> Clock: ...

    async def _enqueue(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        priority: int,
        eta: float | None,
        headers: dict[str, str] | None = None,
        queue: str = DEFAULT_QUEUE,
    ) -> str: ...

    def _enqueue_sync(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        priority: int,
        eta: float | None,
        headers: dict[str, str] | None = None,
        queue: str = DEFAULT_QUEUE,
    ) -> str: ...

    def _check_arguments(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None: ...

    async def _enqueue_unique(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        priority: int,
        eta: float | None,
        headers: dict[str, str] | None,
        queue: str,
        unique: Unique,
    ) -> str: ...

    def _enqueue_unique_sync(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        priority: int,
        eta: float | None,
        headers: dict[str, str] | None,
        queue: str,
        unique: Unique,
    ) -> str: ...


def eta_from(
    delay: float | None, eta: datetime | None, clock: Clock = SYSTEM_CLOCK
) -> float | None:
    """The Unix due time for a ``delay`` in seconds from now on ``clock``, or an ``eta``
    datetime (a naive one is local time, as in 0.1.8: :func:`flowrra.times.as_aware`)."""
    if delay is not None and eta is not None:
        raise ValueError("give either delay= or eta=, not both")
    if delay is not None:
        if delay.__class__ is bool or not isinstance(delay, int | float):
            raise TypeError(
                f"delay is a number of seconds (an int or a float), got {delay!r}; "
                "for a point in time pass eta= a datetime"
            )
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be a finite number of seconds >= 0, got {delay!r}")
        return clock.time() + delay
    if eta is not None:
        given: object = eta  # typed a datetime; checked, as callers pass anything
        if not isinstance(given, datetime):
            hint = " (parse text with datetime.fromisoformat())" if isinstance(given, str) else ""
            raise TypeError(
                f"eta is a datetime (naive: local time), got {eta!r}{hint}; "
                "for seconds from now pass delay="
            )
        try:
            return as_aware(eta).timestamp()
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"eta {eta!r} is out of range ({exc})") from None
    return None


#: Positional counts a task taking ``*args`` is checked for by set lookup; a call with
#: more is checked by ``Signature.bind``.
_COUNTED = 32


class _Binding:
    """What submit needs to know of a task's signature, read once: ``counts``, the numbers
    of positional arguments a call without keyword arguments may pass (a set lookup on the
    hot path), and ``bare``, whether a call with no arguments binds; any other call is
    checked by ``Signature.bind``."""

    __slots__ = ("bare", "counts", "signature")

    def __init__(self, fn: Callable[..., Any]) -> None:
        try:
            signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # no signature to read: accept every call
            signature = None
        self.signature = signature
        if signature is None:
            self.counts: frozenset[int] = frozenset(range(_COUNTED + 1))
            self.bare = True
            return
        parameters = signature.parameters.values()
        positional = [
            p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        least = sum(1 for p in positional if p.default is p.empty)
        most = _COUNTED if any(p.kind is p.VAR_POSITIONAL for p in parameters) else len(positional)
        if any(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in parameters):
            least = most + 1  # no call without keyword arguments binds
        self.counts = frozenset(range(least, most + 1))
        self.bare = 0 in self.counts

    def check(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        """Raise TypeError, naming the task, if ``args`` and ``kwargs`` do not bind."""
        if not kwargs and len(args) in self.counts:
            return
        signature = self.signature
        if signature is None:
            return
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(
                f"task {name!r} cannot be called with these arguments ({exc}); "
                f"its signature is {name}{signature}"
            ) from None


class TaskCall(Generic[P]):
    """A task with per-call options bound; ``await call.submit(*args, **kwargs)``, or
    ``call.delay(*args, **kwargs)`` from sync code, or ``call.s(*args, **kwargs)`` for a
    chain or group."""

    __slots__ = (
        "_delay",
        "_eta",
        "_handle",
        "_headers",
        "_priority",
        "_queue",
        "_unique_for",
        "_unique_key",
    )

    def __init__(
        self,
        handle: TaskHandle[P, Any],
        priority: int,
        eta: float | None,
        headers: dict[str, str] | None = None,
        queue: str | None = None,
        delay: float | None = None,
        unique_key: str | None = None,
        unique_for: float | None = None,
    ) -> None:
        self._handle = handle
        #: ``with_options(unique_key=..., unique_for=...)``, checked (None: not given).
        self._unique_key = unique_key
        self._unique_for = unique_for
        self._priority = priority
        self._eta = eta
        self._headers = headers
        self._queue = queue
        #: The ``delay`` given (``eta`` is it counted from when the options were bound):
        #: a signature counts it from when its task is queued.
        self._delay = delay

    def s(self, *args: Any, **kwargs: Any) -> Signature[Any]:
        """A :class:`~flowrra.canvas.Signature` of this call, with these options (a
        ``delay`` counts from when the task is queued). Chain and group steps are not
        deduplicated: a unique key here is refused."""
        if self._unique_key is not None or self._unique_for is not None:
            raise ValueError(
                f"task {self._handle.name!r}: unique_key/unique_for apply to a submit, not to "
                "a chain or group step (steps are not deduplicated)"
            )
        return Signature(
            self._handle,
            args,
            kwargs,
            priority=self._priority,
            delay=self._delay,
            eta=None if self._delay is not None else self._eta,
            headers=self._headers,
            queue=self._queue,
        )

    async def submit(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Enqueue the task with these options; returns the task id."""
        handle = self._handle
        if kwargs or len(args) not in handle.arities:
            handle.binding.check(handle.name, args, kwargs)
        if args or kwargs:
            handle._submitter._check_arguments(handle.name, args, kwargs)
        submitter = handle._submitter
        if self._unique_key is not None or self._unique_for is not None or handle.unique:
            unique = handle.unique_of(args, kwargs, self._unique_key, self._unique_for)
            assert unique is not None
            return await submitter._enqueue_unique(
                handle.name,
                args,
                kwargs,
                self._priority,
                self._eta,
                self._headers,
                self._queue or handle.queue,
                unique,
            )
        return await submitter._enqueue(
            handle.name,
            args,
            kwargs,
            self._priority,
            self._eta,
            self._headers,
            self._queue or handle.queue,
        )

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """:meth:`submit` for sync code: blocks until the task is queued; returns its id."""
        handle = self._handle
        submitter = handle._submitter
        handle.binding.check(handle.name, args, kwargs)
        submitter._check_arguments(handle.name, args, kwargs)
        if self._unique_key is not None or self._unique_for is not None or handle.unique:
            unique = handle.unique_of(args, kwargs, self._unique_key, self._unique_for)
            assert unique is not None
            return submitter._enqueue_unique_sync(
                handle.name,
                args,
                kwargs,
                self._priority,
                self._eta,
                self._headers,
                self._queue or handle.queue,
                unique,
            )
        return submitter._enqueue_sync(
            handle.name,
            args,
            kwargs,
            self._priority,
            self._eta,
            self._headers,
            self._queue or handle.queue,
        )


class TaskHandle(Generic[P, R]):
    """A registered task. Call it to run the function here and now; ``submit`` to queue it."""

    def __init__(
        self, fn: Callable[P, R], name: str, options: TaskOptions, submitter: _Submitter
    ) -> None:
        self.fn = fn
        self.name = name
        self.options = options
        #: The queue it goes to unless a submit names another: its own ``queue=``, else
        #: what the app's routes say (the app sets it when it registers the task).
        self.queue: str = options.queue or DEFAULT_QUEUE
        #: ``@app.task(unique=True)``: each submit is deduplicated on a key derived from
        #: the task's name and arguments (see :mod:`flowrra.unique`).
        self.unique = options.unique
        #: A plain ``def`` that is not ``cpu_bound``: the I/O executor runs it in a thread.
        self.in_thread = not options.cpu_bound and not inspect.iscoroutinefunction(fn)
        self._submitter = submitter
        self._accepted: tuple[frozenset[str], bool] | None = None
        #: The task's signature as submit checks a call against it.
        self.binding = _Binding(fn)
        #: Its positional counts that bind without keyword arguments (a set to look in).
        self.arities = self.binding.counts
        #: A call with no arguments does not bind (a required parameter).
        self.needs_arguments = not self.binding.bare
        self.__wrapped__ = fn
        self.__name__ = getattr(fn, "__name__", name)
        self.__qualname__ = getattr(fn, "__qualname__", name)
        self.__doc__ = fn.__doc__

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    async def submit(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Enqueue the task at priority 0, to run now; returns the task id."""
        if kwargs or len(args) not in self.arities:
            self.binding.check(self.name, args, kwargs)
        if args or kwargs:
            self._submitter._check_arguments(self.name, args, kwargs)
        submitter = self._submitter
        if self.unique:
            unique = self.derived_unique(args, kwargs)
            return await submitter._enqueue_unique(
                self.name, args, kwargs, 0, None, None, self.queue, unique
            )
        return await submitter._enqueue(self.name, args, kwargs, 0, None, None, self.queue)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """:meth:`submit` for sync code (a Django view, a script, a thread): blocks until
        the task is queued; returns its id. Not from a thread that runs an event loop
        (``SyncCallInLoopError``: use ``await task.submit(...)`` there)."""
        self.binding.check(self.name, args, kwargs)
        submitter = self._submitter
        submitter._check_arguments(self.name, args, kwargs)
        if self.unique:
            unique = self.derived_unique(args, kwargs)
            return submitter._enqueue_unique_sync(
                self.name, args, kwargs, 0, None, None, self.queue, unique
            )
        return submitter._enqueue_sync(self.name, args, kwargs, 0, None, None, self.queue)

    def s(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """A :class:`~flowrra.canvas.Signature` of a call of this task, for
        :func:`~flowrra.chain` and :func:`~flowrra.group` (arguments are checked there:
        a chain's later steps take the result before them first)."""
        return Signature(self, args, kwargs)

    def with_options(
        self,
        *,
        priority: int = 0,
        delay: float | None = None,
        eta: datetime | None = None,
        headers: Mapping[str, str] | None = None,
        queue: str | None = None,
        unique_key: str | None = None,
        unique_for: float | None = None,
    ) -> TaskCall[P]:
        """Bind per-call options: ``priority`` (lower runs first), a due time given as
        ``delay`` seconds from now or an ``eta`` datetime (naive: local time),
        ``headers`` (str to str) that travel with the message, the ``queue`` it goes
        to (default: the task's own, see :mod:`flowrra.queues`), and a ``unique_key``:
        while a task submitted with that key is queued, delayed, running or retrying (and
        ``unique_for`` seconds after it succeeds), a submit with it queues nothing and
        gives that task's id (see :mod:`flowrra.unique`)."""
        if priority.__class__ is not int:
            raise TypeError(f"priority must be an int, got {priority!r}")
        if unique_for is not None and unique_key is None and not self.unique:
            raise ValueError(
                f"task {self.name!r}: unique_for needs a unique_key (or @app.task(unique=True))"
            )
        return TaskCall(
            self,
            priority,
            eta_from(delay, eta, self._submitter.clock),
            check_headers(dict(headers)) if headers is not None else None,
            None if queue is None else check_queue_name(queue),
            delay,
            None if unique_key is None else check_unique_key(unique_key),
            None if unique_for is None else check_unique_for(unique_for),
        )

    def derived_unique(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Unique:
        """The unique key of ``@app.task(unique=True)`` for these arguments, and the
        task's ``unique_for``."""
        return Unique(
            derived_key(self.name, self.binding.signature, args, kwargs), self.options.unique_for
        )

    def unique_of(
        self,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        key: str | None = None,
        keep_for: float | None = None,
    ) -> Unique | None:
        """The unique key (and seconds kept after success) of a submit of this task with
        ``args`` and ``kwargs``: ``key`` if given, else, for ``@app.task(unique=True)``, the
        key derived from the arguments; ``None`` for a submit that is not unique."""
        keep = self.options.unique_for if keep_for is None else keep_for
        if key is not None:
            return Unique(key, keep)
        if self.unique:
            return self.derived_unique(args, kwargs)._replace(keep_for=keep)
        if keep_for is not None:
            raise ValueError(
                f"task {self.name!r}: unique_for needs a unique_key (or @app.task(unique=True))"
            )
        return None

    def binds(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
        """True if the task's function can be called with ``args`` and ``kwargs``."""
        try:
            self.binding.check(self.name, args, kwargs)
        except TypeError:
            return False
        return True

    def takes(self, parameter: str) -> bool:
        """True if the task's function accepts a keyword argument named ``parameter`` (by
        name, or through ``**kwargs``): then ``app.submit(task, parameter=...)`` passes it
        to the task, as 0.1.8 did, rather than reading it as an option."""
        accepted = self._accepted
        if accepted is None:
            try:
                parameters = inspect.signature(self.fn).parameters.values()
            except (TypeError, ValueError):  # no signature to read: assume it takes all
                accepted = self._accepted = (frozenset(), True)
            else:
                accepted = self._accepted = (
                    frozenset(
                        p.name
                        for p in parameters
                        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                    ),
                    any(p.kind is p.VAR_KEYWORD for p in parameters),
                )
        names, any_keyword = accepted
        return any_keyword or parameter in names

    # Attribute names flowrra 0.1.8 set on decorated functions.
    @property
    def task_name(self) -> str:
        return self.name

    @property
    def cpu_bound(self) -> bool:
        return self.options.cpu_bound

    @property
    def max_retries(self) -> int:
        return self.options.retry.max_retries

    @property
    def retry_delay(self) -> float:
        return self.options.retry.delay

    def __repr__(self) -> str:
        kind = "cpu" if self.options.cpu_bound else "thread" if self.in_thread else "io"
        return f"<TaskHandle {self.name!r} ({kind})>"


def check_callable(fn: Callable[..., Any], name: str, cpu_bound: bool) -> None:
    """Reject at decoration time what could never run as asked."""
    if not callable(fn):
        raise TaskRegistrationError(f"@task() needs a function, got {fn!r}")
    if cpu_bound:
        if inspect.iscoroutinefunction(fn):
            raise TaskRegistrationError(
                f"task {name!r} is `async def` but cpu_bound=True: CPU tasks run in a process "
                "pool and must be plain `def` functions; drop cpu_bound for an I/O task"
            )
        qualname = getattr(fn, "__qualname__", "")
        if "<lambda>" in qualname or "<locals>" in qualname or not hasattr(fn, "__module__"):
            raise TaskRegistrationError(
                f"task {name!r} is a lambda or nested function: CPU tasks run in other "
                "processes, which import them by name, so define them at module level"
            )


class TaskRegistry:
    """Name → :class:`TaskHandle`. One per app; every worker of the app has the same."""

    def __init__(self) -> None:
        self._by_name: dict[str, TaskHandle[Any, Any]] = {}
        self._by_function: dict[Any, TaskHandle[Any, Any]] = {}
        #: A live read-only view of name → handle (a C-level lookup for the worker loop).
        self.by_name: Mapping[str, TaskHandle[Any, Any]] = MappingProxyType(self._by_name)

    def register(self, handle: TaskHandle[P, R]) -> TaskHandle[P, R]:
        """Add a task; a second, different function under the same name is an error."""
        check_callable(handle.fn, handle.name, handle.options.cpu_bound)
        existing = self._by_name.get(handle.name)
        if existing is not None and existing.fn is not handle.fn:
            raise TaskRegistrationError(
                f"a task named {handle.name!r} is already registered "
                f"({existing.fn.__module__}.{existing.fn.__qualname__}); pass name= to tell "
                "them apart"
            )
        self._by_name[handle.name] = handle
        self._by_function[handle.fn] = handle
        return handle

    def get(self, name: str) -> TaskHandle[Any, Any] | None:
        """The task registered under ``name``, or ``None``."""
        return self._by_name.get(name)

    def resolve(self, task: TaskHandle[Any, Any] | Callable[..., Any] | str) -> str:
        """The registered name of a handle, a decorated function, or a name."""
        if isinstance(task, TaskHandle):
            if self._by_name.get(task.name) is task:
                return task.name
            raise TaskNotRegisteredError(task.name)
        if isinstance(task, str):
            if task in self._by_name:
                return task
            raise TaskNotRegisteredError(task)
        handle = self._by_function.get(task)
        if handle is None:
            raise TaskNotRegisteredError(getattr(task, "__qualname__", repr(task)))
        return handle.name

    def handle(self, task: TaskHandle[Any, Any] | Callable[..., Any] | str) -> TaskHandle[Any, Any]:
        """:meth:`resolve`, giving the registered handle rather than its name."""
        if task.__class__ is TaskHandle and self._by_name.get(task.name) is task:
            return task
        return self._by_name[self.resolve(task)]

    def get_or_raise(self, name: str) -> TaskHandle[Any, Any]:
        """The task registered under ``name``; raises :class:`TaskNotRegisteredError`."""
        handle = self._by_name.get(name)
        if handle is None:
            raise TaskNotRegisteredError(name)
        return handle

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[TaskHandle[Any, Any]]:
        return iter(list(self._by_name.values()))

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def has_cpu_tasks(self) -> bool:
        """True if any registered task runs in the process pool."""
        return any(h.options.cpu_bound for h in self._by_name.values())
