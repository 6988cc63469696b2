"""``Flowrra``: the application object users hold. It wires configuration, the task
registry, the broker, the result backend, the executors and the worker, and delegates.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from flowrra.awaitables import DONE
from flowrra.backends.base import store_many
from flowrra.backends.memory import MemoryBackend
from flowrra.brokers.memory import MemoryBroker
from flowrra.cancellation import CANCEL_REASON, CancelOutcome, cancel_task
from flowrra.clock import SYSTEM_CLOCK, Clock
from flowrra.config import BackendConfig, BrokerConfig, Config
from flowrra.events import EventHub
from flowrra.exceptions import (
    MaybeQueuedError,
    NotRunningError,
    ResultTimeoutError,
    SyncCallInLoopError,
    UnknownTaskError,
)
from flowrra.executors.cpu import CPUExecutor
from flowrra.executors.io import IOExecutor
from flowrra.limits import RateLimit, TaskLimits
from flowrra.middleware import MiddlewareChain
from flowrra.plugins import BACKENDS, BROKERS, EXTENSIONS, find_plugin, scheme_of
from flowrra.portal import Portal, in_loop_thread
from flowrra.protocols import (
    AppScheduler,
    Broker,
    Executor,
    KnownTasks,
    NamedQueues,
    RecordedEnqueue,
    ResultBackend,
    UniqueJobs,
    WorkerDirectory,
)
from flowrra.queues import Routes, check_queue_name
from flowrra.registry import TaskHandle, TaskOptions, TaskRegistry, eta_from
from flowrra.retry import RetryPolicy
from flowrra.serialization import ensure_encodable
from flowrra.task import (
    DEFAULT_QUEUE,
    PendingRecords,
    TaskMessage,
    TaskResult,
    TaskStatus,
    check_headers,
    new_task_id,
    queued_message,
)
from flowrra.unique import Unique, check_unique_for, check_unique_key
from flowrra.worker import Worker
from flowrra.worker.eager import run_eagerly

__all__ = ["Flowrra"]

logger = logging.getLogger("flowrra.app")

_pending = TaskResult.pending  # bound once: a classmethod's lookup costs more than its call

P = ParamSpec("P")
R = TypeVar("R")

_MEMORY = "memory"
_JOIN_POLL = 0.005  # seconds between two looks at what is left, in join()


def _checked_headers(message: TaskMessage) -> dict[str, str]:
    """``message``'s headers once middleware has added to them: text to text (a value of
    another type is written as its ``str()``, and logged)."""
    headers = message.headers
    try:
        return check_headers(headers)
    except TypeError:
        logger.error(
            "middleware set headers that are not str to str on task %s[%s]: %r; "
            "they are sent as text",
            message.name,
            message.id,
            headers,
        )
        return {str(key): str(value) for key, value in headers.items()}


def _make_broker(config: Config, clock: Clock) -> Broker:
    broker_config = config.broker or BrokerConfig()
    if scheme_of(broker_config.url) == _MEMORY:
        return MemoryBroker(max_queue_size=config.executor.max_queue_size, clock=clock)
    factory = find_plugin(BROKERS, scheme_of(broker_config.url))
    broker: Broker = factory(broker_config)
    return broker


def _make_backend(config: Config) -> ResultBackend:
    backend_config = config.backend or BackendConfig()
    if scheme_of(backend_config.url) == _MEMORY:
        return MemoryBackend(max_entries=backend_config.max_entries, ttl=backend_config.ttl)
    factory = find_plugin(BACKENDS, scheme_of(backend_config.url))
    backend: ResultBackend = factory(backend_config)
    return backend


def _check_arguments(message: TaskMessage) -> None:
    """Raise SerializationError if the message's arguments cannot be encoded."""
    if message.args:
        ensure_encodable(message.args, f"the arguments of task {message.name!r}")
    if message.kwargs:
        ensure_encodable(message.kwargs, f"the keyword arguments of task {message.name!r}")


