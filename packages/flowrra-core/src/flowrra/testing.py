"""Contract suites: the behaviour every broker, result backend and schedule store owes.

Subclass them in your plugin's tests and provide the fixture they name; pytest and
pytest-asyncio (``asyncio_mode = "auto"``) run the inherited tests against your
implementation::

    from flowrra.testing import BrokerContract

    class TestMyBroker(BrokerContract):
        @pytest.fixture
        async def broker(self):
            broker = MyBroker(...)
            await broker.connect()
            await broker.purge()
            yield broker
            await broker.close()

Optional capabilities are tested where the object declares them (a class attribute, or
one of the optional protocols of :mod:`flowrra.protocols`), and skipped where it does not:
a plugin that claims a capability proves it with the same suite.

They need pytest and pytest-asyncio: ``pip install "flowrra[testing]"``; ``import flowrra``
never imports this module. The in-memory broker and store run these same suites, and the SQLite,
PostgreSQL and MySQL stores of flowrra-scheduler run :class:`ScheduleStoreContract`.

The error boundary: a networked broker or backend also overrides the fixture
``unreachable_broker`` / ``unreachable_backend`` with one configured for a server that does
not answer (a closed port), :data:`SECRET` as its password. Every public method of the
protocol (and of :class:`~flowrra.protocols.WorkerDirectory` / ``EventSource`` where the
object is one) must then raise ``BrokerError`` / ``BackendError``, never a driver's own
exception, and no error may show the password. Where the fixture is not overridden (an
in-memory implementation cannot be unreachable) that test is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowrra.backends.base import store_many
from flowrra.clock import ManualClock
from flowrra.exceptions import BackendError, BrokerError, FlowrraError, SerializationError
from flowrra.limits import RateLimit, TaskLimits
from flowrra.protocols import (
    BatchStore,
    Broker,
    Cancellation,
    DeadLetters,
    EventSource,
    KnownTasks,
    LimitedTasks,
    NamedQueues,
    Redeliveries,
    ResultBackend,
    ResultCounts,
    ResultPages,
    ScheduleStore,
    UniqueJobs,
    WorkerDirectory,
)
from flowrra.queues import QueueSelection
from flowrra.schedules import ScheduledTask, ScheduleType
from flowrra.task import TaskMessage, TaskResult, TaskStatus, new_task_id

__all__ = [
    "SECRET",
    "BrokerContract",
    "ResultBackendContract",
    "ScheduleStoreContract",
    "message",
    "schedule",
]


def message(
    name: str = "job",
    *args: Any,
    priority: int = 0,
    eta: float | None = None,
    queue: str | None = None,
    **kwargs: Any,
) -> TaskMessage:
    """A fresh message for tests (in ``queue``, if given)."""
    made = TaskMessage(
        new_task_id(), name, args, kwargs, priority=priority, eta=eta, submitted_at=time.time()
    )
    if queue is not None:
        made.queue = queue
    return made


#: The password an ``unreachable_broker`` / ``unreachable_backend`` fixture puts in its URL
#: (or wherever its implementation takes one): no error may show it.
SECRET = "flowrra-contract-s3cret"

#: Seconds one call may take against an unreachable server before the contract calls it hung.
_HUNG = 30.0


async def _fails_with(
    error_type: type[FlowrraError], name: str, call: Callable[[], Awaitable[Any]]
) -> None:
    """``call()`` (the method ``name``, against an unreachable server) raises ``error_type``,
    within :data:`_HUNG` seconds, and nothing in the error (its causes included) shows
    :data:`SECRET`."""
    scope = asyncio.timeout(_HUNG)
    try:
        async with scope:
            await call()
    except error_type as exc:
        _check_secret_kept(name, exc)
        return
    except Exception as exc:
        if scope.expired():
            pytest.fail(f"{name}() hung for {_HUNG}s on an unreachable server")
        pytest.fail(
            f"{name}() raised {type(exc).__module__}.{type(exc).__qualname__} ({exc}) on an "
            f"unreachable server: a plugin raises {error_type.__name__} (translate the "
            "driver's error at the plugin's boundary: raise ... from exc)"
        )
    pytest.fail(f"{name}() returned on an unreachable server: it must raise {error_type.__name__}")


def _check_secret_kept(name: str, exc: BaseException) -> None:
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and not any(seen is known for known in chain):  # chains may loop
        chain.append(seen)
        assert SECRET not in str(seen), f"{name}(): an error shows the password: {seen}"
        seen = seen.__cause__ or seen.__context__


def _check_clock(broker: Broker, clock: ManualClock) -> None:
    if getattr(broker, "clock", None) is not clock:
        pytest.fail(
            "the broker does not read due times from the contract's clock: take the `clock` "
            "fixture in your `broker` fixture and build the broker with it (clock=clock)"
        )


async def _drain(broker: Broker, expected: int, timeout: float = 5.0) -> list[TaskMessage]:
    out: list[TaskMessage] = []
    deadline = time.monotonic() + timeout
    while len(out) < expected and time.monotonic() < deadline:
        out.extend(await broker.reserve(expected - len(out), 0.2))
    for m in out:
        await broker.ack(m)
    return out


class BrokerContract:
    """Inherit and provide an async ``broker`` fixture yielding a connected, empty broker
    (and, for a broker that talks to a server, ``unreachable_broker``: see the module docs)."""

    @pytest.fixture
    def unreachable_broker(self) -> Broker | None:
        """Override with a broker, not connected, configured for a server that does not
        answer (a closed port), with :data:`SECRET` as its password and short timeouts and
        retries (each call should fail in well under a second). ``None``, the default,
        skips :meth:`test_an_unreachable_server_raises_broker_error`."""
        return None

    async def test_an_unreachable_server_raises_broker_error(
        self, unreachable_broker: Broker | None
    ) -> None:
        broker = unreachable_broker
        if broker is None:
            pytest.skip("no unreachable_broker fixture: this broker has no server to lose")
        held = message("held")
        held.receipt = b"flowrra-contract-receipt"  # a reservation the server never made
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "connect": broker.connect,
            "enqueue": lambda: broker.enqueue(message("x")),
            "enqueue_many": lambda: broker.enqueue_many([message("x"), message("y")]),
            "reserve": lambda: broker.reserve(1, 0.1),
            "requeue": lambda: broker.requeue(held, held.next_attempt(time.time() + 60)),
            "release": lambda: broker.release([held]),
            "dead_letter": lambda: broker.dead_letter(held, "cannot run"),
            "extend": lambda: broker.extend([held]),
            "purge": broker.purge,
        }
        if isinstance(broker, WorkerDirectory):
            directory = broker
            calls |= {
                "announce": lambda: directory.announce({"id": "w1"}, 15.0),
                "retire": lambda: directory.retire("w1"),
                "workers": directory.workers,
                "queue_depths": directory.queue_depths,
            }
        if isinstance(broker, NamedQueues):
            calls["queue_stats"] = broker.queue_stats
        if isinstance(broker, UniqueJobs):
            unique = broker
            calls |= {
                "enqueue_unique": lambda: unique.enqueue_unique(message("x"), "k"),
                "release_unique": lambda: unique.release_unique("k", "id", 0.0),
                "unique_holder": lambda: unique.unique_holder("k"),
            }
        try:
            for name, call in calls.items():
                await _fails_with(BrokerError, name, call)
            # An ack may be write-behind (a lost ack means a redelivery: at least once).
            try:
                await broker.ack(held)
            except BrokerError as exc:
                _check_secret_kept("ack", exc)
            assert isinstance(broker.pending_count(), int)
        finally:
            await broker.close()  # harmless, whatever failed

    @pytest.fixture
    def clock(self) -> ManualClock:
        """The clock the due-time tests move: they never wait for a due time. Take it in
        the ``broker`` fixture and build the broker with it (``MyBroker(..., clock=clock)``);
        the broker reads "now" for due times from it (see :mod:`flowrra.clock`)."""
        return ManualClock()

    async def test_round_trip_keeps_fields(self, broker: Broker) -> None:
        sent = message("add", 1, "two", [3], priority=4, key={"a": None})
        await broker.enqueue(sent)
        [got] = await _drain(broker, 1)
        assert (got.id, got.name, list(got.args), got.kwargs, got.priority, got.attempt) == (
            sent.id,
            "add",
            [1, "two", [3]],
            {"key": {"a": None}},
            4,
            0,
        )

    async def test_lower_priority_number_first_and_fifo_within_priority(
        self, broker: Broker
    ) -> None:
        priorities = [5, -3, 0, 5, 10**12, 0, -(10**12), 1, 0]
        sent = [message(f"t{i}", priority=p) for i, p in enumerate(priorities)]
        for m in sent:
            await broker.enqueue(m)
        got = await _drain(broker, len(sent))
        expected = sorted(sent, key=lambda m: (m.priority, sent.index(m)))
        assert [m.id for m in got] == [m.id for m in expected]

    async def test_enqueue_many_keeps_order(self, broker: Broker) -> None:
        sent = [message(f"t{i}", priority=i % 3) for i in range(30)]
        await broker.enqueue_many(sent)
        got = await _drain(broker, 30)
        expected = sorted(sent, key=lambda m: (m.priority, sent.index(m)))
        assert [m.id for m in got] == [m.id for m in expected]

    async def test_reserve_returns_at_most_max_messages(self, broker: Broker) -> None:
        for i in range(5):
            await broker.enqueue(message(f"t{i}"))
        first = await broker.reserve(2, 1.0)
        assert len(first) == 2
        rest = await _drain(broker, 3)
        assert len(rest) == 3
        for m in first:
            await broker.ack(m)

    async def test_reserve_times_out_empty(self, broker: Broker) -> None:
        # That it waits meanwhile: test_reserve_wakes_when_a_message_arrives.
        assert await broker.reserve(1, 0.2) == []

    async def test_reserve_wakes_when_a_message_arrives(self, broker: Broker) -> None:
        waiting = asyncio.create_task(broker.reserve(1, 10.0))
        await asyncio.sleep(0.05)
        sent = message("late")
        await broker.enqueue(sent)
        got = await asyncio.wait_for(waiting, 5.0)
        assert [m.id for m in got] == [sent.id]
        await broker.ack(got[0])

    async def test_message_with_future_eta_waits_until_due(
        self, broker: Broker, clock: ManualClock
    ) -> None:
        _check_clock(broker, clock)
        due = clock.time() + 30
        sent = message("later", eta=due)
        await broker.enqueue(sent)
        assert await broker.reserve(1, 0.1) == []
        clock.advance(29.5)
        assert await broker.reserve(1, 0.1) == []  # due in half a second
        clock.advance(0.5)
        [got] = await _drain(broker, 1)
        assert (got.id, got.eta) == (sent.id, due)

    async def test_requeue_delivers_the_retry_when_due(
        self, broker: Broker, clock: ManualClock
    ) -> None:
        _check_clock(broker, clock)
        await broker.enqueue(message("flaky"))
        [first] = await broker.reserve(1, 1.0)
        due = clock.time() + 2
        await broker.requeue(first, first.next_attempt(due))
        assert await broker.reserve(1, 0.1) == []
        clock.advance(2)
        [retry] = await _drain(broker, 1)
        assert (retry.id, retry.attempt, retry.eta) == (first.id, 1, due)

    async def test_requeue_with_another_message_queues_that_one(self, broker: Broker) -> None:
        """A chain's next step: ``requeue`` settles the step that ran and queues the next
        one, a message of another id and task (with the chain's header)."""
        await broker.enqueue(message("step.one", 1))
        [first] = await broker.reserve(1, 1.0)
        following = message("step.two", 1, 2)
        following.headers = {"flowrra-chain": '{"v":1}', "tenant": "acme"}
        await broker.requeue(first, following)
        [got] = await _drain(broker, 1)
        assert (got.id, got.name, got.args) == (following.id, "step.two", (1, 2))
        assert got.headers == following.headers
        assert await broker.reserve(1, 0.1) == [], "the step that ran is settled"

    async def test_release_hands_messages_back(self, broker: Broker) -> None:
        sent = message("unfinished")
        await broker.enqueue(sent)
        got = await broker.reserve(1, 1.0)
        await broker.release(got)
        [again] = await _drain(broker, 1)
        assert again.id == sent.id

    async def test_dead_lettered_message_is_not_redelivered(self, broker: Broker) -> None:
        await broker.enqueue(message("poison"))
        [got] = await broker.reserve(1, 1.0)
        await broker.dead_letter(got, "cannot run")
        assert await broker.reserve(1, 0.1) == []

    async def test_unencodable_arguments_are_rejected_and_not_queued(self, broker: Broker) -> None:
        with pytest.raises(SerializationError):
            await broker.enqueue(message("bad", object()))
        assert broker.pending_count() == 0
        assert await broker.reserve(1, 0.05) == []

    async def test_cancelled_reserve_loses_nothing(self, broker: Broker) -> None:
        waiting = asyncio.create_task(broker.reserve(1, 10.0))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        sent = message("after-cancel")
        await broker.enqueue(sent)
        [got] = await _drain(broker, 1)
        assert got.id == sent.id

    async def test_purge_removes_due_and_delayed(self, broker: Broker) -> None:
        await broker.enqueue(message("now"))
        await broker.enqueue(message("later", eta=time.time() + 60))
        assert broker.pending_count() == 2
        purged = await broker.purge()
        assert sorted(m.name for m in purged) == ["later", "now"]
        assert broker.pending_count() == 0

    # -- declared capabilities -------------------------------------------------------------

    async def test_declares_durability_and_lease(self, broker: Broker) -> None:
        assert isinstance(broker.durable, bool), "declare durable: bool (BaseBroker: False)"
        lease = broker.lease_seconds
        assert lease is None or (isinstance(lease, int | float) and lease > 0), (
            f"lease_seconds is None (no leases) or a positive number, not {lease!r}"
        )

    async def test_a_leased_message_can_be_extended(self, broker: Broker) -> None:
        if broker.lease_seconds is None:
            pytest.skip("no leases (lease_seconds is None)")
        await broker.enqueue(message("long"))
        [got] = await broker.reserve(1, 5.0)
        await broker.extend([got])
        await broker.ack(got)

    async def test_a_redelivery_is_told_from_a_first_delivery(
        self, broker: Broker, clock: ManualClock
    ) -> None:
        if not isinstance(broker, Redeliveries):
            pytest.skip("not a Redeliveries broker")
        lease = broker.lease_seconds
        if lease is None:
            pytest.skip("no leases (lease_seconds is None)")
        _check_clock(broker, clock)
        await broker.enqueue(message("again"))
        [first] = await broker.reserve(1, 5.0)
        assert not broker.redelivered(first), "a first delivery is not a redelivery"
        clock.advance(lease + 1)  # its lease expired unsettled
        [again] = await broker.reserve(1, 5.0)
        assert again.id == first.id and broker.redelivered(again)
        await broker.requeue(again, again.next_attempt(clock.time()))
        [retry] = await broker.reserve(1, 5.0)
        assert retry.attempt == 1 and not broker.redelivered(retry), "a retry is not one"
        await broker.ack(retry)

    async def test_dead_letters_are_listed_requeued_once_and_purged(self, broker: Broker) -> None:
        if not isinstance(broker, DeadLetters):
            pytest.skip("not a DeadLetters broker")
        first, second = message("dead.one", 1), message("dead.two", 2)
        await broker.enqueue_many([first, second])
        taken: list[TaskMessage] = []
        deadline = time.monotonic() + 5.0
        while len(taken) < 2 and time.monotonic() < deadline:
            taken += await broker.reserve(2 - len(taken), 0.2)
        for got in taken:
            await broker.dead_letter(got, f"because {got.name}")
        entries = await broker.dead_letters(10)
        assert {e["id"] for e in entries} == {first.id, second.id}
        assert {e["reason"] for e in entries} == {"because dead.one", "because dead.two"}
        assert all(e["requeueable"] for e in entries)
        [again] = await broker.requeue_dead_letters([first.id])
        assert (again.id, again.name, again.args) == (first.id, "dead.one", (1,))
        assert await broker.requeue_dead_letters([first.id]) == []  # taken once
        [got] = await broker.reserve(1, 5.0)
        assert got.id == first.id
        await broker.ack(got)
        assert await broker.purge_dead_letters() == 1
        assert await broker.dead_letters(10) == []

    async def test_named_queues_keep_their_messages_apart(self, broker: Broker) -> None:
        if not isinstance(broker, NamedQueues):
            pytest.skip("not a NamedQueues broker")
        named = broker
        await broker.enqueue_many(
            [message("mail", 1, queue="contract-mail"), message("mail", 2, queue="contract-mail")]
        )
        await broker.enqueue(message("report", priority=5, queue="contract-report"))
        await broker.enqueue(message("report", priority=-1, queue="contract-report"))
        await broker.enqueue(message("plain"))
        stats = await named.queue_stats()
        assert stats["contract-mail"]["queued"] == 2, stats
        assert stats["contract-report"]["priorities"] == {-1: 1, 5: 1}, stats
        assert stats["default"]["queued"] == 1, stats
        named.consume(QueueSelection.of(["contract-report"]))
        got = await _drain(broker, 2)
        assert [(m.name, m.priority, m.queue) for m in got] == [
            ("report", -1, "contract-report"),
            ("report", 5, "contract-report"),
        ]
        assert await broker.reserve(5, 0.1) == [], "nothing of the other queues"
        named.consume(QueueSelection.of(["default", "contract-mail"]))
        rest = await _drain(broker, 3)
        assert sorted((m.name, m.queue) for m in rest) == [
            ("mail", "contract-mail"),
            ("mail", "contract-mail"),
            ("plain", "default"),
        ]

    async def test_named_queues_take_weighted_turns(self, broker: Broker) -> None:
        if not isinstance(broker, NamedQueues):
            pytest.skip("not a NamedQueues broker")
        await broker.enqueue_many([message("a", n, queue="contract-a") for n in range(6)])
        await broker.enqueue_many([message("b", n, queue="contract-b") for n in range(6)])
        broker.consume(QueueSelection.parse("contract-a:2,contract-b"))
        order = []
        for _ in range(9):  # one at a time: the weights hold whatever the batch size
            [got] = await broker.reserve(1, 5.0)
            order.append(got.name)
            await broker.ack(got)
        assert "".join(order) == "aabaabaab", order
        rest = [(await broker.reserve(1, 5.0))[0] for _ in range(3)]
        assert [m.name for m in rest] == ["b", "b", "b"], "an empty queue passes its turn"
        for got in rest:
            await broker.ack(got)
        strict = QueueSelection.parse("contract-b,contract-a", strict=True)
        await broker.enqueue_many([message("a", queue="contract-a") for _ in range(2)])
        await broker.enqueue_many([message("b", queue="contract-b") for _ in range(2)])
        broker.consume(strict)
        taken = [m.name for m in await _drain(broker, 4)]
        assert taken == ["b", "b", "a", "a"], taken

    async def test_a_retry_and_a_release_stay_in_their_queue(
        self, broker: Broker, clock: ManualClock
    ) -> None:
        if not isinstance(broker, NamedQueues):
            pytest.skip("not a NamedQueues broker")
        _check_clock(broker, clock)
        broker.consume(QueueSelection.of(["contract-retry"]))
        await broker.enqueue(message("flaky", queue="contract-retry"))
        [first] = await broker.reserve(1, 5.0)
        await broker.release([first])
        [again] = await _drain(broker, 1)
        assert (again.id, again.queue) == (first.id, "contract-retry")
        await broker.requeue(again, again.next_attempt(clock.time() + 1))
        clock.advance(2)
        [retry] = await _drain(broker, 1)
        assert (retry.id, retry.attempt, retry.queue) == (first.id, 1, "contract-retry")
        await broker.ack(retry)
        broker.consume(QueueSelection())
        assert await broker.reserve(1, 0.1) == []

    async def test_a_unique_key_queues_one_message_and_names_its_holder(
        self, broker: Broker
    ) -> None:
        if not isinstance(broker, UniqueJobs):
            pytest.skip("not a UniqueJobs broker")
        key = "contract:invoice 42/{é}"
        first, second = message("invoice", 42), message("invoice", 42)
        assert await broker.enqueue_unique(first, key) == first.id
        assert await broker.enqueue_unique(second, key) == first.id, "the holder's id"
        assert await broker.unique_holder(key) == first.id
        assert await broker.unique_holder("contract:other") is None
        [got] = await _drain(broker, 1)
        assert got.id == first.id
        assert await broker.reserve(1, 0.1) == [], "the duplicate was not queued"
        assert await broker.enqueue_unique(second, key) == first.id, "held while it runs"
        await broker.ack(got)

    async def test_a_unique_enqueue_sent_twice_queues_once(self, broker: Broker) -> None:
        """A resend of the same call (its reply was lost) gives the same id, one message."""
        if not isinstance(broker, UniqueJobs):
            pytest.skip("not a UniqueJobs broker")
        sent = message("invoice", 7)
        assert await broker.enqueue_unique(sent, "contract:resent") == sent.id
        assert await broker.enqueue_unique(sent, "contract:resent") == sent.id
        [got] = await _drain(broker, 1)
        assert got.id == sent.id
        assert await broker.reserve(1, 0.1) == []
        await broker.ack(got)

    async def test_releasing_a_unique_key_is_a_compare_and_delete(self, broker: Broker) -> None:
        if not isinstance(broker, UniqueJobs):
            pytest.skip("not a UniqueJobs broker")
        key = "contract:release"
        first = message("job")
        await broker.enqueue_unique(first, key)
        assert not await broker.release_unique(key, new_task_id(), 0.0), "not its holder"
        assert await broker.unique_holder(key) == first.id
        assert await broker.release_unique(key, first.id, 0.0)
        assert await broker.unique_holder(key) is None
        assert not await broker.release_unique(key, first.id, 0.0), "released already"
        later = message("job")
        assert await broker.enqueue_unique(later, key) == later.id, "the key is free again"
        assert {m.id for m in await _drain(broker, 2)} == {first.id, later.id}

    async def test_a_unique_key_kept_after_release_expires(
        self, broker: Broker, clock: ManualClock
    ) -> None:
        """``keep_for``: the key names the task that long after it finished, then is free
        (the clock is moved and real time passes: the broker may read either)."""
        if not isinstance(broker, UniqueJobs):
            pytest.skip("not a UniqueJobs broker")
        key = "contract:kept"
        first = message("job")
        await broker.enqueue_unique(first, key)
        assert await broker.release_unique(key, first.id, 0.3)
        assert await broker.enqueue_unique(message("job"), key) == first.id, "kept"
        clock.advance(1.0)
        await asyncio.sleep(0.5)
        assert await broker.unique_holder(key) is None
        later = message("job")
        assert await broker.enqueue_unique(later, key) == later.id

    async def test_a_delayed_unique_message_holds_its_key(
        self, broker: Broker, clock: ManualClock
    ) -> None:
        if not isinstance(broker, UniqueJobs):
            pytest.skip("not a UniqueJobs broker")
        _check_clock(broker, clock)
        delayed = message("later", eta=clock.time() + 30)
        assert await broker.enqueue_unique(delayed, "contract:delayed") == delayed.id
        assert await broker.enqueue_unique(message("later"), "contract:delayed") == delayed.id
        assert await broker.reserve(1, 0.1) == []
        clock.advance(30)
        [got] = await _drain(broker, 1)
        assert got.id == delayed.id
        await broker.ack(got)

    async def test_an_unencodable_unique_message_takes_no_key(self, broker: Broker) -> None:
        if not isinstance(broker, UniqueJobs):
            pytest.skip("not a UniqueJobs broker")
        with pytest.raises(SerializationError):
            await broker.enqueue_unique(message("bad", object()), "contract:bad")
        assert await broker.unique_holder("contract:bad") is None
        assert await broker.reserve(1, 0.05) == []
        ttl = broker.unique_ttl
        assert isinstance(ttl, int | float) and 0 < ttl < float("inf"), ttl

    async def test_cancel_tells_watchers_and_never_delivers_unmarked(
        self, broker: Broker, clock: ManualClock
    ) -> None:
        """A :class:`Cancellation` broker: after ``cancel``, a watcher hears the id, and no
        message of the task (due, delayed, or a retry queued later) is returned by
        ``reserve`` unless the watchers heard its id before ``reserve`` returned it."""
        if not isinstance(broker, Cancellation):
            pytest.skip("not a Cancellation broker")
        _check_clock(broker, clock)
        heard: list[str] = []
        told = asyncio.Event()

        def hear(task_id: str) -> None:
            heard.append(task_id)
            told.set()

        watching = asyncio.create_task(broker.watch_cancels(hear))
        try:
            await asyncio.sleep(0.2)  # subscribed (a networked broker)
            doomed, kept = message("doomed"), message("kept")
            later = message("doomed")
            later.id = doomed.id
            later.eta = clock.time() + 10
            await broker.enqueue_many([doomed, kept])
            await broker.enqueue(later)
            await broker.cancel(doomed.id)
            await broker.cancel(doomed.id)  # idempotent
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(told.wait(), 5)
            assert doomed.id in heard, "the watcher was not told"
            clock.advance(10)
            got: list[TaskMessage] = []
            for _ in range(10):
                heard.clear()
                batch = await broker.reserve(10, 0.2)
                for m in batch:
                    if m.id == doomed.id:
                        assert doomed.id in heard, "a cancelled task's message, unmarked"
                    await broker.ack(m)
                got += batch
            assert [m.id for m in got if m.id != doomed.id] == [kept.id]
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)

    async def test_a_rate_limited_task_waits_in_the_broker(
        self, broker: Broker, clock: ManualClock
    ) -> None:
        """At most ``count`` starts per window; the rest wait in the broker, due when the
        window allows, while other tasks' messages are reserved at once."""
        if not isinstance(broker, LimitedTasks):
            pytest.skip("not a LimitedTasks broker")
        _check_clock(broker, clock)
        broker.limit({"contract.rated": TaskLimits(rate=RateLimit(2, 10))})
        await broker.enqueue_many([message("contract.rated", n) for n in range(5)])
        await broker.enqueue_many([message("contract.free", n) for n in range(3)])
        first = await broker.reserve(10, 1.0)
        assert sorted(m.name for m in first) == ["contract.free"] * 3 + ["contract.rated"] * 2
        for got in first:
            await broker.ack(got)
        assert await broker.reserve(10, 0.1) == [], "the window is full"
        clock.advance(9.5)
        assert await broker.reserve(10, 0.1) == [], "not before the window moves on"
        clock.advance(0.5)
        second = await _drain(broker, 2)
        assert sorted(m.args for m in second) == [(2,), (3,)], second
        assert await broker.reserve(10, 0.1) == [], "two per window"
        clock.advance(10)
        [last] = await _drain(broker, 1)
        assert last.args == (4,)
        broker.limit({})
        await broker.enqueue_many([message("contract.rated") for _ in range(3)])
        assert len(await _drain(broker, 3)) == 3, "no limits: all at once"

    async def test_max_concurrency_holds_back_until_a_run_settles(
        self, broker: Broker, clock: ManualClock
    ) -> None:
        """Reserved, unsettled messages of a task stay at most ``max_concurrency``; ack,
        requeue, release and dead_letter each free a place."""
        if not isinstance(broker, LimitedTasks):
            pytest.skip("not a LimitedTasks broker")
        _check_clock(broker, clock)
        broker.limit({"contract.single": TaskLimits(max_concurrency=1)})
        await broker.enqueue_many([message("contract.single", n) for n in range(4)])
        await broker.enqueue(message("contract.free"))
        first = await broker.reserve(10, 1.0)
        assert sorted(m.name for m in first) == ["contract.free", "contract.single"], first
        running = next(m for m in first if m.name == "contract.single")
        await broker.ack(next(m for m in first if m.name == "contract.free"))
        assert await broker.reserve(10, 0.1) == [], "one runs: the others wait"
        await broker.ack(running)
        [second] = await broker.reserve(10, 2.0)
        assert second.name == "contract.single" and second.id != running.id
        await broker.requeue(second, second.next_attempt(clock.time() + 3600))
        [third] = await broker.reserve(10, 2.0)
        assert third.name == "contract.single" and third.id != second.id
        await broker.release([third])
        [again] = await broker.reserve(10, 2.0)
        assert again.name == "contract.single"
        await broker.dead_letter(again, "cannot run")
        [fourth] = await broker.reserve(10, 2.0)
        assert fourth.name == "contract.single"
        assert await broker.reserve(10, 0.1) == [], "one at a time"
        await broker.ack(fourth)
        clock.advance(3600)
        [retry] = await _drain(broker, 1)
        assert (retry.id, retry.attempt) == (second.id, 1)

    async def test_an_expired_lease_frees_a_concurrency_place(
        self, broker: Broker, clock: ManualClock
    ) -> None:
        """A worker that dies holding a limited task's message frees its place when the
        lease expires, as the message comes back."""
        if not isinstance(broker, LimitedTasks) or not broker.lease_seconds:
            pytest.skip("not a LimitedTasks broker with leases")
        _check_clock(broker, clock)
        broker.limit({"contract.single": TaskLimits(max_concurrency=1)})
        await broker.enqueue_many([message("contract.single", n) for n in range(2)])
        assert len(await broker.reserve(10, 1.0)) == 1  # its worker dies: never settled
        assert await broker.reserve(10, 0.1) == []
        clock.advance(broker.lease_seconds + 1)
        [got] = await broker.reserve(10, 2.0)
        assert got.name == "contract.single"
        assert await broker.reserve(10, 0.1) == [], "still one at a time"
        await broker.ack(got)
        [other] = await _drain(broker, 1)
        assert other.id != got.id

    async def test_a_worker_directory_keeps_heartbeats(self, broker: Broker) -> None:
        if not isinstance(broker, WorkerDirectory):
            pytest.skip("not a WorkerDirectory")
        worker_id = f"contract-{new_task_id()}"
        await broker.announce({"id": worker_id, "host": "h", "pid": 1}, 15.0)
        assert worker_id in {w.get("id") for w in await broker.workers()}
        await broker.retire(worker_id)
        assert worker_id not in {w.get("id") for w in await broker.workers()}
        depths = await broker.queue_depths()
        assert depths and all(isinstance(n, int) for n in depths.values()), depths


