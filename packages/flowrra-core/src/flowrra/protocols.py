"""The surface a plugin implements: :class:`Broker`, :class:`ResultBackend`, :class:`Executor`.

Plugins register factories under the entry-point groups ``flowrra.brokers`` and
``flowrra.result_backends`` (name = URL scheme); a factory takes the
:class:`~flowrra.config.BrokerConfig` / :class:`~flowrra.config.BackendConfig` and returns
an object satisfying the protocol. Instances can also be passed straight to
``Flowrra(broker=..., backend=...)``. ``flowrra.testing`` holds the contract suites every
implementation's tests should subclass.

Most plugins inherit :class:`~flowrra.brokers.base.BaseBroker` /
:class:`~flowrra.backends.base.BaseResultBackend` (both exported from ``flowrra``), which
give every member that has a sensible default and leave a few abstract methods.

Optional capabilities are declared, never guessed: ``ResultBackend.sends_when_called``
(a class attribute), and the optional protocols :class:`BatchStore`, :class:`KnownTasks`,
:class:`EventSource`, :class:`ResultPages`, :class:`ResultCounts` (result backends),
:class:`WorkerDirectory`, :class:`Redeliveries`, :class:`DeadLetters`, :class:`NamedQueues`,
:class:`UniqueJobs`, :class:`Cancellation` and :class:`LimitedTasks` (brokers), which the
engine checks with ``isinstance``. The contract suites test that an implementation
declaring a capability provides it.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from flowrra.task import TaskMessage, TaskResult, TaskStatus

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager
    from datetime import datetime

    from flowrra.events import TaskEvent
    from flowrra.limits import TaskLimits
    from flowrra.queues import QueueSelection
    from flowrra.registry import TaskHandle
    from flowrra.schedules import ScheduledTask

__all__ = [
    "AppScheduler",
    "BatchStore",
    "Broker",
    "Cancellation",
    "DeadLetters",
    "EventSource",
    "Executor",
    "KnownTasks",
    "LimitedTasks",
    "NamedQueues",
    "RecordedEnqueue",
    "Redeliveries",
    "ResultBackend",
    "ResultCounts",
    "ResultPages",
    "ScheduleStore",
    "UniqueJobs",
    "WorkerDirectory",
]


@runtime_checkable
class Broker(Protocol):
    """Carries task messages from producers to workers.

    Obligations:

    - **Order**: ``reserve`` returns due messages lowest ``priority`` first, FIFO among
      equal priorities. A message whose ``eta`` is in the future is not returned before it.
    - **Delivery**: a reserved message is either ``ack``-ed (settled), ``requeue``-d with a
      due time (retry), ``release``-d (handed back for immediate redelivery) or
      ``dead_letter``-ed. A durable broker redelivers what a dead worker held once its lease
      expires; ``extend`` renews leases of messages still running.
    - **Cancellation**: ``reserve`` may be cancelled while it waits; no message is lost.
    - ``durable`` is True when queued messages outlive this process. A worker stopping on a
      non-durable broker drains the queue first; on a durable one it stops reserving and
      releases what it holds.
    - ``lease_seconds`` is the lease length, or ``None`` if messages have no lease.

    :class:`~flowrra.brokers.base.BaseBroker` gives the members with a sensible default;
    a broker shared by processes may also be a :class:`WorkerDirectory`.
    """

    durable: bool
    lease_seconds: float | None

    async def connect(self) -> None:
        """Open connections; called once before first use by ``app.start()``/``submit``."""

    async def close(self) -> None:
        """Release connections."""

    def enqueue(self, message: TaskMessage) -> Awaitable[None]:
        """Store one message. Raises ``SerializationError`` if its arguments cannot be
        encoded and ``BrokerError`` if it could not be stored; never reports success for a
        message that was not stored.

        An ``async def`` does. A networked broker may instead send the message when called
        and return an awaitable of the reply: ``submit`` calls ``backend.store`` (PENDING)
        and ``broker.enqueue`` before awaiting either, so both writes share a round trip."""

    def enqueue_many(self, messages: Sequence[TaskMessage]) -> Awaitable[None]:
        """Store several messages, in one round trip where the broker can; all or none.
        Like ``enqueue``, it may send them when called (``submit_many`` overlaps them
        with the PENDING records)."""

    async def reserve(self, max_messages: int, timeout: float) -> list[TaskMessage]:
        """Take up to ``max_messages`` due messages, waiting up to ``timeout`` seconds for
        the first; returns ``[]`` on timeout."""

    def ack(self, message: TaskMessage) -> Awaitable[None]:
        """Settle a reserved message: it will not be delivered again. An ``async def``
        does; a broker with nothing to send may return :data:`flowrra.awaitables.DONE`
        (the worker awaits one ``ack`` per task: a coroutine costs it ~2% of its work)."""

    async def requeue(self, message: TaskMessage, retry: TaskMessage) -> None:
        """Settle ``message`` and enqueue ``retry`` (its next attempt, with a due time,
        or the next step of its chain: another id and task) atomically, bypassing any
        queue-size bound."""

    async def release(self, messages: Sequence[TaskMessage]) -> None:
        """Hand reserved messages back, unfinished, for immediate redelivery."""

    async def dead_letter(self, message: TaskMessage, reason: str) -> None:
        """Settle a message that can never run, keeping it (and ``reason``) for inspection."""

    async def extend(self, messages: Sequence[TaskMessage]) -> None:
        """Renew the leases of reserved messages that are still running."""

    async def purge(self) -> list[TaskMessage]:
        """Remove and return every queued message, due or delayed."""

    def pending_count(self) -> int:
        """Messages queued and not reserved, as known to this process."""


@runtime_checkable
class ResultBackend(Protocol):
    """Keeps each task's latest :class:`~flowrra.task.TaskResult` by id.

    Obligations: ``store`` replaces the record; storing a complete result (SUCCESS or
    FAILED) wakes every ``wait_for`` on that id, in this process or another. ``wait_for``
    is woken by a notification, never by sleep-polling, and arms it before checking what
    is stored, so a result landing in between is not missed. ``store`` raises
    ``SerializationError`` for a result it cannot encode.

    ``sends_when_called`` (a class attribute; ``BaseResultBackend`` says ``False``) is
    ``True`` when ``store`` starts the write as it is called and returns an awaitable of
    the reply (never a coroutine, which would not have started). The worker then hands a
    success's reply to its settle loop and moves on; with ``False`` it awaits ``store``
    itself. Either value is correct for any backend; it decides only who waits.

    Optional capabilities, each a protocol of its own: :class:`BatchStore`
    (``store_many``), :class:`KnownTasks` (``expects``), :class:`EventSource`,
    :class:`ResultPages` (``list_page``: keyset pages from indexes),
    :class:`ResultCounts` (``counts``: totals kept as records are written).
    """

    sends_when_called: ClassVar[bool]

    async def connect(self) -> None:
        """Open connections; called once before first use."""

    async def close(self) -> None:
        """Release connections and wake nobody."""

    def store(self, task_id: str, result: TaskResult) -> Awaitable[None]:
        """Record ``result`` as the task's latest state.

        An ``async def`` does; a networked backend may send the write when called and
        return an awaitable of the reply (see ``Broker.enqueue``); then a PENDING record
        must never replace a later status of the same task, which may arrive first."""

    async def get(self, task_id: str) -> TaskResult | None:
        """The latest record for ``task_id``, or ``None`` if there is none."""

    async def wait_for(self, task_id: str, timeout: float | None) -> TaskResult:
        """Wait until the task is complete; raises ``TimeoutError`` after ``timeout``."""

    async def list(
        self,
        *,
        status: TaskStatus | None = None,
        task_name: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[TaskResult]:
        """Recent records, newest submitted first, optionally filtered."""


@runtime_checkable
class BatchStore(Protocol):
    """A result backend that stores several records in one call (optional).

    ``submit_many`` uses it for the PENDING records of a batch (see
    :func:`flowrra.backends.base.store_many`); without it each record is stored in turn.
    """

    def store_many(self, results: Sequence[TaskResult]) -> Awaitable[None]:
        """Store every record, as ``store`` would each (a record that cannot be encoded
        raises ``SerializationError``). May send them when called, like ``store``."""


@runtime_checkable
class ResultPages(Protocol):
    """A result backend that lists by cursor from indexes it keeps (optional).

    ``list`` pages by ``offset``, which costs what lies before the page. ``list_page``
    costs the page: the UI and ``Monitor.executions_page`` use it when the backend has
    it (and emulate a cursor over ``list`` when not).

    Obligations:

    - Records come newest submitted first (ties: a fixed order), as ``list`` gives them.
    - ``cursor`` is ``None`` for the first page, else a ``next_cursor`` this backend
      returned. It is opaque text; one the backend did not make (altered, truncated,
      hostile) raises ``ValueError`` naming it, never a driver error.
    - Following ``next_cursor`` from the first page to ``None`` yields every record that
      was there all along exactly once, whatever is stored meanwhile; records submitted
      after the first page was read may or may not appear (newer ones come before the
      cursor and do not).
    - A status or task-name filter reads an index, not every record. A page may hold
      fewer than ``limit`` records (expired ones, or both filters at once) and still
      have a ``next_cursor``; ``None`` means there is nothing after it.
    """

    async def list_page(
        self,
        *,
        status: TaskStatus | None = None,
        task_name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[builtins.list[TaskResult], str | None]:
        """Up to ``limit`` records after ``cursor``, and the cursor of the next page
        (``None`` at the end)."""


@runtime_checkable
class ResultCounts(Protocol):
    """A result backend that counts records as it writes them (optional): the
    dashboard's totals and chart, exact at any volume, without reading records.

    ``counts(minutes)`` returns ``{"totals": {status: n}, "per_minute": [{"minute":
    <Unix seconds>, "success": n, "failed": n}, ...]}``: ``per_minute`` has ``minutes``
    entries, oldest first, the last one the current minute. In ``totals``, ``pending``,
    ``running`` and ``retrying`` are the records in that status now; ``success`` and
    ``failed`` are the completions recorded since the counts began (a record expiring
    does not lower them; a task counts once, however often its completion is sent), and
    ``retries`` how many times a task was set to retry.
    """

    async def counts(self, minutes: int) -> dict[str, Any]:
        """Totals and completions per minute (see the class docs)."""


@runtime_checkable
class KnownTasks(Protocol):
    """A result backend that knows which tasks it will see complete (optional).

    ``app.wait_for_result`` asks it first: for a task it ``expects`` (this process stored
    its PENDING record, and the backend will not miss its completion) the wait goes
    straight to ``wait_for`` without reading the record first. The Redis backend does
    this for tasks submitted while it listens.
    """

    def expects(self, task_id: str) -> bool:
        """True only if ``wait_for(task_id)`` cannot miss the completion; False for any id
        this backend has not stored a PENDING record for."""


@runtime_checkable
class Executor(Protocol):
    """Runs a task's function. Flowrra ships an I/O executor (the event loop) and a CPU
    executor (a process pool); pass your own to ``Flowrra(io_executor=..., cpu_executor=...)``.

    ``concurrency`` is how many tasks it runs at once; the worker never hands it more.
    ``run`` may be cancelled (task timeout, shutdown): an executor that cannot stop the work
    (a process pool) lets it finish in the background and drops the outcome.
    """

    concurrency: int

    async def start(self) -> None:
        """Acquire resources (a process pool)."""

    async def stop(self, wait: bool) -> None:
        """Release resources; with ``wait``, let running work finish first."""

    def run(
        self, task: TaskHandle[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Awaitable[Any]:
        """Run the task's function with these arguments; the awaitable gives what it
        returns. An ``async def run`` satisfies this too."""


@runtime_checkable
class WorkerDirectory(Protocol):
    """What a broker shared by several processes offers monitors (optional).

    A worker whose broker has these methods announces itself every few seconds, so
    ``flowrra status`` and the web UI in another process see which workers are alive, and
    how deep the queues are.
    """

    async def announce(self, info: dict[str, Any], ttl: float) -> None:
        """Record a worker's heartbeat (``id``, ``host``, ``pid``, ``concurrency``,
        ``started``, ``processed``...); it counts as alive for ``ttl`` seconds."""

    async def retire(self, worker_id: str) -> None:
        """Forget a worker that stopped cleanly."""

    async def workers(self) -> list[dict[str, Any]]:
        """Workers alive now, each as it last announced itself."""

    async def queue_depths(self) -> dict[str, int]:
        """Live message counts by state (``queued``, ``delayed``, ``leased``, ``dead``)."""


@runtime_checkable
class NamedQueues(Protocol):
    """A broker that keeps messages in named queues (optional; see :mod:`flowrra.queues`).

    A message waits in the queue its ``queue`` names; ``reserve`` takes from the queues
    :meth:`consume` selected (until it is called: the default queue only), choosing
    between them as :func:`flowrra.queues.take_in_turns` says (weighted turns, or strict order),
    and in each queue by the :class:`Broker` order (priority, then FIFO). A retry, a
    released message and a redelivery go back to the message's own queue. Without this
    capability a broker has the default queue only, and the app refuses a submit to any
    other.
    """

    def consume(self, selection: QueueSelection) -> None:
        """Reserve from these queues from now on (called by the worker before it starts)."""

    async def queue_stats(self) -> dict[str, dict[str, Any]]:
        """Per queue that holds or held messages: ``queued`` (due now), ``delayed``,
        ``leased`` (where the broker leases) and ``priorities``, the due messages by
        priority (``{priority: count}``, lowest first)."""


@runtime_checkable
class UniqueJobs(Protocol):
    """A broker that queues a message only if its unique key is free (optional; see
    :mod:`flowrra.unique`).

    Obligations:

    - ``enqueue_unique`` is one atomic step: if ``key`` is held, nothing is queued and the
      holder's id is returned; else the key is taken for ``message.id`` (living
      ``unique_ttl`` seconds after the message is due, unless released) and the message
      is queued, as ``enqueue`` would, and ``message.id`` is returned. Of any number of
      concurrent calls with one key, from any number of processes, one queues.
    - Called again with the same message (a resend after a lost reply), it returns
      ``message.id`` and queues nothing twice; a networked broker, even if the task has
      finished and released the key since (within its window for resends).
    - ``release_unique`` is a compare and delete: only if ``key`` still holds ``task_id``
      is it deleted (``keep_for`` 0) or set to expire ``keep_for`` seconds from now.
    - A message whose arguments cannot be encoded raises ``SerializationError`` and takes
      no key.
    """

    unique_ttl: float

    def enqueue_unique(self, message: TaskMessage, key: str) -> Awaitable[str]:
        """Queue ``message`` unless ``key`` is held; the id of the task holding it after."""

    def release_unique(self, key: str, task_id: str, keep_for: float) -> Awaitable[bool]:
        """Release ``key`` if ``task_id`` holds it (kept ``keep_for`` seconds more, if
        > 0); True if it did."""

    async def unique_holder(self, key: str) -> str | None:
        """The id of the task holding ``key`` now, or ``None``."""


@runtime_checkable
class Cancellation(Protocol):
    """A broker that can cancel tasks by id (optional; ``app.cancel`` needs it).

    :meth:`cancel` marks a task cancelled. From then on, no message of that task is
    delivered to run: one waiting (queued, delayed, a retry, or a chain step queued
    later) is dropped, or delivered only together with word that its task is cancelled
    (the broker calls the watchers of :meth:`watch_cancels` with its id before it returns
    the message from ``reserve``), so the worker settles it without running it. Every
    worker watching is told (:meth:`watch_cancels`), on whichever process or machine it
    runs, so it can interrupt an attempt of the task it is running. A broker without this
    capability cannot cancel: ``app.cancel`` raises ``TypeError`` naming it.

    Marks are kept for a while (the Redis broker: a day) and then forgotten; cancelling an
    id the broker never saw only costs that mark.
    """

    async def cancel(self, task_id: str) -> None:
        """Mark ``task_id`` cancelled and tell every watcher (see the class docstring).
        Idempotent."""

    async def watch_cancels(self, cancelled: Callable[[str], None]) -> None:
        """Call ``cancelled(task_id)`` for each task cancelled from now on (and for each
        cancelled task whose message ``reserve`` is about to return), until this call is
        itself cancelled. Returns once watching has started only by being cancelled: a
        worker runs it as a background task, started before it first reserves."""


@runtime_checkable
class RecordedEnqueue(Protocol):
    """A broker that can store a backend's PENDING records with its enqueue, in one
    atomic step (optional). When the broker and the backend live on one server, a submit
    then makes one round trip instead of two in parallel.

    Obligations:

    - ``enqueue_with_records(backend)`` is called once, when the app is built; it
      returns None for a backend it cannot write for (another kind, another server),
      and the app then stores and enqueues separately.
    - Otherwise it returns a callable ``send(messages, records)``: ``records`` are the
      messages' PENDING records in order, then any more to store without a message (a
      chain's later steps); the app may pass a :class:`~flowrra.task.PendingRecords`,
      which builds each record when read, so a broker can encode them from the
      messages instead. Like ``enqueue``, it encodes everything first (raising
      ``SerializationError`` with nothing sent) and sends when called (a batch larger
      than its connection takes at once may go on over later turns of the loop, to the
      end, whatever becomes of the awaitable); the awaitable it returns raises
      ``BrokerError`` if it failed.
    - Each record is stored as the backend's ``store`` would store it (never over a
      record already there, with whatever the backend keeps beside it: indexes, counts,
      events), and ``backend.expects`` knows the ids as after ``store``.
    - A record and its message are written together or not at all (a batch may be cut
      into several such steps); sent again after a lost reply, the step queues nothing
      twice and counts nothing twice.
    """

    def enqueue_with_records(
        self, backend: ResultBackend
    ) -> Callable[[Sequence[TaskMessage], Sequence[TaskResult]], Awaitable[None]] | None:
        """The one-step submit for ``backend``, or None if it cannot write for it."""


@runtime_checkable
class LimitedTasks(Protocol):
    """A broker that enforces per-task rate and concurrency limits at reserve (optional;
    see :mod:`flowrra.limits`).

    After :meth:`limit`, ``reserve`` never returns a message whose task would exceed its
    limits: starts of a rate-limited task in any window of ``per_seconds`` (counted over
    every process sharing the broker) stay at most ``count``, and reserved, unsettled
    messages of a task with ``max_concurrency`` stay at most that many. A message over
    a limit stays in the broker (due when the limit next allows; as a retry, it returns
    behind the messages of its priority queued meanwhile) and ``reserve`` gives the
    other tasks' messages instead. Settling a message (``ack``, ``requeue``,
    ``release``, ``dead_letter``) frees its concurrency place; on a leased broker so does
    the expiry of its lease. Tasks without limits are not affected, and a broker that
    was never given limits does no work for them.
    """

    def limit(self, limits: Mapping[str, TaskLimits]) -> None:
        """Enforce these limits, by task name, from now on (called by the worker before it
        starts; an empty mapping turns them off)."""


@runtime_checkable
class Redeliveries(Protocol):
    """A broker that can tell a redelivery from a first delivery (optional).

    A message whose lease expired before it was settled (its worker died, stalled or was
    cut off) is delivered again: at least once. The task may have completed all the
    same, its ack lost with the worker. For a message this says is redelivered, the
    worker reads the task's record first and, when it is complete (SUCCESS or FAILED),
    acks the message without running the task again. The check costs a read per
    redelivery only, never per task.
    """

    def redelivered(self, message: TaskMessage) -> bool:
        """True if ``message`` was reserved before and came back unsettled (an expired
        lease); False for a first delivery, a retry, and a message this broker cannot
        tell about. Synchronous: it reads what the broker attached to the message."""


@runtime_checkable
class DeadLetters(Protocol):
    """A broker whose dead letters can be worked from another process (optional): listed,
    queued again, deleted. ``flowrra dead-letters list|requeue|purge`` and
    :func:`flowrra.dead_letters.requeue` use it.

    An entry is a dict: ``reason``, ``at`` (Unix time), ``id`` and ``name`` (None when they
    could not be read), ``raw`` (the message as the broker held it, possibly cut to a byte
    bound: then ``truncated`` is true and the reason says so) and ``requeueable``.
    """

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` entries, newest first."""

    async def requeue_dead_letters(self, ids: Sequence[str] | None = None) -> list[TaskMessage]:
        """Queue again (due now) the requeueable entries of the tasks ``ids`` (None: all),
        removing them; returns the messages queued, each at most once whoever else calls."""

    async def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Delete the entries of the tasks ``ids`` (None: all); returns how many."""


@runtime_checkable
class EventSource(Protocol):
    """A result backend shared by several processes that also streams their task events
    (optional). Monitors in another process (the web UI) use it for live updates; without
    it they see the events of their own process only (``app.events``)."""

    def subscribe_events(
        self, max_buffer: int = 10_000
    ) -> AbstractAsyncContextManager[AsyncIterator[TaskEvent]]:
        """``async with backend.subscribe_events() as events: async for event in events``.

        A source over the network may also take an optional keyword ``on_connection``, a
        ``(bool) -> None`` called with ``False`` when its connection is lost and with
        ``True`` each time its subscription holds (after a reconnect too), so a monitor
        can say it is not live and catch up on what it missed (Redis's does)."""


class AppScheduler(Protocol):
    """What the core and the UI need of the scheduler an app holds as ``app.scheduler``.

    ``flowrra-scheduler``'s ``Scheduler`` satisfies it; ``app.create_scheduler()`` sets
    it. The core declares it so that it reads ``app.scheduler`` typed, without importing
    the plugin. Methods taking a schedule take a ``ScheduledTask`` or its id.
    """

    @property
    def is_running(self) -> bool:
        """True while it fires due schedules."""

    async def start(self) -> None:
        """Start firing due schedules."""

    async def stop(self) -> None:
        """Stop firing."""

    async def schedule_cron(
        self,
        task_name: Any,
        cron: str,
        args: tuple[Any, ...] | builtins.list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        enabled: bool = True,
        description: str | None = None,
        priority: int = 0,
        timezone: str = "UTC",
    ) -> str:
        """Fire the task on a cron expression; returns the schedule's id."""

    async def schedule_interval(
        self,
        task_name: Any,
        interval: float,
        args: tuple[Any, ...] | builtins.list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        enabled: bool = True,
        description: str | None = None,
        priority: int = 0,
    ) -> str:
        """Fire the task every ``interval`` seconds; returns the schedule's id."""

    async def schedule_once(
        self,
        task_name: Any,
        run_at: datetime,
        args: tuple[Any, ...] | builtins.list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        enabled: bool = True,
        description: str | None = None,
        priority: int = 0,
    ) -> str:
        """Fire the task once at ``run_at``; returns the schedule's id."""

    async def list(self, enabled_only: bool = False) -> builtins.list[ScheduledTask]:
        """Every schedule (or every enabled one)."""

    async def get(self, schedule: ScheduledTask | str) -> ScheduledTask | None:
        """The schedule, or ``None``."""

    async def enable(self, schedule: ScheduledTask | str) -> ScheduledTask:
        """Enable the schedule and return it."""

    async def disable(self, schedule: ScheduledTask | str) -> ScheduledTask:
        """Disable the schedule and return it."""

    async def delete(self, schedule: ScheduledTask | str) -> bool:
        """Remove the schedule; False if there was none."""


@runtime_checkable
class ScheduleStore(Protocol):
    """Keeps schedules (:class:`~flowrra.schedules.ScheduledTask`) for the scheduler of
    ``flowrra-scheduler``; registered under ``flowrra.schedule_stores`` by URL scheme.

    Obligations:

    - ``connect`` creates the schema on first use and records its version; a schema newer
      than the store knows is an error, never silently used.
    - ``add`` is idempotent on the schedule's ``definition_key``: if a schedule with the
      same definition exists (even one written by another process at the same moment), it
      returns that one and writes nothing.
    - ``replace`` is a compare-and-set: it writes every field of the schedule only if the
      stored ``revision`` still equals ``expected_revision``, stores ``expected_revision +
      1``, and says whether it wrote. This is how scheduler processes claim an occurrence
      without a lock: exactly one of them wins each claim.
    - Instants are kept to the microsecond and come back as aware UTC datetimes.
    - Errors reaching the database raise :class:`~flowrra.exceptions.ScheduleStoreError`
      naming the host and scheme, never the password.
    """

    url: str

    async def connect(self) -> None:
        """Open connections and create or check the schema. Idempotent, and safe to call
        from several coroutines at once (the scheduler calls it before each use)."""

    async def close(self) -> None:
        """Release connections; harmless when not connected."""

    async def add(self, schedule: ScheduledTask) -> ScheduledTask:
        """Insert ``schedule``, or return the stored one with the same definition."""

    async def get(self, schedule_id: str) -> ScheduledTask | None:
        """The schedule with this id, or ``None``."""

    async def list_all(self, enabled_only: bool = False) -> list[ScheduledTask]:
        """Every schedule (or every enabled one), oldest first."""

    async def replace(self, schedule: ScheduledTask, expected_revision: int) -> bool:
        """Compare-and-set write of ``schedule`` (see the obligations)."""

    async def delete(self, schedule_id: str) -> bool:
        """Remove a schedule; False if there was none."""

    async def due(self, now: datetime, limit: int) -> list[ScheduledTask]:
        """Enabled schedules whose ``next_run_at`` is at or before ``now``, earliest first."""

    async def next_run_at(self) -> datetime | None:
        """The earliest ``next_run_at`` of the enabled schedules."""

    async def clear(self) -> int:
        """Remove every schedule; returns how many."""