def _checked_timeout(timeout: Any) -> float | None:
    """A wait's ``timeout``: seconds >= 0 (``inf``: no limit, as ``None``)."""
    if timeout.__class__ is bool or not isinstance(timeout, int | float):
        raise TypeError(f"timeout is a number of seconds or None, got {timeout!r}")
    if not timeout >= 0:  # also NaN
        raise ValueError(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")
    return None if timeout == float("inf") else float(timeout)


def _abandon(call: Awaitable[Any]) -> None:
    """Give up on a store or enqueue the caller will not await: a coroutine that has not
    started is closed (it never runs); a reply already on its way is let go quietly."""
    if inspect.iscoroutine(call):
        call.close()
    elif isinstance(call, asyncio.Future):
        call.add_done_callback(_quiet)


def _quiet(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a batch's messages are built (for the whole
    process, a few milliseconds per 10,000 calls): the messages make no cycle, and
    100,000 new objects the collector tracks set off collections that scan every object
    of the process, nearly half the cost of building them (a ``submit_many`` of 100,000:
    1.4 µs a task against 0.75; bench/README.md, issue 16). Cycles made meanwhile (by a
    generator of calls, say) are collected after. Left as it was found: off if it was
    off."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Flowrra:
    """An app: register tasks with :meth:`task`, queue them with :meth:`submit`, run them
    with :meth:`start` (or ``async with app:``), read outcomes with :meth:`wait_for_result`.
    Sync code uses :meth:`submit_sync`, ``task.delay()``, :meth:`wait_for_result_sync` and
    :meth:`get_result_sync` (see :mod:`flowrra.portal`).

    ``broker``, ``backend``, ``io_executor`` and ``cpu_executor`` override what ``config``
    would build; each must satisfy its protocol in :mod:`flowrra.protocols`.

    ``clock`` (a :class:`flowrra.clock.Clock`, default the system's) decides when: the due
    time of ``delay=`` and of each retry, lease renewals, heartbeats, the scheduler's
    firing, and due times in the in-memory broker the app builds. A broker you build
    yourself takes its own ``clock=``. Tests pass a :class:`flowrra.clock.ManualClock`.

    ``eager=True`` (or ``with app.eager():``, for a part of a test) runs each submitted
    task at once, in the caller, and stores its result in the backend: no broker, no
    worker. See :meth:`eager`.

    ``middleware``: objects with the hooks of :class:`flowrra.middleware.Middleware`, run
    around each submit and each attempt (see :meth:`add_middleware`).

    ``routes``: task name patterns to queue names, first match wins (a
    :class:`flowrra.queues.Routes` or a dict: ``{"reports.*": "reports"}``), for tasks
    registered without ``queue=``. See :mod:`flowrra.queues`.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        broker: Broker | None = None,
        backend: ResultBackend | None = None,
        io_executor: Executor | None = None,
        cpu_executor: Executor | None = None,
        clock: Clock | None = None,
        eager: bool = False,
        middleware: Iterable[Any] = (),
        routes: Routes | Mapping[str, str] | None = None,
    ) -> None:
        self.config = config or Config()
        #: Task name patterns to queues (for tasks registered without ``queue=``).
        self.routes = routes if isinstance(routes, Routes) else Routes(routes or {})
        executor_config = self.config.executor
        self.clock: Clock = SYSTEM_CLOCK if clock is None else clock
        self.registry = TaskRegistry()
        self.events = EventHub()
        self.broker: Broker = (
            broker if broker is not None else _make_broker(self.config, self.clock)
        )
        self.backend: ResultBackend = backend if backend is not None else _make_backend(self.config)
        #: The app's middleware, hook by hook (after those installed process-wide).
        self.middleware = MiddlewareChain(middleware)
        self.worker = Worker(
            self.registry,
            self.broker,
            self.backend,
            io_executor or IOExecutor(executor_config.num_workers, executor_config.threads),
            cpu_executor or CPUExecutor(executor_config.cpu_workers),
            self.events,
            clock=self.clock,
            middleware=self.middleware,
        )
        self.scheduler: AppScheduler | None = None
        """The scheduler ``create_scheduler()`` built for this app (flowrra-scheduler's
        ``Scheduler``), if any: what the core and the UI use of it is
        :class:`~flowrra.protocols.AppScheduler`."""
        # The backend's KnownTasks capability, looked up once (wait_for_result asks it).
        self._expects: Callable[[str], bool] | None = (
            self.backend.expects if isinstance(self.backend, KnownTasks) else None
        )
        # A broker whose enqueue is a coroutine function (in memory) does nothing until it
        # is awaited, after the PENDING record is written: submit checks the arguments
        # first, so arguments that cannot be encoded leave no record behind, and a failed
        # record means nothing was queued. One whose enqueue is a plain function (Redis)
        # encodes and sends when called: it refuses before anything is sent, and if the
        # PENDING record then fails the task may be queued all the same.
        self._checks_arguments = inspect.iscoroutinefunction(type(self.broker).enqueue)
        # Capabilities looked up once: a runtime Protocol's isinstance costs ~30 µs, and
        # these are asked per submit (to a named queue, with a unique key).
        self._named_queues = isinstance(self.broker, NamedQueues)
        self._unique_jobs: UniqueJobs | None = (
            self.broker if isinstance(self.broker, UniqueJobs) else None
        )
        # A broker that stores the PENDING records with its enqueue, for this backend (one
        # server: one round trip per submit), looked up once; None: store and enqueue apart.
        self._recorded_enqueue = (
            self.broker.enqueue_with_records(self.backend)
            if isinstance(self.broker, RecordedEnqueue)
            else None
        )
        self._connected = False
        self._eager = eager
        self._stopping = False
        self._connect_lock: asyncio.Lock | None = None
        self._connect_loop: asyncio.AbstractEventLoop | None = None
        self._portal = Portal()
        self._startup: list[Callable[[], Awaitable[None]]] = []
        self._shutdown: list[Callable[[], Awaitable[None]]] = []

    @classmethod
    def from_urls(
        cls,
        broker: str | None = None,
        backend: str | None = None,
        *,
        max_connections: int | None = None,
    ) -> Flowrra:
        """An app on the given broker and backend URLs; ``None`` means in-memory.

        ``max_connections`` sizes the broker's and the backend's connection pools (default
        50 each, :class:`~flowrra.config.BrokerConfig`): a web app serving many monitoring
        dashboards, or many concurrent waits, may need more."""
        broker_config = None if broker is None else BrokerConfig(url=broker)  # "": refused
        backend_config = None if backend is None else BackendConfig(url=backend)
        if max_connections is not None:
            if broker_config is not None:
                broker_config = replace(broker_config, max_connections=max_connections)
            if backend_config is not None:
                backend_config = replace(backend_config, max_connections=max_connections)
        return cls(Config(broker=broker_config, backend=backend_config))

    # -- registration --------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, R], /) -> TaskHandle[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        cpu_bound: bool = False,
        max_retries: int | None = None,
        retry_delay: float | None = None,
        retry_max_delay: float | None = None,
        retry_jitter: bool = False,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        timeout: float | None = None,
        queue: str | None = None,
        unique: bool = False,
        unique_for: float | None = None,
        rate_limit: str | RateLimit | None = None,
        max_concurrency: int | None = None,
    ) -> Callable[[Callable[P, R]], TaskHandle[P, R]]: ...

    def task(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        cpu_bound: bool = False,
        max_retries: int | None = None,
        retry_delay: float | None = None,
        retry_max_delay: float | None = None,
        retry_jitter: bool = False,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        timeout: float | None = None,
        queue: str | None = None,
        unique: bool = False,
        unique_for: float | None = None,
        rate_limit: str | RateLimit | None = None,
        max_concurrency: int | None = None,
    ) -> TaskHandle[P, R] | Callable[[Callable[P, R]], TaskHandle[P, R]]:
        """Register a task: ``async def`` for I/O work, plain ``def`` with
        ``cpu_bound=True`` for CPU work (run in a process pool).

        ``max_retries`` / ``retry_delay`` default to the app's ``ExecutorConfig``; the delay
        before retry *n* is ``retry_delay * 2**(n-1)``, capped at ``retry_max_delay``
        (default 300 s), randomised if ``retry_jitter``. Only exceptions in ``retry_on`` are
        retried. ``timeout`` bounds each attempt's run time in seconds. ``queue``: the
        named queue it goes to (default: the first of the app's ``routes`` that matches
        its name, else ``"default"``; see :mod:`flowrra.queues`). ``unique``: a submit
        while a task of the same name and arguments is queued, delayed, running or
        retrying (or ``unique_for`` seconds after one succeeded) queues nothing and gives
        that task's id (see :mod:`flowrra.unique`). ``rate_limit`` (``"100/m"``,
        ``"10/s"``, ``"5/h"`` or a :class:`~flowrra.RateLimit`) and ``max_concurrency``
        bound how often it starts and how many run at once, across every worker of the
        broker (see :mod:`flowrra.limits`).
        """
        defaults = self.config.executor
        if unique.__class__ is not bool:
            raise TypeError(f"unique must be True or False, got {unique!r}")
        if unique_for is not None and not unique:
            raise ValueError(
                "unique_for needs unique=True (or give unique_key= and unique_for= at submit)"
            )
        keep_for = check_unique_for(unique_for)
        limits = TaskLimits.of(rate_limit, max_concurrency)
        if queue is not None:
            check_queue_name(queue)
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        delay = defaults.retry_delay if retry_delay is None else retry_delay
        options = TaskOptions(
            cpu_bound=cpu_bound,
            retry=RetryPolicy(
                max_retries=defaults.max_retries if max_retries is None else max_retries,
                delay=delay,
                max_delay=max(
                    defaults.retry_max_delay if retry_max_delay is None else retry_max_delay,
                    delay,
                ),
                jitter=retry_jitter,
                retry_on=retry_on,
            ),
            timeout=timeout,
            queue=queue,
            unique=unique,
            unique_for=keep_for,
            limits=limits,
        )

        def register(func: Callable[P, R]) -> TaskHandle[P, R]:
            task_name = name or getattr(func, "__name__", None) or repr(func)
            handle = TaskHandle(func, task_name, options, self)
            if queue is None:
                handle.queue = self.routes.queue_for(task_name) or DEFAULT_QUEUE
            return self.registry.register(handle)

        return register if fn is None else register(fn)

    def add_middleware(self, middleware: Any) -> Any:
        """Add ``middleware`` (an object with any of the hooks of
        :class:`flowrra.middleware.Middleware`) after those already added; returns it.
        Its ``before_*`` hooks run after theirs, its ``after_*`` hooks before theirs."""
        self.middleware.add(middleware)
        return middleware

    def on_startup(self, fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """Register a coroutine function to run after the app starts (e.g. to submit
        the first tasks of a ``flowrra worker`` process)."""
        self._startup.append(fn)
        return fn

    def on_shutdown(self, fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """Register a coroutine function to run when the app begins to stop."""
        self._shutdown.append(fn)
        return fn

    # -- submitting ----------------------------------------------------------------------

    async def submit(
        self,
        task_func: TaskHandle[Any, Any] | Callable[..., Any] | str,
        *args: Any,
        priority: int = 0,
        delay: float | None = None,
        eta: datetime | None = None,
        **kwargs: Any,
    ) -> str:
        """Queue a registered task (its handle, function or name); returns the task id.

        ``priority``: lower runs first (default 0). ``delay`` (seconds) or ``eta`` (aware
        datetime): not before then. ``headers`` (a dict of str to str) travel with the
        message, and ``queue`` names the queue it goes to (default: the task's), unless
        the task takes a ``headers`` or ``queue`` argument itself (as in 0.1.8, it then
        gets it); so do ``unique_key`` and ``unique_for`` (see :mod:`flowrra.unique`). A
        task whose own parameters are named ``priority``, ``delay`` or ``eta`` is
        submitted with ``handle.with_options(...).submit(...)``, which also takes
        ``headers=``, ``queue=``, ``unique_key=`` and ``unique_for=`` for any task.
        Before :meth:`start`, the task waits in the queue.
        """
        handle = self.registry.handle(task_func)
        due = None if delay is None and eta is None else eta_from(delay, eta, self.clock)
        headers = None
        queue = handle.queue
        if kwargs:
            if "headers" in kwargs and not handle.takes("headers"):
                headers = check_headers(kwargs.pop("headers"))
            if "queue" in kwargs and not handle.takes("queue"):
                queue = check_queue_name(kwargs.pop("queue"))
            if ("unique_key" in kwargs and not handle.takes("unique_key")) or (
                "unique_for" in kwargs and not handle.takes("unique_for")
            ):
                return await self._submit_unique(
                    handle, args, kwargs, priority, due, headers, queue
                )
            handle.binding.check(handle.name, args, kwargs)
            self._check_arguments(handle.name, args, kwargs)
        elif args:
            if len(args) not in handle.arities:
                handle.binding.check(handle.name, args, kwargs)
            self._check_arguments(handle.name, args, kwargs)
        elif handle.needs_arguments:
            handle.binding.check(handle.name, args, kwargs)
        if handle.unique:
            return await self._submit_unique(handle, args, kwargs, priority, due, headers, queue)
        return await self._enqueue(handle.name, args, kwargs, priority, due, headers, queue)

    # -- unique jobs (flowrra.unique) -----------------------------------------------------

    async def _submit_unique(
        self,
        handle: TaskHandle[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        priority: int,
        eta: float | None,
        headers: dict[str, str] | None,
        queue: str,
    ) -> str:
        """:meth:`submit` of a unique task, or with ``unique_key=``/``unique_for=``
        options (taken out of ``kwargs`` here)."""
        key = keep_for = None
        if "unique_key" in kwargs and not handle.takes("unique_key"):
            key = check_unique_key(kwargs.pop("unique_key"))
        if "unique_for" in kwargs and not handle.takes("unique_for"):
            keep_for = check_unique_for(kwargs.pop("unique_for"))
            if key is None and not handle.unique:
                raise ValueError(
                    f"task {handle.name!r}: unique_for needs a unique_key "
                    "(or @app.task(unique=True))"
                )
        handle.binding.check(handle.name, args, kwargs)
        self._check_arguments(handle.name, args, kwargs)
        unique = handle.unique_of(args, kwargs, key, keep_for)
        assert unique is not None
        return await self._enqueue_unique(
            handle.name, args, kwargs, priority, eta, headers, queue, unique
        )

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
    ) -> str:
        """:meth:`_enqueue` with a unique key: the broker queues the message unless the
        key is held (:class:`~flowrra.protocols.UniqueJobs`), and gives the id of the task
        that holds it; the PENDING record is stored only once the message is queued, by
        the submit that queued it (a duplicate writes nothing)."""
        if not self._connected:
            await self._connect()
        if priority.__class__ is not int:
            raise TypeError(f"priority must be an int, got {priority!r}")
        if not self._eager and self._unique_jobs is None:
            raise ValueError(
                f"unique_key {unique.key!r}: {type(self.broker).__name__} cannot keep unique "
                "keys (it is not a flowrra.protocols.UniqueJobs)"
            )
        message = TaskMessage(
            new_task_id(), name, args, kwargs, priority=priority, eta=eta, submitted_at=time.time()
        )
        if headers:
            message.headers = headers
        if queue != DEFAULT_QUEUE:
            self._check_named_queues(queue)
            message.queue = queue
        unique.mark(message)
        middleware = self.middleware
        if not middleware.submits:
            return await self._queue_unique(message, unique)
        message.headers = dict(message.headers)  # theirs to add to
        if (hooked := middleware.before_submit(message)) is not DONE:
            await hooked
        message.headers = _checked_headers(message)
        unique.mark(message)  # whatever the hooks did to the headers
        try:
            task_id = await self._queue_unique(message, unique)
        except BaseException as exc:
            await middleware.after_submit(message, exc)
            raise
        if (hooked := middleware.after_submit(message, None)) is not DONE:
            await hooked
        return task_id

    async def _queue_unique(self, message: TaskMessage, unique: Unique) -> str:
        pending = _pending(message)
        if self._eager:  # no broker: nothing to deduplicate against (see flowrra.unique)
            return await self._submit_eagerly(message, pending)
        broker = self._unique_jobs
        assert broker is not None
        holder = await broker.enqueue_unique(message, unique.key)
        if holder != message.id:
            logger.debug(
                "task %s: unique key %r is held by task %s; nothing queued",
                message.name,
                unique.key,
                holder,
            )
            return holder
        try:
            await self.backend.store(message.id, pending)
        except Exception as exc:
            raise MaybeQueuedError([message.id], message.name, True, exc) from exc
        if self.events.active:
            self.worker.publish(pending)
        return message.id

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
    ) -> str:
        """``task.delay()`` of a unique submit: :meth:`_enqueue_unique` for sync code."""
        self._check_queueable("task.delay()")
        return self._call_sync(
            "task.delay()",
            "await task.submit(...)",
            lambda: self._enqueue_unique(name, args, kwargs, priority, eta, headers, queue, unique),
        )

    async def _enqueue(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        priority: int,
        eta: float | None,
        headers: dict[str, str] | None = None,
        queue: str = DEFAULT_QUEUE,
    ) -> str:
        if not self._connected:
            await self._connect()
        if priority.__class__ is not int:
            raise TypeError(f"priority must be an int, got {priority!r}")
        task_id = new_task_id()
        now = time.time()
        message = TaskMessage(
            task_id, name, args, kwargs, priority=priority, eta=eta, submitted_at=now
        )
        if headers:
            message.headers = headers
        if queue != DEFAULT_QUEUE:
            self._check_named_queues(queue)
            message.queue = queue
        if self.middleware.submits:
            return await self._enqueue_observed(message)
        pending = _pending(message)
        if self._eager:
            return await self._submit_eagerly(message, pending)
        if self._recorded_enqueue is not None:
            await self._queue_recorded(self._recorded_enqueue, (message,), (pending,))
            return task_id
        stored = self.backend.store(task_id, pending)
        await self._record_and_queue(stored, self.broker.enqueue, message, (pending,))
        return task_id

    def _check_named_queues(self, queue: str) -> None:
        """Refuse a named queue on a broker that has only the default one."""
        if not self._named_queues:
            raise ValueError(
                f"queue {queue!r}: {type(self.broker).__name__} has only the "
                f"{DEFAULT_QUEUE!r} queue (it is not a flowrra.protocols.NamedQueues)"
            )

    def _check_arguments(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise SerializationError, before anything is written, for arguments the broker
        would refuse only once the PENDING record is stored (one whose enqueue is a
        coroutine function: the in-memory broker). With middleware, the check is made
        after ``before_submit`` instead, so ``after_submit`` sees the error."""
        if self._checks_arguments and not self.middleware.submits:
            if args:
                ensure_encodable(args, f"the arguments of task {name!r}")
            if kwargs:
                ensure_encodable(kwargs, f"the keyword arguments of task {name!r}")

    async def _enqueue_observed(self, message: TaskMessage) -> str:
        """:meth:`_enqueue`'s end with middleware: ``before_submit`` (which may add
        headers), the submit, then ``after_submit`` with what it raised, if anything."""
        middleware = self.middleware
        message.headers = dict(message.headers)  # theirs to add to
        if (hooked := middleware.before_submit(message)) is not DONE:
            await hooked
        message.headers = _checked_headers(message)
        pending = _pending(message)
        try:
            if self._eager:
                await self._submit_eagerly(message, pending)
            else:
                if self._checks_arguments:
                    _check_arguments(message)
                if self._recorded_enqueue is not None:
                    await self._queue_recorded(self._recorded_enqueue, (message,), (pending,))
                else:
                    stored = self.backend.store(message.id, pending)
                    await self._record_and_queue(stored, self.broker.enqueue, message, (pending,))
        except BaseException as exc:
            await middleware.after_submit(message, exc)
            raise
        if (hooked := middleware.after_submit(message, None)) is not DONE:
            await hooked
        return message.id

    async def submit_many(
        self,
        task_func: TaskHandle[Any, Any] | Callable[..., Any] | str,
        calls: Iterable[Sequence[Any] | Mapping[str, Any]],
        *,
        priority: int = 0,
        delay: float | None = None,
        eta: datetime | None = None,
        queue: str | None = None,
    ) -> list[str]:
        """Queue one task many times, in one round trip to the backend and one to the
        broker where they can; returns the task ids in order.

        Each item of ``calls`` is the positional arguments of one call (a tuple or list)
        or its keyword arguments (a dict). ``priority``, ``delay``, ``eta`` and ``queue``
        (default: the task's) apply to all. The calls of a unique task
        (``@app.task(unique=True)``) are submitted one by one, each deduplicated: a call
        whose key is held gives the holder's id.
        """
        handle = self.registry.handle(task_func)
        name = handle.name
        due = None if delay is None and eta is None else eta_from(delay, eta, self.clock)
        if priority.__class__ is not int:
            raise TypeError(f"priority must be an int, got {priority!r}")
        queue = handle.queue if queue is None else check_queue_name(queue)
        if queue != DEFAULT_QUEUE:
            self._check_named_queues(queue)
        if not self._connected:
            await self._connect()
        now = time.time()
        messages: list[TaskMessage] = []
        append = messages.append
        arities = handle.arities  # positional counts that bind: no check needed
        check = handle.binding.check
        with _collector_paused():  # see _collector_paused
            for call in calls:
                # The usual call first (a tuple), by class: isinstance against an ABC costs
                # a task as much as building its message.
                if call.__class__ is tuple:
                    args: tuple[Any, ...] = call
                    kwargs: dict[str, Any] = {}
                    if len(args) not in arities:
                        check(name, args, kwargs)
                else:
                    if isinstance(call, Mapping):
                        args, kwargs = (), dict(call)
                    elif isinstance(call, tuple | list):
                        args, kwargs = tuple(call), {}
                    else:
                        raise TypeError(
                            "each call is a tuple of positional arguments or a dict of keyword "
                            f"arguments, got {call!r}"
                        )
                    check(name, args, kwargs)
                append(queued_message(new_task_id(), name, args, kwargs, priority, due, now, queue))
        if not messages:
            return []
        if handle.unique:
            return [
                await self._enqueue_unique(
                    name,
                    m.args,
                    m.kwargs,
                    priority,
                    due,
                    None,
                    queue,
                    handle.derived_unique(m.args, m.kwargs),
                )
                for m in messages
            ]
        await self._submit_messages(messages)
        return [message.id for message in messages]

    async def _submit_messages(
        self, messages: Sequence[TaskMessage], waiting: Sequence[TaskMessage] = ()
    ) -> None:
        """Record ``messages`` PENDING and queue them, in one round trip to the backend and
        one to the broker where they can (``submit_many``, a group, a chain's first step).
        ``waiting``: messages recorded PENDING with them but not queued (a chain's later
        steps, which the worker queues in turn). The messages are built and their
        arguments bound by the caller."""
        if not self._connected:
            await self._connect()
        # Fail before anything is stored, as submit does (and before the submit hooks, so
        # no middleware opens what no after_submit would close).
        for message in (*messages, *waiting):
            if message.queue != DEFAULT_QUEUE:
                self._check_named_queues(message.queue)
        middleware = self.middleware
        recorded = None if self._eager else self._recorded_enqueue
        if recorded is None or middleware.submits:
            # A recorded enqueue encodes every message before it sends one, and refuses
            # arguments JSON cannot hold with the same SerializationError: checking here
            # too would encode each task's arguments once more.
            for message in messages:
                _check_arguments(message)
        if middleware.submits:
            for message in messages:
                message.headers = dict(message.headers)
                await middleware.before_submit(message)
                message.headers = _checked_headers(message)
        try:
            if recorded is not None:
                # Built only if read: the broker may encode them from the messages.
                records = PendingRecords(messages, waiting)
                await self._queue_recorded(recorded, messages, records)
            elif self._eager:
                later = [_pending(message) for message in waiting]
                await store_many(self.backend, later)
                for message in messages:
                    await self._run_eagerly(message, _pending(message))
            else:
                pending = [_pending(message) for message in (*messages, *waiting)]
                stored = store_many(self.backend, pending)
                await self._record_and_queue(stored, self.broker.enqueue_many, messages, pending)
        except BaseException as exc:
            if middleware.submits:
                for message in messages:
                    await middleware.after_submit(message, exc)
            raise
        if middleware.submits:
            for message in messages:
                await middleware.after_submit(message, None)

    async def _record_and_queue(
        self,
        stored: Awaitable[None],
        enqueue: Callable[[Any], Awaitable[None]],
        queued: Any,
        pending: Sequence[TaskResult],
    ) -> None:
        """The rest of a submit once the PENDING records' store is called (``stored``):
        ``enqueue(queued)`` is called before either is awaited, so a networked backend
        and broker send their writes at once and share a round trip (an async def
        backend records PENDING before the broker is even called). A refused enqueue
        marks the records FAILED."""
        try:
            enqueued = enqueue(queued)
        except BaseException:
            _abandon(stored)
            raise
        try:
            await stored
        except Exception as exc:
            if self._checks_arguments:  # enqueue is a coroutine: nothing was sent yet
                _abandon(enqueued)
                raise
            # The broker was sent the message when enqueue() was called: say so, with
            # the ids, rather than let the caller think nothing was queued.
            try:
                await enqueued
            except Exception:
                accepted: bool | None = None
            else:
                accepted = True
            raise MaybeQueuedError(
                [record.task_id for record in pending], pending[0].task_name or "?", accepted, exc
            ) from exc
        except BaseException:
            _abandon(enqueued)
            raise
        if self.events.active:
            for record in pending:
                self.worker.publish(record)
        try:
            await enqueued
        except BaseException as exc:
            await self._not_queued(pending, exc)
            raise

    async def _queue_recorded(
        self,
        send: Callable[[Sequence[TaskMessage], Sequence[TaskResult]], Awaitable[None]],
        messages: Sequence[TaskMessage],
        pending: Sequence[TaskResult],
    ) -> None:
        """:meth:`_record_and_queue` for a broker that stores the records with the
        messages (:class:`~flowrra.protocols.RecordedEnqueue`): one step, so a failure is
        the broker's error, never ``MaybeQueuedError`` (no record can fail while its
        message went out), and the records are not marked FAILED (a reply lost after the
        step ran leaves them PENDING with their messages queued)."""
        await send(messages, pending)
        if self.events.active:
            for record in pending:
                self.worker.publish(record)

    async def _submit_eagerly(self, message: TaskMessage, pending: TaskResult) -> str:
        """:meth:`_enqueue` in eager mode: run the task here and now."""
        # checked as a broker would, so a test fails where production would
        _check_arguments(message)
        await self._run_eagerly(message, pending)
        return message.id

    async def _run_eagerly(self, message: TaskMessage, pending: TaskResult) -> None:
        await self.worker.record(pending)
        await run_eagerly(
            self.registry.by_name.get(message.name),
            message,
            self.backend,
            self.events,
            self.clock,
            self.middleware,
            self.registry.by_name,
        )

    async def _not_queued(self, pending: Sequence[TaskResult], exc: BaseException) -> None:
        """The broker refused: mark these records FAILED (best effort; the caller raises)."""
        finished = time.time()
        for record in pending:
            record.status = TaskStatus.FAILED
            record.error = f"NotQueued: {type(exc).__name__}: {exc}"
            record.finished_ts = finished
        try:
            await store_many(self.backend, pending)
        except Exception:
            logger.warning("could not record %d tasks as not queued", len(pending), exc_info=True)
            return
        if self.events.active:
            for record in pending:
                self.worker.publish(record)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        lock = self._connect_lock
        if lock is None or self._connect_loop is not loop:  # a lock is one loop's
            lock = self._connect_lock = asyncio.Lock()
            self._connect_loop = loop
        async with lock:
            if not self._connected:
                await self.broker.connect()
                await self.backend.connect()
                self._connected = True

    # -- results -------------------------------------------------------------------------

    async def get_result(self, task_id: str) -> TaskResult | None:
        """The task's latest record (PENDING, RUNNING, RETRYING, SUCCESS, FAILED or
        CANCELLED), or
        ``None`` for an id the backend does not know. Never waits."""
        if not self._connected:
            await self._connect()
        return await self.backend.get(task_id)

    async def wait_for_result(self, task_id: str, timeout: float | None = None) -> TaskResult:
        """Wait until the task completes (SUCCESS, FAILED or CANCELLED) and return its
        result.

        Raises :class:`UnknownTaskError` for an id the backend does not know,
        :class:`ResultTimeoutError` (a ``TimeoutError``) when ``timeout`` seconds pass (the
        task keeps running), and :class:`NotRunningError` when the app runs embedded and was
        never started, so the wait could never end.
        """
        if timeout is not None:
            timeout = _checked_timeout(timeout)
        if not self._connected:
            await self._connect()
        expects = self._expects
        if expects is None or not expects(task_id):
            current = await self.backend.get(task_id)
            if current is None:
                raise UnknownTaskError(task_id)
            if current.is_complete:
                return current
            if not self.broker.durable and not self.worker.is_running:
                raise NotRunningError()
        try:
            return await self.backend.wait_for(task_id, timeout)
        except TimeoutError as exc:
            if isinstance(exc, ResultTimeoutError):
                raise
            raise ResultTimeoutError(task_id, timeout or 0.0) from None

    async def cancel(self, task_id: str, reason: str = CANCEL_REASON) -> CancelOutcome:
        """Cancel the task ``task_id``: a waiting one never runs, a running one is
        interrupted (an ``async def`` task at its next ``await``; a thread or CPU task's
        result is discarded), and its record becomes CANCELLED with the error
        ``TaskCancelled: <reason>``. Returns what happened (:class:`CancelOutcome`):
        ``REMOVED``, ``SIGNALLED``, ``ALREADY_COMPLETE`` (a no-op) or ``UNKNOWN`` (a no-op).
        Raises ``TypeError`` if the broker cannot cancel (see
        :class:`~flowrra.protocols.Cancellation`). See :mod:`flowrra.cancellation`."""
        if not self._connected:
            await self._connect()
        outcome, record = await cancel_task(self.broker, self.backend, task_id, reason)
        if outcome.done and record is not None and self.events.active:
            self.worker.publish(record)
        return outcome

    # -- sync callers --------------------------------------------------------------------

    def cancel_sync(self, task_id: str, reason: str = CANCEL_REASON) -> CancelOutcome:
        """:meth:`cancel` for sync code."""
        return self._call_sync(
            "app.cancel_sync()", "await app.cancel(...)", lambda: self.cancel(task_id, reason)
        )

    def submit_sync(
        self,
        task_func: TaskHandle[Any, Any] | Callable[..., Any] | str,
        *args: Any,
        priority: int = 0,
        delay: float | None = None,
        eta: datetime | None = None,
        **kwargs: Any,
    ) -> str:
        """:meth:`submit` for sync code (a Django view, a script, a thread): blocks until
        the task is queued; returns its id. Safe from any number of threads at once; not
        from a thread that runs an event loop (:class:`SyncCallInLoopError`: ``await
        app.submit(...)`` there). On an in-memory broker the app must be running in this
        process (else :class:`NotRunningError`: nothing would ever run the task)."""
        self._check_queueable("app.submit_sync()")
        return self._call_sync(
            "app.submit_sync()",
            "await app.submit(...)",
            lambda: self.submit(
                task_func, *args, priority=priority, delay=delay, eta=eta, **kwargs
            ),
        )

    def wait_for_result_sync(self, task_id: str, timeout: float | None = None) -> TaskResult:
        """:meth:`wait_for_result` for sync code: blocks until the task completes, or
        raises as it does (``ResultTimeoutError`` after ``timeout`` seconds,
        ``NotRunningError`` when an embedded app is not running)."""
        return self._call_sync(
            "app.wait_for_result_sync()",
            "await app.wait_for_result(...)",
            lambda: self.wait_for_result(task_id, timeout),
        )

    def get_result_sync(self, task_id: str) -> TaskResult | None:
        """:meth:`get_result` for sync code."""
        return self._call_sync(
            "app.get_result_sync()", "await app.get_result(...)", lambda: self.get_result(task_id)
        )

    def _enqueue_sync(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        priority: int,
        eta: float | None,
        headers: dict[str, str] | None = None,
        queue: str = DEFAULT_QUEUE,
    ) -> str:
        """``task.delay()``: :meth:`_enqueue` for sync code."""
        self._check_queueable("task.delay()")
        return self._call_sync(
            "task.delay()",
            "await task.submit(...)",
            lambda: self._enqueue(name, args, kwargs, priority, eta, headers, queue),
        )

    def _check_queueable(self, call: str) -> None:
        """A broker in this process (in memory) is only consumed by this app's worker: a
        task queued from sync code while it runs nowhere could never run (and a full
        queue would block the caller for ever)."""
        if (
            not self.broker.durable
            and not self.worker.is_running
            and not self._eager
            and not in_loop_thread()
        ):
            raise NotRunningError(
                f"{call} on an app whose broker is in this process (in memory) while the app "
                "is not running: nothing would run the task. Start the app in this process "
                "(`async with app:`, e.g. in the web server's lifespan), or use a broker that "
                "worker processes serve (Redis)"
            )

    def _call_sync(self, call: str, instead: str, make: Callable[[], Coroutine[Any, Any, R]]) -> R:
        """Run ``make()`` on the loop the app runs in, or else on the app's own loop in a
        background thread, and wait for it here."""
        if in_loop_thread():
            raise SyncCallInLoopError(call, instead)
        return self._portal.call(make)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers. Idempotent."""
        if self.worker.is_running:
            return
        await self._connect()
        await self.worker.start()
        self._portal.home = asyncio.get_running_loop()  # sync calls run here from now on
        logger.info(
            "flowrra started: %d I/O slots, %d CPU processes, %d tasks registered",
            self.worker.io_executor.concurrency,
            self.worker.cpu_executor.concurrency,
            len(self.registry),
        )
        if self.middleware.lifecycle:
            await self.middleware.on_worker_start(self)
        for hook in self._startup:
            await hook()

    async def stop(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Stop the workers. With ``wait``, running (and, embedded, queued) tasks get up to
        ``timeout`` seconds to finish; see the worker docs for what happens to the rest."""
        if not self.worker.is_running:
            return
        if not self._stopping:
            self._stopping = True
            for hook in self._shutdown:
                await hook()
            if self.middleware.lifecycle:
                await self.middleware.on_worker_stop(self)
        await self.worker.stop(wait=wait, timeout=timeout)
        self._portal.home = None
        if self._connected:
            await self.broker.close()
            await self.backend.close()
            self._connected = False
            self._connect_lock = None
        self._stopping = False

    async def close(self) -> None:
        """Release the broker and backend connections (this event loop's) and stop the
        sync API's thread, if a sync call started one. For a process that only submits (a
        web app in front of ``flowrra worker`` processes); a started app is stopped."""
        if self.worker.is_running:
            await self.stop()
        elif self._connected:
            self._connected = False
            self._connect_lock = None
            await self.broker.close()
            await self.backend.close()
        await self._portal.aclose()

    @contextlib.asynccontextmanager
    async def producer(self) -> AsyncIterator[Flowrra]:
        """``async with app.producer():`` connects without starting workers: submit and
        wait for results that other processes' workers produce; closes at the end."""
        await self._connect()
        try:
            yield self
        finally:
            await self.close()

    @property
    def is_running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self.worker.is_running

    def pending_count(self) -> int:
        """Tasks queued and not yet taken by a worker (as known to this process)."""
        return self.broker.pending_count()

    # -- tests ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def eager(self, enabled: bool = True) -> Iterator[Flowrra]:
        """``with app.eager():`` runs each task submitted in the block at once, in the
        caller (``submit``, ``submit_many``, ``task.submit``, and the sync ``delay`` and
        ``submit_sync``), and gives the app back; at the end the app is as it was.
        ``Flowrra(eager=True)`` is eager from the start; ``app.eager(False)`` turns it off
        for a block.

        Each attempt runs through the same code as on a worker (RUNNING, the task's
        ``timeout`` and retry policy) and its records are stored in the app's backend, so
        ``wait_for_result`` returns at once. No broker is involved and no worker starts.
        A task that raises does not raise from ``submit``: its result is FAILED, as in
        production (assert on ``result.status`` and ``result.error``). Retries run at
        once: their delay is not waited, and neither is a submit's ``delay`` or ``eta``.
        A plain ``def`` task (threaded or ``cpu_bound``) runs in the caller too.
        """
        previous, self._eager = self._eager, enabled
        try:
            yield self
        finally:
            self._eager = previous

    @property
    def is_eager(self) -> bool:
        """True while submitted tasks run at once (see :meth:`eager`)."""
        return self._eager

    async def join(self, timeout: float | None = 30.0) -> None:
        """Wait until every task submitted so far is done: nothing queued or delayed in
        the broker, nothing running or being settled by this app's worker (a retry waits
        for its due time, and for its next attempt). For tests: Dramatiq's ``join``.

        On a broker that gives live depths (a :class:`~flowrra.protocols.WorkerDirectory`,
        as Redis is), what other processes' workers hold counts too. Raises
        ``TimeoutError`` after ``timeout`` seconds, and :class:`NotRunningError` when tasks
        wait on an in-memory broker that no worker consumes (the app is not started).
        Polls every 5 ms.
        """
        if not self._connected:
            await self._connect()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = await self._outstanding()
            if not left:
                return
            if not self.broker.durable and not self.worker.is_running:
                raise NotRunningError(
                    f"app.join(): {left} tasks wait on an in-memory broker and the app is "
                    "not running, so nothing would ever run them: start it (`async with "
                    "app:`, or the flowrra_worker fixture)"
                )
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"app.join(): {left} tasks still queued, delayed or running after {timeout}s"
                )
            await asyncio.sleep(_JOIN_POLL)

    async def _outstanding(self) -> int:
        """Tasks queued, delayed, running or being settled (see :meth:`join`)."""
        held = len(self.worker.leases.held)
        broker = self.broker
        if broker.durable and isinstance(broker, WorkerDirectory):
            live = await broker.queue_depths()
            return held + sum(int(live.get(k, 0)) for k in ("queued", "delayed", "leased"))
        return held + self.broker.pending_count()

    async def __aenter__(self) -> Flowrra:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- extensions ----------------------------------------------------------------------

    def create_scheduler(self, *args: Any, **kwargs: Any) -> Any:
        """Build the scheduler of ``flowrra-scheduler`` bound to this app (and keep it as
        ``app.scheduler``): ``app.create_scheduler(store=None, sync_interval=5.0)``, where
        ``store`` is a database URL or a schedule store. Start it with ``await
        scheduler.start()``; ``app.start()`` does not, so worker processes that import the
        app do not become schedulers."""
        return find_plugin(EXTENSIONS, "scheduler")(self, *args, **kwargs)