def _record(
    task_id: str, status: TaskStatus, submitted: float, task_name: str = "job"
) -> TaskResult:
    """A record submitted at ``submitted`` (Unix seconds)."""
    complete = status in (TaskStatus.SUCCESS, TaskStatus.FAILED)
    return TaskResult(
        task_id,
        status,
        task_name=task_name,
        submitted_at=submitted,
        finished_at=time.time() if complete else None,
        error="RuntimeError: no" if status is TaskStatus.FAILED else None,
    )


def _result(task_id: str, status: TaskStatus, value: Any = None) -> TaskResult:
    now = datetime.now(UTC)
    return TaskResult(
        task_id,
        status,
        task_name="job",
        result=value,
        submitted_at=now,
        started_at=now,
        finished_at=now
        if status in (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED)
        else None,
    )


class ResultBackendContract:
    """Inherit and provide an async ``backend`` fixture yielding a connected backend (and,
    for a backend that talks to a server, ``unreachable_backend``: see the module docs)."""

    @pytest.fixture
    def unreachable_backend(self) -> ResultBackend | None:
        """Override with a backend, not connected, configured for a server that does not
        answer (a closed port), with :data:`SECRET` as its password and short timeouts and
        retries. ``None``, the default, skips
        :meth:`test_an_unreachable_server_raises_backend_error`."""
        return None

    async def test_an_unreachable_server_raises_backend_error(
        self, unreachable_backend: ResultBackend | None
    ) -> None:
        backend = unreachable_backend
        if backend is None:
            pytest.skip("no unreachable_backend fixture: this backend has no server to lose")
        task_id = new_task_id()
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "connect": backend.connect,
            "store": lambda: backend.store(task_id, _result(task_id, TaskStatus.PENDING)),
            "store (complete)": lambda: backend.store(
                task_id, _result(task_id, TaskStatus.SUCCESS, 1)
            ),
            "store_many": lambda: store_many(backend, [_result(task_id, TaskStatus.FAILED)]),
            "get": lambda: backend.get(task_id),
            "wait_for": lambda: backend.wait_for(task_id, None),
            "list": backend.list,
        }
        if isinstance(backend, EventSource):
            source = backend

            async def subscribe() -> None:
                async with source.subscribe_events():
                    pass

            calls["subscribe_events"] = subscribe
        if isinstance(backend, ResultPages):
            calls["list_page"] = backend.list_page
        if isinstance(backend, ResultCounts):
            counting = backend
            calls["counts"] = lambda: counting.counts(5)
        try:
            for name, call in calls.items():
                await _fails_with(BackendError, name, call)
        finally:
            await backend.close()  # harmless, whatever failed

    # -- declared capabilities -------------------------------------------------------------

    async def test_declares_whether_store_sends_when_called(self, backend: ResultBackend) -> None:
        declared = getattr(type(backend), "sends_when_called", None)
        assert isinstance(declared, bool), (
            "declare sends_when_called: ClassVar[bool] on the backend's class "
            "(BaseResultBackend says False)"
        )

    async def test_a_store_that_sends_when_called_has_started(self, backend: ResultBackend) -> None:
        if not backend.sends_when_called:
            pytest.skip("store does not send when called (sends_when_called is False)")
        task_id = new_task_id()
        stored = backend.store(task_id, _result(task_id, TaskStatus.SUCCESS, 3))
        try:
            assert not inspect.iscoroutine(stored), (
                "sends_when_called is True but store returned a coroutine, which has not "
                "started: return an awaitable of a write already sent, or declare False"
            )
            # Never awaited here, the write must land all the same.
            deadline = time.monotonic() + 5.0
            got = await backend.get(task_id)
            while got is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                got = await backend.get(task_id)
            assert got is not None and got.status is TaskStatus.SUCCESS, (
                "sends_when_called is True but the record never lands unless store's "
                "awaitable is awaited"
            )
        finally:
            await stored

    async def test_a_batch_store_stores_every_record(self, backend: ResultBackend) -> None:
        if not isinstance(backend, BatchStore):
            pytest.skip("not a BatchStore")
        ids = [new_task_id() for _ in range(3)]
        await backend.store_many([_result(i, TaskStatus.SUCCESS, n) for n, i in enumerate(ids)])
        got = [await backend.get(i) for i in ids]
        assert [r.result if r is not None else None for r in got] == [0, 1, 2]

    async def test_known_tasks_expects_only_what_it_will_see(self, backend: ResultBackend) -> None:
        if not isinstance(backend, KnownTasks):
            pytest.skip("not a KnownTasks")
        assert backend.expects(new_task_id()) is False, "expects() an id never stored"
        task_id = new_task_id()
        await backend.store(task_id, _result(task_id, TaskStatus.PENDING))
        expected = backend.expects(task_id)
        assert isinstance(expected, bool)
        if expected:  # the wait goes straight to wait_for: it must see the completion
            waiter = asyncio.create_task(backend.wait_for(task_id, 10.0))
            await asyncio.sleep(0)
            await backend.store(task_id, _result(task_id, TaskStatus.SUCCESS, 5))
            assert (await asyncio.wait_for(waiter, 5.0)).result == 5

    async def test_an_event_source_streams_stored_changes(self, backend: ResultBackend) -> None:
        if not isinstance(backend, EventSource):
            pytest.skip("not an EventSource")
        task_id = new_task_id()
        async with backend.subscribe_events() as events:
            await backend.store(task_id, _result(task_id, TaskStatus.SUCCESS, 1))
            async with asyncio.timeout(5.0):
                async for event in events:
                    if event.task_id == task_id:
                        break

    async def test_pages_give_every_record_once_while_records_arrive(
        self, backend: ResultBackend
    ) -> None:
        if not isinstance(backend, ResultPages):
            pytest.skip("not a ResultPages")
        base = time.time() - 1000.0
        # 30 records, three of them sharing each submit time (submit_many's batches do).
        there = [new_task_id() for _ in range(30)]
        for n, task_id in enumerate(there):
            await backend.store(task_id, _record(task_id, TaskStatus.SUCCESS, base + n // 3))
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page, cursor = await backend.list_page(limit=4, cursor=cursor)
            seen += [r.task_id for r in page if r.task_id in there]
            pages += 1
            # Newer records and updates arrive between pages; the walk is unaffected.
            newer = new_task_id()
            await backend.store(newer, _record(newer, TaskStatus.PENDING, time.time()))
            if seen:  # and an update of a record already seen (its place is unchanged)
                place = base + there.index(seen[-1]) // 3
                await backend.store(seen[-1], _record(seen[-1], TaskStatus.SUCCESS, place))
            if cursor is None:
                break
            assert pages < 100, "the cursor never reached the end"
        assert sorted(seen) == sorted(there), "a record missed or given twice"
        places = [there.index(task_id) // 3 for task_id in seen]
        assert places == sorted(places, reverse=True), "not newest first"

    async def test_pages_filter_by_status_and_task(self, backend: ResultBackend) -> None:
        if not isinstance(backend, ResultPages):
            pytest.skip("not a ResultPages")
        now = time.time()
        kinds = {}
        for n in range(12):
            task_id = new_task_id()
            status = (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.RUNNING)[n % 3]
            name = "left" if n % 2 else "right"
            await backend.store(task_id, _record(task_id, TaskStatus.PENDING, now, name))
            await backend.store(task_id, _record(task_id, status, now, name))
            kinds[task_id] = (status, name)

        async def walk(**filters: Any) -> set[str]:
            found: list[str] = []
            cursor = None
            while True:
                page, cursor = await backend.list_page(limit=2, cursor=cursor, **filters)
                found += [r.task_id for r in page]
                if cursor is None:
                    return set(found)

        for status in (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.RUNNING):
            want = {i for i, k in kinds.items() if k[0] is status}
            assert (await walk(status=status)) & set(kinds) == want, status
        assert (await walk(status=TaskStatus.PENDING)) & set(kinds) == set()
        assert (await walk(task_name="left")) == {i for i, k in kinds.items() if k[1] == "left"}
        assert (await walk(task_name="left", status=TaskStatus.FAILED)) == {
            i for i, k in kinds.items() if k == (TaskStatus.FAILED, "left")
        }

    async def test_list_by_offset_is_a_slice_of_the_pages(self, backend: ResultBackend) -> None:
        if not isinstance(backend, ResultPages):
            pytest.skip("not a ResultPages")
        name = f"offset-{new_task_id()[-8:]}"
        base = time.time() - 500.0
        ids = [new_task_id() for _ in range(23)]
        for n, task_id in enumerate(ids):
            await backend.store(task_id, _record(task_id, TaskStatus.SUCCESS, base + n, name))
        newest_first = ids[::-1]
        for offset, limit in ((0, 5), (5, 5), (20, 10), (23, 5), (0, 100)):
            listed = await backend.list(task_name=name, limit=limit, offset=offset)
            assert [r.task_id for r in listed] == newest_first[offset : offset + limit]

    async def test_a_cursor_it_did_not_make_is_a_value_error(self, backend: ResultBackend) -> None:
        if not isinstance(backend, ResultPages):
            pytest.skip("not a ResultPages")
        for cursor in ["", "x", "!!!", "a" * 100_000, "aw", "bgo1MA", "awpuYW4Kaw", "\x00"]:
            with pytest.raises(ValueError, match="cursor"):
                await backend.list_page(cursor=cursor)

    async def test_counts_count_each_completion_and_retry_once(
        self, backend: ResultBackend
    ) -> None:
        if not isinstance(backend, ResultCounts):
            pytest.skip("not a ResultCounts")
        before = (await backend.counts(2))["totals"]
        now = time.time()
        for n in range(7):
            task_id = new_task_id()
            await backend.store(task_id, _record(task_id, TaskStatus.PENDING, now))
            await backend.store(task_id, _record(task_id, TaskStatus.RUNNING, now))
            if n % 3 == 0:  # retried once, then the same outcome as the others
                await backend.store(task_id, _record(task_id, TaskStatus.RETRYING, now))
                await backend.store(task_id, _record(task_id, TaskStatus.RUNNING, now))
            outcome = TaskStatus.FAILED if n % 2 else TaskStatus.SUCCESS
            await backend.store(task_id, _record(task_id, outcome, now))
            await backend.store(task_id, _record(task_id, outcome, now))  # sent again
        waiting = new_task_id()
        await backend.store(waiting, _record(waiting, TaskStatus.PENDING, now))
        counts = await backend.counts(2)
        totals = counts["totals"]
        assert totals["success"] - before["success"] == 4
        assert totals["failed"] - before["failed"] == 3
        assert totals["retries"] - before["retries"] == 3
        assert totals["pending"] - before["pending"] == 1
        assert len(counts["per_minute"]) == 2
        minute = int(time.time()) // 60
        assert counts["per_minute"][-1]["minute"] // 60 in {minute, minute - 1}
        assert sum(m["success"] + m["failed"] for m in counts["per_minute"]) >= 7

    async def test_unknown_id_is_none(self, backend: ResultBackend) -> None:
        assert await backend.get(new_task_id()) is None

    async def test_store_then_get_returns_latest(self, backend: ResultBackend) -> None:
        task_id = new_task_id()
        await backend.store(task_id, _result(task_id, TaskStatus.PENDING))
        await backend.store(task_id, _result(task_id, TaskStatus.SUCCESS, {"n": [1, 2]}))
        got = await backend.get(task_id)
        assert got is not None and got.status is TaskStatus.SUCCESS
        assert got.result == {"n": [1, 2]} and got.task_name == "job"

    async def test_wait_for_is_woken_by_completion(self, backend: ResultBackend) -> None:
        task_id = new_task_id()
        await backend.store(task_id, _result(task_id, TaskStatus.PENDING))
        waiter = asyncio.create_task(backend.wait_for(task_id, 10.0))
        await asyncio.sleep(0.05)
        await backend.store(task_id, _result(task_id, TaskStatus.RUNNING))
        await asyncio.sleep(0.05)
        assert not waiter.done(), "a RUNNING record must not end the wait"
        await backend.store(task_id, _result(task_id, TaskStatus.SUCCESS, 7))
        got = await asyncio.wait_for(waiter, 5.0)
        assert got.status is TaskStatus.SUCCESS and got.result == 7

    async def test_wait_for_returns_at_once_when_complete(self, backend: ResultBackend) -> None:
        task_id = new_task_id()
        await backend.store(task_id, _result(task_id, TaskStatus.FAILED))
        got = await asyncio.wait_for(backend.wait_for(task_id, None), 1.0)
        assert got.status is TaskStatus.FAILED

    async def test_cancelled_is_complete_wakes_waiters_and_is_listed(
        self, backend: ResultBackend
    ) -> None:
        task_id = new_task_id()
        await backend.store(task_id, _result(task_id, TaskStatus.RUNNING))
        waiter = asyncio.create_task(backend.wait_for(task_id, 10.0))
        await asyncio.sleep(0.05)
        cancelled = TaskResult.cancelled(
            _result(task_id, TaskStatus.RUNNING), "by the contract", finished=time.time()
        )
        await backend.store(task_id, cancelled)
        got = await asyncio.wait_for(waiter, 5.0)
        assert got.status is TaskStatus.CANCELLED and got.is_complete
        assert got.error == "TaskCancelled: by the contract"
        stored = await backend.get(task_id)
        assert stored is not None and stored.status is TaskStatus.CANCELLED
        listed = await backend.list(status=TaskStatus.CANCELLED, limit=1000)
        assert task_id in {r.task_id for r in listed}
        failed = await backend.list(status=TaskStatus.FAILED, limit=1000)
        assert task_id not in {r.task_id for r in failed}, "CANCELLED is not FAILED"
        named = await backend.list(status=TaskStatus.CANCELLED, task_name="job", limit=1000)
        assert task_id in {r.task_id for r in named}

    async def test_wait_for_times_out(self, backend: ResultBackend) -> None:
        task_id = new_task_id()
        await backend.store(task_id, _result(task_id, TaskStatus.RUNNING))
        with pytest.raises(TimeoutError):
            await backend.wait_for(task_id, 0.1)

    async def test_unencodable_result_is_rejected(self, backend: ResultBackend) -> None:
        task_id = new_task_id()
        with pytest.raises(SerializationError):
            await backend.store(task_id, _result(task_id, TaskStatus.SUCCESS, object()))

    async def test_list_filters_by_status_and_name(self, backend: ResultBackend) -> None:
        done, failed = new_task_id(), new_task_id()
        await backend.store(done, _result(done, TaskStatus.SUCCESS, 1))
        await backend.store(failed, _result(failed, TaskStatus.FAILED))
        ids = {r.task_id for r in await backend.list(status=TaskStatus.FAILED, limit=1000)}
        assert failed in ids and done not in ids
        named = await backend.list(task_name="job", limit=1000)
        assert {done, failed} <= {r.task_id for r in named}


def schedule(
    task_name: str = "job",
    every: float = 60.0,
    *args: Any,
    next_run_at: datetime | None = None,
    **kwargs: Any,
) -> ScheduledTask:
    """A fresh interval schedule for tests, due at ``next_run_at`` (default: in a minute)."""
    now = datetime.now(UTC)
    return ScheduledTask(
        id=new_task_id(),
        task_name=task_name,
        schedule_type=ScheduleType.INTERVAL,
        schedule=repr(float(every)),
        args=args,
        kwargs=kwargs,
        next_run_at=next_run_at or now + timedelta(seconds=every),
        created_at=now,
        updated_at=now,
    )


class ScheduleStoreContract:
    """Inherit and provide an async ``store`` fixture yielding a connected, empty store,
    and a ``store_factory`` fixture: a callable returning another, unconnected store
    object on the same database (what a second scheduler process would open)."""

    async def test_add_then_get_round_trips_every_field(self, store: ScheduleStore) -> None:
        due = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
        sent = schedule("report", 2.5, "é", [1, None], next_run_at=due, to={"x": [True]})
        sent.description = "quarterly <report>"
        sent.priority = -7
        sent.last_run_at = due - timedelta(microseconds=1)
        stored = await store.add(sent)
        assert stored.id == sent.id
        got = await store.get(sent.id)
        assert got is not None
        assert got.to_dict() == stored.to_dict()
        assert got.args == ("é", [1, None]) and got.kwargs == {"to": {"x": [True]}}
        assert got.next_run_at == due and got.next_run_at.tzinfo is not None
        assert got.last_run_at == due - timedelta(microseconds=1)
        assert (got.description, got.priority, got.schedule_type) == (
            "quarterly <report>",
            -7,
            ScheduleType.INTERVAL,
        )

    async def test_get_unknown_is_none_and_delete_says_so(self, store: ScheduleStore) -> None:
        assert await store.get("no-such-id") is None
        assert await store.delete("no-such-id") is False
        added = await store.add(schedule())
        assert await store.delete(added.id) is True
        assert await store.get(added.id) is None

    async def test_same_definition_gives_the_existing_schedule(self, store: ScheduleStore) -> None:
        first = await store.add(schedule("job", 30.0, 1, key="v"))
        again = schedule("job", 30.0, 1, key="v")
        assert again.id != first.id
        assert (await store.add(again)).id == first.id
        other_args = await store.add(schedule("job", 30.0, 2, key="v"))
        assert other_args.id != first.id
        assert len(await store.list_all()) == 2

    async def test_concurrent_adds_from_two_connections_make_one(
        self, store: ScheduleStore, store_factory: Any
    ) -> None:
        other: ScheduleStore = store_factory()
        await other.connect()
        try:
            results = await asyncio.gather(
                *(s.add(schedule("race", 10.0, 42)) for s in (store, other, store, other))
            )
        finally:
            await other.close()
        assert len({r.id for r in results}) == 1
        assert len(await store.list_all()) == 1

    async def test_replace_is_a_compare_and_set_on_revision(self, store: ScheduleStore) -> None:
        added = await store.add(schedule())
        base = added.revision
        mine = await store.get(added.id)
        theirs = await store.get(added.id)
        assert mine is not None and theirs is not None
        mine.run_count = 1
        theirs.run_count = 100
        assert await store.replace(mine, base) is True
        assert mine.revision == base + 1
        assert await store.replace(theirs, base) is False  # stale: someone wrote in between
        got = await store.get(added.id)
        assert got is not None and got.run_count == 1 and got.revision == base + 1

    async def test_exactly_one_of_many_concurrent_claims_wins(
        self, store: ScheduleStore, store_factory: Any
    ) -> None:
        added = await store.add(schedule())
        others = [store_factory() for _ in range(3)]
        for other in others:
            await other.connect()
        try:
            copies = [await s.get(added.id) for s in (store, *others)]
            outcomes = await asyncio.gather(
                *(
                    s.replace(c, added.revision)
                    for s, c in zip((store, *others), copies, strict=True)
                    if c
                )
            )
        finally:
            for other in others:
                await other.close()
        assert sorted(outcomes) == [False, False, False, True]

    async def test_due_lists_enabled_schedules_at_or_before_now_earliest_first(
        self, store: ScheduleStore
    ) -> None:
        now = datetime.now(UTC)
        late = await store.add(schedule("a", next_run_at=now - timedelta(seconds=5)))
        exact = await store.add(schedule("b", next_run_at=now))
        await store.add(schedule("c", next_run_at=now + timedelta(microseconds=1)))
        off = schedule("d", next_run_at=now - timedelta(seconds=9))
        off.enabled = False
        await store.add(off)
        assert [s.id for s in await store.due(now, 10)] == [late.id, exact.id]
        assert [s.id for s in await store.due(now, 1)] == [late.id]
        assert await store.next_run_at() == now - timedelta(seconds=5)

    async def test_next_run_at_ignores_disabled_and_finished(self, store: ScheduleStore) -> None:
        assert await store.next_run_at() is None
        finished = schedule()
        finished.next_run_at = None
        await store.add(finished)
        assert await store.next_run_at() is None
        soon = datetime.now(UTC) + timedelta(hours=1)
        added = await store.add(schedule("x", next_run_at=soon))
        assert await store.next_run_at() == soon
        added.enabled = False
        assert await store.replace(added, added.revision)
        assert await store.next_run_at() is None

    async def test_list_all_and_clear(self, store: ScheduleStore) -> None:
        made = [await store.add(schedule(f"t{i}")) for i in range(3)]
        made[1].enabled = False
        assert await store.replace(made[1], made[1].revision)
        assert {s.id for s in await store.list_all()} == {m.id for m in made}
        assert {s.id for s in await store.list_all(enabled_only=True)} == {made[0].id, made[2].id}
        assert await store.clear() == 3
        assert await store.list_all() == []

    async def test_schedules_outlive_the_connection(
        self, store: ScheduleStore, store_factory: Any
    ) -> None:
        added = await store.add(schedule("kept"))
        later: ScheduleStore = store_factory()
        await asyncio.gather(later.connect(), later.connect())  # concurrent: one connection
        await later.connect()  # connecting again is harmless; the schema is made once
        try:
            got = await later.get(added.id)
        finally:
            await later.close()
            await later.close()  # closing twice is harmless too
        assert got is not None and got.to_dict() == added.to_dict()

    async def test_ids_are_compared_exactly(self, store: ScheduleStore) -> None:
        first = schedule("a")
        first.id = "Report"
        await store.add(first)
        assert await store.get("REPORT") is None
        assert await store.get("Report ") is None
        second = schedule("b")
        second.id = "report"
        assert (await store.add(second)).id == "report"
        assert await store.delete("REPORT") is False
        assert {s.id for s in await store.list_all()} == {"Report", "report"}
