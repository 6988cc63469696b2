"""The Redis broker: durable, leased, prioritised delivery shared by many workers.

Layout (all keys under one hash-tagged prefix, see :class:`~flowrra_redis.connection.Keys`):

* ``queue``: a ZSET whose members all score 0. A member is ``<priority key><sequence>|<JSON
  message>``: the priority key orders any Python int as text (lower first), the 16-digit
  sequence keeps submit order within a priority, so ``ZPOPMIN`` gives exactly the in-memory
  broker's order.
* ``delayed``: messages with a future due time (retries, ``delay=``/``eta=``), scored by it;
  moved into ``queue`` by the next reserve after they are due, so a retry's due time lives in
  Redis and survives every worker restart.
* ``leased``: reserved messages scored by their lease expiry. ``ack`` removes one; a worker
  extends its leases while tasks run; any reserve puts expired ones back in ``queue``, which
  is how the tasks of a worker that died (SIGKILL, lost machine) are delivered again. Such
  a member is marked (:meth:`RedisBroker.redelivered`): a worker acks it without running
  it when the task's record is already complete.
* ``wake``: a short list a worker with nothing to do blocks on (``BLPOP``); enqueues push a
  token, so an idle worker reacts at once instead of polling.
* ``dead``: dead letters with their reason.
* ``unique:<key>``: the id of the task holding a unique key, with an expiry
  (:mod:`flowrra.unique`; taken by ENQUEUE_UNIQUE with the message it queues).
* ``cancelled`` and the ``cancels`` channel (:class:`~flowrra.protocols.Cancellation`):
  ``cancel`` adds a task's id to the ZSET and publishes it; RESERVE returns a message of a
  task in the set marked with a leading ``!`` (and takes the id out), and the worker
  settles it CANCELLED without running it. A message is not looked up by id when it is
  cancelled (members are ordered by priority, not indexed by id): it stays in its queue,
  counted in the depths, until a worker reserves it. While the set is empty a RESERVE
  pays one EXISTS for it; while it holds ids, one ZREM per message it returns.

Named queues (:mod:`flowrra.queues`): the keys above are the default queue's; a queue
named ``emails`` has its own ``queue:emails``, ``delayed:emails``, ``leased:emails`` and
``wake:emails``, and ``queues`` lists the named queues ever written to. A worker taking
from one queue runs RESERVE on that queue's keys; from several, RESERVE_QUEUES over all of
theirs, and it blocks on all their wake lists at once.

Task limits (:mod:`flowrra.limits`): after :meth:`RedisBroker.limit`, a worker reserves
with LIMITED_RESERVE or LIMITED_RESERVE_QUEUES (the same scripts, wrapped: see
:mod:`flowrra_redis.scripts`) and frees a concurrency-limited task's place when it
settles one of its runs; ``started:<task>``, ``running:<task>`` and
``deferred:<queue>:<task>`` keep their state. Without limits nothing of this runs.

Nothing read from Redis is unpickled: messages are JSON, and a member that does not decode
is dead-lettered with the reason (the worker records FAILED where the id can be read).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from flowrra.awaitables import DONE
from flowrra.brokers.base import BaseBroker
from flowrra.clock import SYSTEM_CLOCK, Clock
from flowrra.config import BrokerConfig
from flowrra.exceptions import BrokerError
from flowrra.limits import TaskLimits
from flowrra.queues import QueueSelection
from flowrra.task import DEFAULT_QUEUE, TaskMessage
from flowrra.unique import UNIQUE_TTL, check_unique_ttl, hold_seconds
from flowrra_redis import scripts
from flowrra_redis.backend import RedisBackend
from flowrra_redis.codec import encode_message, number_text
from flowrra_redis.connection import (
    QueueKeys,
    RedisEndpoint,
    boundary,
    message_kind,
    next_message,
    retrieved,
    subscribe,
    text,
)
from flowrra_redis.loops import LoopState
from flowrra_redis.pipeline import AutoPipeline, Script
from flowrra_redis.submits import RecordedEnqueue

__all__ = ["ACK_DELAY", "DEAD_LETTER_MAX_BYTES", "ENQUEUE_CHUNK", "RedisBroker", "priority_key"]

logger = logging.getLogger("flowrra.redis.broker")

_SCRIPTS = {
    name: Script(getattr(scripts, name))
    for name in (
        "ENQUEUE",
        "RESERVE",
        "RESERVE_QUEUES",
        "EXTEND",
        "RELEASE",
        "DEAD_LETTER",
        "DEAD_REQUEUE",
        "PRIORITIES",
        "ENQUEUE_UNIQUE",
        "RELEASE_UNIQUE",
        "CANCEL",
        "LIMITED_RESERVE",
        "LIMITED_RESERVE_QUEUES",
        "LIMITED_SETTLE",
    )
}
#: Seconds a cancelled id is kept in ``cancelled`` for RESERVE to find its messages.
CANCEL_WINDOW = 86_400.0
#: Seconds before the subscription was lost from which ``watch_cancels`` re-reads the
#: cancelled ids when it is back (the cancelling process's clock may run behind).
CANCEL_CLOCK_SLACK = 60.0
#: Most ids ``watch_cancels`` re-reads then (a worker remembers 10,000).
CANCELS_REREAD = 10_000
#: Distinct priorities ``queue_stats`` counts per queue (the rest are left out).
MAX_PRIORITIES_LISTED = 100

#: Seconds an ack waits for a reserve to carry it before it is sent on its own.
ACK_DELAY = 0.1
#: Messages per ENQUEUE call of ``enqueue_many`` (a larger batch is several calls: one of
#: a million would run for seconds, past the socket timeout).
ENQUEUE_CHUNK = 10_000
#: Bytes of a dead-lettered message kept by default (``dead_letter_max_bytes``).
DEAD_LETTER_MAX_BYTES = 64 * 1024
#: Characters of a dead letter's reason kept.
_REASON_LIMIT = 4096

#: The byte RESERVE puts before a member whose task was cancelled (``!``).
_CANCELLED = 0x21
#: The byte RESERVE puts before a member's ``|`` when its lease expired (a redelivery).
_MARK = ord("~")

_COMPLEMENT = str.maketrans("0123456789abcdef", "fedcba9876543210")


@functools.lru_cache(maxsize=1024)
def priority_key(priority: int) -> str:
    """``priority`` as text that sorts like the number, for any Python int.

    Non-negative: ``p`` + 4 hex digits of length + hex digits. Negative: ``n`` + the
    length and digits complemented, so a larger magnitude sorts first. ``n`` < ``p``.
    """
    if priority >= 0:
        digits = format(priority, "x")
        return f"p{len(digits):04x}{digits}"
    digits = format(-priority, "x")
    if len(digits) > 0xFFFF:
        raise ValueError("priority is too large to order")
    return f"n{0xFFFF - len(digits):04x}{digits.translate(_COMPLEMENT)}"


def _queued(place: int, message: TaskMessage) -> str:
    """A message as ENQUEUE takes it: its place in the call (which orders the messages
    of one call), then its body."""
    return f"{place:08x}|{encode_message(message)}"


def _log_release_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning(
            "could not release messages reserved while stopping (they return when their "
            "lease expires): %s",
            future.exception(),
        )


def _log_settle_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning(
            "could not free a concurrency-limited task's place (it frees itself when the "
            "run's lease expires): %s",
            future.exception(),
        )


class _BrokerLoop(LoopState):
    """The broker's state in one event loop: besides the client and pipeline, the
    blocking connection a worker waits for work on, and the acks not sent yet."""

    __slots__ = ("ack_timer", "acks", "blocking", "blocking_pipe", "queue_acks")

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None, client: aioredis.Redis, pipe: AutoPipeline
    ) -> None:
        super().__init__(loop, client, pipe)
        self.blocking: aioredis.Redis | None = None
        self.blocking_pipe: AutoPipeline | None = None
        #: Receipts of the default queue's messages to ack.
        self.acks: list[bytes] = []
        #: Those of other named queues', by queue.
        self.queue_acks: dict[str, list[bytes]] = {}
        self.ack_timer: asyncio.TimerHandle | None = None


class RedisBroker(RedisEndpoint[_BrokerLoop], BaseBroker):
    """A :class:`flowrra.protocols.Broker` (and :class:`~flowrra.protocols.WorkerDirectory`,
    :class:`~flowrra.protocols.Cancellation`) on Redis. Build it from a URL with
    ``Flowrra.from_urls(broker="redis://host:6379/0")`` or from a :class:`BrokerConfig`.

    ``lease_seconds``: how long a reservation lasts without renewal (the worker renews it
    every third of that while the task runs); a dead worker's tasks come back after it.
    ``clock``: where "now" is read for due times, lease expiries and heartbeats (the
    scripts take it from here, not from Redis's ``TIME``); every process sharing the
    queue must agree on it, so only tests pass another (:class:`flowrra.clock.ManualClock`).
    ``prefix``: key prefix (a Redis Cluster hash tag is added), also settable with
    ``?prefix=`` in the URL or ``BrokerConfig.queue_key``. ``retries``: how many times a
    command lost with its connection is sent again before the caller gets a BrokerError.
    ``busy_timeout``: seconds a command Redis answers "not now" (``LOADING`` after a
    restart, a failover's ``READONLY`` or ``MASTERDOWN``) is sent again before the caller
    gets a BrokerError. ``eviction_warning``: log a WARNING at ``connect`` when the server's
    ``maxmemory-policy`` evicts keys (queued tasks would vanish); ``False``, or
    ``?eviction_warning=off`` in the URL, turns it off. ``unique_ttl``: seconds a unique
    key lives after its task is due unless released (a :class:`~flowrra.protocols.UniqueJobs`;
    see :mod:`flowrra.unique`).

    Every public method raises :class:`~flowrra.exceptions.BrokerError` (naming the
    server, never the password) for whatever redis-py raises.
    """

    durable = True
    state_class = _BrokerLoop
    error_type = BrokerError

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str | None = None,
        lease_seconds: float = 30.0,
        max_connections: int = 50,
        socket_timeout: float = 5.0,
        retry_on_timeout: bool = True,
        retries: int = 3,
        dead_letter_limit: int = 10_000,
        dead_letter_max_bytes: int = DEAD_LETTER_MAX_BYTES,
        client: aioredis.Redis | None = None,
        eviction_warning: bool = True,
        busy_timeout: float = 30.0,
        clock: Clock = SYSTEM_CLOCK,
        unique_ttl: float = UNIQUE_TTL,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
        super().__init__(
            url,
            prefix=prefix,
            max_connections=max_connections,
            socket_timeout=socket_timeout,
            retry_on_timeout=retry_on_timeout,
            retries=retries,
            client=client,
            eviction_warning=eviction_warning,
            busy_timeout=busy_timeout,
        )
        self.lease_seconds: float | None = lease_seconds
        self.clock = clock
        #: Seconds a unique key lives after its task is due, unless released.
        self.unique_ttl = check_unique_ttl(unique_ttl)
        self.dead_letter_limit = dead_letter_limit
        #: Messages per ENQUEUE script call of :meth:`enqueue_many`.
        self.enqueue_chunk = ENQUEUE_CHUNK
        if dead_letter_max_bytes < 1:
            raise ValueError(f"dead_letter_max_bytes must be >= 1, got {dead_letter_max_bytes}")
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self._drained = False  # the last RESERVE left nothing queued or delayed
        self._depth = 0
        self._next_due: float | None = None
        self._queue_keys: dict[str, QueueKeys] = {}
        #: The queues ``reserve`` takes from (see :meth:`consume`), and their keys.
        self._selection = QueueSelection()
        self._consumed: list[QueueKeys] = [self.queue_keys(DEFAULT_QUEUE)]
        self._turn: tuple[int, int] = (0, 0)
        #: Named queues this process has written to (added to ``queues`` once).
        self._listed: set[str] = set()
        #: Who :meth:`watch_cancels` (a worker).
        self._cancel_watchers: list[Callable[[str], None]] = []
        #: Task limits (see :meth:`limit`): the scripts' arguments per limited task, and
        #: the tasks with a concurrency limit. Empty: no limits, nothing done for them.
        self._limit_args: list[Any] = []
        self._limited: dict[str, TaskLimits] = {}
        self._concurrency_limited: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: BrokerConfig) -> RedisBroker:
        return cls(
            config.url,
            prefix=config.queue_key,
            max_connections=config.max_connections,
            socket_timeout=config.socket_timeout,
            retry_on_timeout=config.retry_on_timeout,
        )

    @boundary("cannot connect the broker")
    async def connect(self) -> None:
        await self.pipe.execute("PING")
        if self.eviction_warning:
            await self._check_eviction_policy()

    async def _close_state(self, state: _BrokerLoop) -> None:
        self._send_acks(state)
        if state.blocking_pipe is not None:
            # No drain: a BLPOP may hold the connection for seconds, and the RESERVE behind
            # it must not run now (Redis drops it with the connection).
            await state.blocking_pipe.close(drain=False)
            state.blocking_pipe = None
        if state.blocking is not None:
            await state.blocking.aclose()
            state.blocking = None
        await super()._close_state(state)

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self.pipe.run_script(_SCRIPTS[name], keys, args)

    # -- producing -----------------------------------------------------------------------

    def enqueue(self, message: TaskMessage) -> Awaitable[None]:
        """Send the message now (raising SerializationError if it cannot be encoded) and
        return an awaitable of Redis's reply (BrokerError if it was not stored: the
        awaitable is this method's error boundary, as nothing is sent before it)."""
        return self._enqueued(self._send_enqueue((message,)))

    def enqueue_many(self, messages: Sequence[TaskMessage]) -> Awaitable[None]:
        """Send the messages now, in script calls of up to :attr:`enqueue_chunk` each (all
        or none per call), so no one call runs long enough for the socket timeout to give
        up on it; returns an awaitable of the replies, like :meth:`enqueue`. Every message
        is encoded before the first call is sent: one that cannot be encoded raises
        SerializationError with nothing queued. If a call fails, the BrokerError says how
        many messages Redis confirmed."""
        if not messages:
            return DONE
        chunk = self.enqueue_chunk
        if len(messages) <= chunk:
            return self._enqueued(self._send_enqueue(messages))
        chunks = [messages[i : i + chunk] for i in range(0, len(messages), chunk)]
        calls = [self._enqueue_call(part) for part in chunks]
        replies = [
            self._send_call(call)
            if all(m.queue == DEFAULT_QUEUE for m in part)
            else self._send_to_queues(part)
            for call, part in zip(calls, chunks, strict=True)
        ]
        return self._all_enqueued(replies, [len(call) // 4 for call in calls])

    def _send_enqueue(self, messages: Sequence[TaskMessage]) -> asyncio.Future[Any]:
        # One message (every plain submit) is checked without a generator.
        if messages[0].queue != DEFAULT_QUEUE or (
            len(messages) > 1 and any(m.queue != DEFAULT_QUEUE for m in messages)
        ):
            return self._send_to_queues(messages)
        return self._send_call(self._enqueue_call(messages))

    def _send_to_queues(self, messages: Sequence[TaskMessage]) -> asyncio.Future[Any]:
        """ENQUEUE calls for messages of named queues, one call per queue; the future
        gives the depth the last call saw (all or none per queue)."""
        by_queue: dict[str, list[TaskMessage]] = {}
        for message in messages:
            by_queue.setdefault(message.queue, []).append(message)
        calls = [(queue, self._enqueue_call(batch)) for queue, batch in by_queue.items()]
        for queue, _ in calls:
            self._list_queue(queue)
        replies = [self._send_call(args, queue) for queue, args in calls]
        if len(replies) == 1:
            return replies[0]
        return asyncio.ensure_future(_last_of(replies))

    def _list_queue(self, queue: str) -> None:
        """Add a named queue to ``queues`` (once per process: monitors read it)."""
        if queue != DEFAULT_QUEUE and queue not in self._listed:
            self._listed.add(queue)
            self.pipe.send("SADD", self.keys.queues, queue, what="list a queue")

    def queue_keys(self, queue: str) -> QueueKeys:
        """The keys of ``queue`` (see :meth:`flowrra_redis.connection.Keys.queue_keys`)."""
        keys = self._queue_keys.get(queue)
        if keys is None:
            keys = self._queue_keys[queue] = self.keys.queue_keys(queue)
        return keys

    def _enqueue_call(
        self, messages: Sequence[TaskMessage], places: Sequence[int] | None = None
    ) -> list[Any]:
        """ENQUEUE's arguments for ``messages`` (raises SerializationError). ``places``:
        each message's place in the caller's batch, when not its place in ``messages``
        (a sharded broker spreads one batch over several calls: :mod:`flowrra_redis.shards`)."""
        args: list[Any] = [self.clock.time(), "", self._dedupe_window()]
        pairs = enumerate(messages) if places is None else zip(places, messages, strict=True)
        for place, message in pairs:
            eta = message.eta
            args += [
                f"{message.id}:{message.attempt}",
                priority_key(message.priority),
                "" if eta is None else repr(eta),
                _queued(place, message),
            ]
        return args

    def _send_call(self, args: list[Any], queue: str = DEFAULT_QUEUE) -> asyncio.Future[Any]:
        k = self.keys
        if queue == DEFAULT_QUEUE:
            keys = (k.queue, k.sequence, k.wake, k.delayed, k.leased, k.sent)
        else:
            q = self.queue_keys(queue)
            keys = (q.queue, k.sequence, q.wake, q.delayed, q.leased, k.sent)
        reply = self.pipe.request_script(_SCRIPTS["ENQUEUE"], keys, args)
        reply.add_done_callback(retrieved)  # a caller may give up on it (submit)
        return reply

    async def _all_enqueued(self, replies: list[asyncio.Future[Any]], sizes: list[int]) -> None:
        confirmed, failure = 0, None
        for reply, size in zip(replies, sizes, strict=True):
            try:
                self._depth = int(await reply)
                confirmed += size
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            with self.translating(
                f"cannot enqueue all of {sum(sizes):,} messages ({confirmed:,} confirmed "
                f"queued, in calls of up to {self.enqueue_chunk:,}; the others may or may not be)"
            ):
                raise failure

    def _dedupe_window(self) -> float:
        """Seconds ENQUEUE remembers a message id: longer than any resend of it can come
        (each of ``retries`` resends waits at most ``socket_timeout`` for a reply and a
        second of backoff), and at least a minute."""
        return max(60.0, 2 * (self.retries + 1) * ((self.socket_timeout or 5.0) + 1.0))

    async def _enqueued(self, reply: asyncio.Future[Any]) -> None:
        with self.translating("cannot enqueue"):
            self._depth = int(await reply)

    def enqueue_with_records(self, backend: object) -> RecordedEnqueue | None:
        """A :class:`~flowrra.protocols.RecordedEnqueue`: for a
        :class:`~flowrra_redis.RedisBackend` on this broker's keyspace (the same server
        and database, or the same slot of one cluster: resolved, see
        :meth:`~flowrra_redis.connection.RedisEndpoint.server`), a call that stores its
        PENDING records and queues their messages in one script, one round trip
        (:mod:`flowrra_redis.submits`); None for any other backend."""
        if not isinstance(backend, RedisBackend):
            return None
        if not self.server().same_keyspace(backend.server()):
            return None
        return RecordedEnqueue(self, backend)

    # -- unique jobs (flowrra.unique) -------------------------------------------------------

    @boundary("cannot enqueue")
    async def enqueue_unique(self, message: TaskMessage, key: str) -> str:
        """Queue ``message`` unless ``key`` is held, in one script (ENQUEUE_UNIQUE); the id
        of the task that holds the key after (``message.id`` if it was queued). Sent
        again after a lost reply, the call finds its own id and queues nothing twice.
        Raises SerializationError, with nothing sent, for arguments that cannot be
        encoded."""
        k = self.keys
        q = self.queue_keys(message.queue)
        now = self.clock.time()
        call = self._enqueue_call((message,))
        hold = max(1, round(hold_seconds(message, now, self.unique_ttl) * 1000))
        self._list_queue(message.queue)
        holder, depth = await self._run(
            "ENQUEUE_UNIQUE",
            [k.unique(key), q.queue, k.sequence, q.wake, q.delayed, q.leased, k.sent],
            [message.id, hold, *call],
        )
        if int(depth) >= 0:
            self._depth = int(depth)
        return text(holder)

    @boundary("cannot release a unique key")
    async def release_unique(self, key: str, task_id: str, keep_for: float) -> bool:
        """Compare and delete (RELEASE_UNIQUE): if ``key`` holds ``task_id``, delete it,
        or let it expire in ``keep_for`` seconds; True if it did."""
        keep = max(1, round(keep_for * 1000)) if keep_for > 0 else 0
        return bool(await self._run("RELEASE_UNIQUE", [self.keys.unique(key)], [task_id, keep]))

    @boundary("cannot read a unique key")
    async def unique_holder(self, key: str) -> str | None:
        """The id of the task holding ``key`` now, or ``None``."""
        holder = await self.pipe.execute("GET", self.keys.unique(key))
        return None if holder is None else text(holder)

    # -- consuming -----------------------------------------------------------------------

    @boundary("cannot reserve")
    async def reserve(self, max_messages: int, timeout: float) -> list[TaskMessage]:
        """Take up to ``max_messages`` due messages, waiting up to ``timeout`` seconds.

        With nothing due, the wait is a BLPOP on the wake list with a RESERVE pipelined
        behind it on the same connection: Redis runs the RESERVE as soon as a producer's
        token ends the BLPOP, so a woken worker gets its messages without another round
        trip."""
        deadline = time.monotonic() + timeout
        if self._drained and timeout >= 0.01:
            reply = None  # the last RESERVE emptied the queue: a producer's token will say
        else:
            script, keys, args, _ = self._reserve_call(max_messages)
            reply = await self._run(script, keys, args)
        while True:
            if reply is not None:
                taken = self._taken(reply)
                if taken:
                    return taken
            wait = deadline - time.monotonic()
            if wait <= 0:
                return []
            if self._next_due is not None:
                wait = min(wait, max(self._next_due - self.clock.time(), 0.0) + 0.001)
            reply = await self._wait_for_work(wait, max_messages)
            if reply is None or not reply[0]:
                # Timed out (a delayed message may be due now, and the pipelined RESERVE
                # used the time it was sent at; an expired lease comes back), or a token
                # another worker had emptied.
                script, keys, args, _ = self._reserve_call(max_messages)
                reply = await self._run(script, keys, args)

    def consume(self, selection: QueueSelection) -> None:
        """Reserve from these named queues from now on (see :mod:`flowrra.queues`; the
        ``others`` flag is not honoured: a Redis worker takes from the queues named)."""
        self._selection = selection
        self._consumed = [self.queue_keys(name) for name in selection.names]
        self._turn = (0, 0)
        self._drained = False
        for name in selection.names:
            if name != DEFAULT_QUEUE:
                self._listed.discard(name)  # listed again at the next chance
                self._list_queue(name)

    def _reserve_call(
        self, max_messages: int
    ) -> tuple[str, list[str], list[Any], list[tuple[str, list[bytes]]]]:
        """The script that reserves, its keys and arguments, and the acks it takes along
        (by queue: given back to :meth:`_defer_acks` if it is never sent)."""
        now = self.clock.time()
        assert self.lease_seconds is not None
        state = self._here()
        consumed = self._consumed
        if len(consumed) == 1:
            q = consumed[0]
            if q.name == DEFAULT_QUEUE:
                acks, state.acks = state.acks, []
            else:
                acks = state.queue_acks.pop(q.name, [])
            return (
                "RESERVE",
                [q.queue, q.delayed, q.leased, self.keys.sequence, self.keys.cancelled],
                [now, now + self.lease_seconds, max(0, max_messages), *acks],
                [(q.name, acks)],
            )
        keys = [self.keys.sequence]
        taken: list[tuple[str, list[bytes]]] = []
        for q in consumed:
            keys += (q.queue, q.delayed, q.leased)
            if q.name == DEFAULT_QUEUE:
                acks, state.acks = state.acks, []
            else:
                acks = state.queue_acks.pop(q.name, [])
            taken.append((q.name, acks))
        keys.append(self.keys.cancelled)
        selection = self._selection
        args: list[Any] = [
            now,
            now + self.lease_seconds,
            max(0, max_messages),
            "1" if selection.strict else "",
            *self._turn,
            *selection.weights,
            *(len(acks) for _, acks in taken),
        ]
        for _, acks in taken:
            args += acks
        return "RESERVE_QUEUES", keys, args, taken

    def _taken(self, reply: Any) -> list[TaskMessage]:
        """The messages of a reserve script's ``reply`` (the state it reports noted)."""
        return [
            self._decode(member) if member[0] != _CANCELLED else self._cancelled(member)
            for member in self._reserved(reply)
        ]

    def _reserved(self, reply: Any) -> list[bytes]:
        if len(reply) > 4:  # RESERVE_QUEUES: where the weighted turns stand
            reply, self._turn = reply[:4], (int(reply[4]), int(reply[5]))
        members, depth, next_due, expired = reply
        self._depth = int(depth)
        self._drained = self._depth == 0
        self._next_due = float(next_due) if next_due else None
        if expired:
            logger.warning("%d expired leases put back in the queue for redelivery", expired)
        return list(members)

    async def _wait_for_work(self, wait: float, max_messages: int) -> Any:
        """Block until a producer pushes a wake token, or ``wait`` seconds pass; returns the
        reply of the RESERVE pipelined behind the BLPOP (``None`` after a short sleep).
        The acks waiting go with that RESERVE; those made meanwhile go after
        :data:`ACK_DELAY`."""
        if wait < 0.01:
            await asyncio.sleep(wait)
            return None
        state = self._here()
        pipe = state.blocking_pipe
        if pipe is None:
            # Its own connection: BLPOP holds it, and the watchdog must outlast BLPOP's
            # timeout. Not retried here: the worker backs off and reserves again.
            state.blocking = self.new_client(
                max_connections=2, socket_timeout=(self.socket_timeout or 0) + 60.0
            )
            pipe = state.blocking_pipe = AutoPipeline(
                state.blocking, timeout=(self.socket_timeout or 0) + 60.0, retries=0
            )
        script, keys, args, taken = self._reserve_call(max_messages)
        # BLPOP takes a float timeout (seconds) since Redis 6.
        woken = pipe.request(("BLPOP", *(q.wake for q in self._consumed), min(wait, 30.0)))
        reserved = pipe.request_script(_SCRIPTS[script], keys, args)
        try:
            await woken
            # Shielded: if this wait is cancelled, the RESERVE's reply still arrives here
            # and what it leased is released (below).
            return await asyncio.shield(reserved)
        except BaseException:
            # Stopping (cancelled), or the connection failed: what the RESERVE may still
            # lease goes back at once, not when its lease expires; its acks are sent again
            # (ZREM is idempotent), as the connection may close before it runs.
            reserved.add_done_callback(self._release_unclaimed)
            for queue, acks in taken:
                self._defer_acks(acks, queue)
            raise

    def _release_unclaimed(self, reply: asyncio.Future[Any]) -> None:
        """A RESERVE nobody waits for any more leased ``members``: put them back (RELEASE)."""
        if reply.cancelled() or reply.exception() is not None:
            return
        members = [m[1:] if m[0] == _CANCELLED else m for m in reply.result()[0]]
        by_queue: dict[str, list[bytes]] = {}
        for member in members:
            by_queue.setdefault(self._decode(member).queue, []).append(member)
        if self._concurrency_limited:
            self._send_free_places([self._decode(member) for member in members])
        for queue, held in by_queue.items():
            q = self.queue_keys(queue)
            released = self.pipe.request_script(
                _SCRIPTS["RELEASE"], (q.leased, q.queue, q.wake), held
            )
            released.add_done_callback(_log_release_failure)

    def _decode(self, member: bytes) -> TaskMessage:
        raw = member.decode("utf-8", errors="replace")
        bar = raw.find("|")
        try:
            if bar < 0:
                raise ValueError("no '|' separating the order key from the message")
            data = json.loads(raw[bar + 1 :])
            if not isinstance(data, dict):
                raise TypeError("the message is not a JSON object")
            message = TaskMessage.from_dict(data)
        except Exception as exc:  # any: OverflowError, RecursionError, ... too
            # One message that does not decode is dead-lettered with the reason; the others
            # of its batch run (an error here would send the whole batch back, for good).
            message = TaskMessage(_id_in(raw), "")
            message.undeliverable = f"malformed message: {type(exc).__name__}: {exc}"
        message.receipt = member
        return message

    def _cancelled(self, member: bytes) -> TaskMessage:
        """A member RESERVE marked (``!``): its task was cancelled. The watchers hear of it
        before the message is returned, so the worker settles it without running it."""
        message = self._decode(member[1:])
        for watcher in self._cancel_watchers:
            watcher(message.id)
        return message

    # -- cancellation --------------------------------------------------------------------

    @boundary("cannot cancel")
    async def cancel(self, task_id: str) -> None:
        """Mark ``task_id`` cancelled and publish it to the workers (one script: see
        :data:`~flowrra_redis.scripts.CANCEL`)."""
        await self._run(
            "CANCEL",
            [self.keys.cancelled],
            [self.clock.time(), CANCEL_WINDOW, task_id, self.keys.cancels],
        )

    async def watch_cancels(self, cancelled: Callable[[str], None]) -> None:
        """Call ``cancelled(task_id)`` for every id published on ``cancels`` (and every
        message RESERVE marked), until cancelled; resubscribes after a lost connection.

        A publish reaches only the subscribers of that moment, and redis-py reconnects a
        pub/sub connection and subscribes again on its own, so a drop can pass unseen.
        Each time Redis confirms the subscription (the first time too: a task may be
        reserved before it holds), the ids ``cancelled`` gained since the confirmation
        before (or since the watch began), less :data:`CANCEL_CLOCK_SLACK` for the
        cancelling process's clock, are read from that ZSET and passed on as well: a task
        running here that was cancelled while the subscription was down is interrupted
        once it is back (the newest :data:`CANCELS_REREAD` ids)."""
        self._cancel_watchers.append(cancelled)
        failures = 0
        heard_from = self.clock.time()
        try:
            while True:
                pubsub = self._here().client.pubsub()
                try:
                    await subscribe(pubsub, self.keys.cancels)
                    while True:
                        message = await next_message(pubsub)
                        if message is None:
                            continue
                        kind = message_kind(message)
                        if kind == "message":
                            cancelled(text(message["data"]))
                        elif kind == "subscribe":
                            failures = 0
                            since, heard_from = heard_from, self.clock.time()
                            for task_id in await self.pipe.execute(
                                "ZREVRANGEBYSCORE",
                                self.keys.cancelled,
                                "+inf",
                                since - CANCEL_CLOCK_SLACK,
                                "LIMIT",
                                0,
                                CANCELS_REREAD,
                            ):
                                cancelled(text(task_id))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    delay = min(0.1 * 2 ** (failures - 1), 5.0)
                    logger.warning(
                        "cancel subscription lost (%s: %s); reconnecting in %.1fs",
                        type(exc).__name__,
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
        finally:
            self._cancel_watchers.remove(cancelled)

    def redelivered(self, message: TaskMessage) -> bool:
        """Whether ``message`` came back from an expired lease (see
        :class:`flowrra.protocols.Redeliveries`): its member carries the mark RESERVE put
        on it then."""
        receipt = message.receipt
        if not isinstance(receipt, bytes):
            return False
        bar = receipt.find(b"|")
        return bar > 0 and receipt[bar - 1] == _MARK

    def ack(self, message: TaskMessage) -> Awaitable[None]:
        """Settle a reservation. Write-behind: the ack travels inside the next reserve
        (a worker reserves again as soon as a slot is free), or as a ZREM of its own when
        this broker reads queue depths or closes, or when no reserve took it within
        :data:`ACK_DELAY` seconds (the other slots run long tasks, or the worker waits for
        work). If it is lost
        with the connection, the lease expires and the message is delivered again (at
        least once). It sends nothing itself, so it raises nothing, and returns
        :data:`~flowrra.awaitables.DONE` (no coroutine per task)."""
        if message.receipt is not None:
            self._defer_acks((message.receipt,), message.queue)
        return DONE

    def _defer_acks(self, receipts: Sequence[bytes], queue: str = DEFAULT_QUEUE) -> None:
        """Queue acks for the next RESERVE, or a ZREM of their own in :data:`ACK_DELAY`."""
        state = self._here()
        if queue == DEFAULT_QUEUE:
            state.acks += receipts
        elif receipts:
            state.queue_acks.setdefault(queue, []).extend(receipts)
        if state.ack_timer is None and (state.acks or state.queue_acks):
            state.ack_timer = asyncio.get_running_loop().call_later(
                ACK_DELAY, self._send_acks, state
            )

    def _send_acks(self, state: _BrokerLoop) -> None:
        if state.ack_timer is not None:
            state.ack_timer.cancel()
            state.ack_timer = None
        acks, state.acks = state.acks, []
        if acks:
            state.pipe.send("ZREM", self.keys.leased, *acks, what="ack")
        if state.queue_acks:
            queue_acks, state.queue_acks = state.queue_acks, {}
            for queue, receipts in queue_acks.items():
                if receipts:
                    state.pipe.send("ZREM", self.queue_keys(queue).leased, *receipts, what="ack")

    @boundary("cannot requeue")
    async def requeue(self, message: TaskMessage, retry: TaskMessage) -> None:
        k = self.keys
        q = self.queue_keys(retry.queue)
        self._depth = int(
            await self._run(
                "ENQUEUE",
                [
                    q.queue,
                    k.sequence,
                    q.wake,
                    q.delayed,
                    self.queue_keys(message.queue).leased,
                    k.sent,
                ],
                [
                    self.clock.time(),
                    message.receipt or "",
                    self._dedupe_window(),
                    f"{retry.id}:{retry.attempt}",
                    priority_key(retry.priority),
                    "" if retry.eta is None else repr(retry.eta),
                    _queued(0, retry),
                ],
            )
        )
        if self._concurrency_limited:
            await self._free_places((message,))

    @boundary("cannot release")
    async def release(self, messages: Sequence[TaskMessage]) -> None:
        for queue, receipts in _receipts_by_queue(messages).items():
            q = self.queue_keys(queue)
            await self._run("RELEASE", [q.leased, q.queue, q.wake], receipts)
        if self._concurrency_limited:
            await self._free_places(messages)

    @boundary("cannot dead-letter")
    async def dead_letter(self, message: TaskMessage, reason: str) -> None:
        """Move a reserved message to the dead letters with ``reason``. At most
        ``dead_letter_max_bytes`` of the message are kept (the reason says when it was cut,
        and such an entry cannot be requeued), and the newest ``dead_letter_limit``
        entries."""
        raw = message.receipt
        data = raw if isinstance(raw, bytes) else raw.encode() if isinstance(raw, str) else b""
        text_raw = data.decode("utf-8", errors="replace") if raw is not None else None
        if len(reason) > _REASON_LIMIT:
            reason = reason[:_REASON_LIMIT] + "…"
        truncated = False
        size = len(data)
        if size > self.dead_letter_max_bytes:
            text_raw = data[: self.dead_letter_max_bytes].decode("utf-8", errors="ignore")
            truncated = True
            reason += (
                f" [message truncated: {size:,} bytes, the first "
                f"{self.dead_letter_max_bytes:,} kept; it cannot be requeued]"
            )
        entry = {
            "reason": reason,
            "at": time.time(),
            "id": message.id or None,
            "name": message.name or None,
            "raw": text_raw,
        }
        if truncated:
            entry["truncated"] = True
        await self._run(
            "DEAD_LETTER",
            [self.queue_keys(message.queue).leased, self.keys.dead],
            [raw or "", json.dumps(entry), self.dead_letter_limit],
        )
        if self._concurrency_limited:
            await self._free_places((message,))

    @boundary("cannot extend leases")
    async def extend(self, messages: Sequence[TaskMessage]) -> None:
        if not self.lease_seconds:
            return
        for queue, receipts in _receipts_by_queue(messages).items():
            await self._run(
                "EXTEND",
                [self.queue_keys(queue).leased],
                [self.clock.time() + self.lease_seconds, *receipts],
            )
        if self._concurrency_limited:
            await self._extend_places(messages)

    @boundary("cannot purge")
    async def purge(self) -> list[TaskMessage]:
        """Remove every queued and delayed message of every named queue (not the leased
        ones); returns them."""
        members: list[bytes] = []
        for q in await self._known_queues():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.zrange(q.queue, 0, -1)
                pipe.zrange(q.delayed, 0, -1)
                pipe.delete(q.queue, q.delayed)
                queued, delayed, _ = await pipe.execute()
            members += [*queued, *delayed]
        self._depth = 0
        return [self._decode(m) for m in members]

    async def _known_queues(self) -> list[QueueKeys]:
        """The default queue and every named queue ever written to or consumed."""
        names = sorted(text(name) for name in await self.client.smembers(self.keys.queues))
        return [self.queue_keys(DEFAULT_QUEUE), *(self.queue_keys(n) for n in names)]

    def pending_count(self) -> int:
        """Messages waiting (due and delayed) when this process last talked to the queue:
        a cached figure, since this call is synchronous. :meth:`queue_depths` asks Redis."""
        return self._depth

    # -- task limits (flowrra.limits) --------------------------------------------------------

    def limit(self, limits: Mapping[str, TaskLimits]) -> None:
        """Enforce these task limits at reserve from now on, in every process that reserves
        with them (see :class:`~flowrra.protocols.LimitedTasks` and
        :mod:`flowrra_redis.scripts`); an empty mapping turns them off."""
        self._limited = dict(limits)
        self._limit_args = []
        for name, task in self._limited.items():
            rate = task.rate
            self._limit_args += [
                name,
                0 if rate is None else rate.count,
                0.0 if rate is None else rate.per_seconds,
                task.max_concurrency or 0,
            ]
        self._concurrency_limited = frozenset(
            name for name, task in self._limited.items() if task.max_concurrency
        )
        # Instance attributes: without limits the class's methods run, untouched.
        if self._limited:
            self._reserve_call = self._limited_reserve_call  # type: ignore[method-assign]
        else:
            vars(self).pop("_reserve_call", None)
        if self._concurrency_limited:
            self.ack = self._limited_ack  # type: ignore[method-assign]
        else:
            vars(self).pop("ack", None)
        self._drained = False

    def _limited_reserve_call(
        self, max_messages: int
    ) -> tuple[str, list[str], list[Any], list[tuple[str, list[bytes]]]]:
        """:meth:`_reserve_call` wrapped in its LIMITED twin: the same keys and arguments,
        after the limits' own."""
        script, keys, args, taken = RedisBroker._reserve_call(self, max_messages)
        k = self.keys
        consumed = self._consumed
        names = list(self._limited)
        extra: list[str] = []
        for q in consumed:
            extra += (q.delayed, q.leased)
        for name in names:
            extra += (k.started(name), k.running(name))
        for name in names:
            extra += [k.deferred(q.name, name) for q in consumed]
        head = [len(keys), len(args), len(consumed), len(names), *self._limit_args]
        return f"LIMITED_{script}", [*keys, *extra], [*head, *args], taken

    def _limited_ack(self, message: TaskMessage) -> Awaitable[None]:
        """:meth:`ack`, and the task's concurrency place freed at once (one script call,
        not awaited: a place lost with the connection frees itself when the lease would
        have expired)."""
        RedisBroker.ack(self, message)
        if message.name in self._concurrency_limited:
            self._send_free_places((message,))
        return DONE

    def _settle_calls(self, messages: Sequence[TaskMessage]) -> list[tuple[list[str], list[str]]]:
        """LIMITED_SETTLE's keys and task ids for the concurrency-limited ``messages``, one
        call per task: its deferred messages may wait in the message's queue or any queue
        this broker takes from."""
        by_task: dict[str, tuple[list[str], set[str]]] = {}
        for message in messages:
            if message.name in self._concurrency_limited and message.id:
                ids, queues = by_task.setdefault(message.name, ([], set()))
                ids.append(message.id)
                queues.add(message.queue)
        k = self.keys
        calls = []
        for name, (ids, queues) in by_task.items():
            keys = [k.running(name)]
            for queue in sorted(queues | {q.name for q in self._consumed}):
                q = self.queue_keys(queue)
                keys += (k.deferred(queue, name), q.delayed, q.wake)
            calls.append((keys, ids))
        return calls

    async def _free_places(self, messages: Sequence[TaskMessage]) -> None:
        for keys, ids in self._settle_calls(messages):
            await self._run("LIMITED_SETTLE", keys, ids)

    def _send_free_places(self, messages: Sequence[TaskMessage]) -> None:
        for keys, ids in self._settle_calls(messages):
            reply = self.pipe.request_script(_SCRIPTS["LIMITED_SETTLE"], keys, ids)
            reply.add_done_callback(_log_settle_failure)

    async def _extend_places(self, messages: Sequence[TaskMessage]) -> None:
        """Renew the running entries of concurrency-limited tasks with their leases."""
        assert self.lease_seconds is not None
        expiry = number_text(self.clock.time() + self.lease_seconds)
        for message in messages:
            if message.name in self._concurrency_limited and message.id:
                self.pipe.send(
                    "ZADD",
                    self.keys.running(message.name),
                    "XX",
                    expiry,
                    message.id,
                    what="extend a running entry",
                )

    # -- monitoring ----------------------------------------------------------------------

    @boundary("cannot read queue depths")
    async def queue_depths(self) -> dict[str, int]:
        """Live counts: ``queued`` (due now), ``delayed``, ``leased`` (running or held by a
        worker), ``dead`` (dead letters kept)."""
        stats = await self.queue_stats()
        queued = sum(entry["queued"] for entry in stats.values())
        delayed = sum(entry["delayed"] for entry in stats.values())
        leased = sum(entry["leased"] for entry in stats.values())
        dead = int(await self._here().pipe.execute("LLEN", self.keys.dead))
        self._depth = queued + delayed
        return {"queued": queued, "delayed": delayed, "leased": leased, "dead": dead}

    @boundary("cannot read queue depths")
    async def queue_stats(self) -> dict[str, dict[str, Any]]:
        """Per named queue (the default one and every one written to or consumed):
        ``queued``, ``delayed``, ``leased`` and ``priorities`` (due messages by priority,
        lowest first, the first :data:`MAX_PRIORITIES_LISTED` priorities), read live."""
        state = self._here()
        self._send_acks(state)  # on the same connection: counted as settled
        pipe = state.pipe
        stats: dict[str, dict[str, Any]] = {}
        for q in await self._known_queues():
            queued, delayed, leased, priorities = await asyncio.gather(
                pipe.execute("ZCARD", q.queue),
                pipe.execute("ZCARD", q.delayed),
                pipe.execute("ZCARD", q.leased),
                pipe.run_script(_SCRIPTS["PRIORITIES"], (q.queue,), (MAX_PRIORITIES_LISTED,)),
            )
            stats[q.name] = {
                "queued": int(queued),
                "delayed": int(delayed),
                "leased": int(leased),
                "priorities": {
                    priority_of(text(priorities[i])): int(priorities[i + 1])
                    for i in range(0, len(priorities), 2)
                },
            }
        return stats

    @boundary("cannot read dead letters")
    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead letters (see :class:`flowrra.protocols.DeadLetters`): ``reason``,
        ``at``, ``id``, ``name``, ``raw`` (the message as queued, cut to
        ``dead_letter_max_bytes``), ``truncated`` and ``requeueable`` (whether
        :meth:`requeue_dead_letters` can queue it again: it decodes, whole)."""
        entries = await self.client.lrange(self.keys.dead, 0, max(limit, 1) - 1)
        out = []
        for stored in entries:
            entry = _entry(stored)
            entry["requeueable"] = self._revived(entry) is not None
            out.append(entry)
        return out

    @boundary("cannot requeue dead letters")
    async def requeue_dead_letters(self, ids: Sequence[str] | None = None) -> list[TaskMessage]:
        """Queue again, due now, the dead letters of the tasks ``ids`` (None: every one)
        that are requeueable, removing their entries; returns the messages queued. Each
        entry is taken atomically: two callers never requeue one message twice. Entries
        that cannot be requeued (cut to the byte bound, or not decodable) stay."""
        wanted = None if ids is None else set(ids)
        stored = await self.client.lrange(self.keys.dead, 0, -1)
        by_queue: dict[str, tuple[list[Any], list[TaskMessage]]] = {}
        for raw_entry in stored:
            entry = _entry(raw_entry)
            if wanted is not None and entry.get("id") not in wanted:
                continue
            message = self._revived(entry)
            if message is None:
                continue
            args, messages = by_queue.setdefault(message.queue, ([], []))
            args += [raw_entry, priority_key(message.priority), _queued(len(messages), message)]
            messages.append(message)
        k = self.keys
        requeued: list[TaskMessage] = []
        for queue, (args, messages) in by_queue.items():  # one call (all or none) per queue
            q = self.queue_keys(queue)
            self._list_queue(queue)
            queued = await self._run("DEAD_REQUEUE", [k.dead, q.queue, k.sequence, q.wake], args)
            requeued += [messages[int(n) - 1] for n in queued]
        return requeued

    @boundary("cannot purge dead letters")
    async def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Delete the dead letters of the tasks ``ids`` (None: all of them); returns how
        many entries were deleted."""
        dead = self.keys.dead
        if ids is None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.llen(dead)
                pipe.delete(dead)
                count, _ = await pipe.execute()
            return int(count)
        wanted = set(ids)
        stored = await self.client.lrange(dead, 0, -1)
        doomed = [e for e in stored if _entry(e).get("id") in wanted]
        if not doomed:
            return 0
        async with self.client.pipeline(transaction=False) as pipe:
            for entry in doomed:
                pipe.execute_command("LREM", dead, 1, entry)
            removed = await pipe.execute()
        return sum(int(n) for n in removed)

    def _revived(self, entry: dict[str, Any]) -> TaskMessage | None:
        """The message of a dead letter, ready to queue again (due now), or None when it
        cannot be: cut to the byte bound, not decodable, or naming no task."""
        raw = entry.get("raw")
        if entry.get("truncated") or not isinstance(raw, str):
            return None
        message = self._decode(raw.encode())
        if message.undeliverable is not None or not message.id or not message.name:
            return None
        message.receipt = None
        message.eta = None
        return message

    @boundary("cannot send a heartbeat")
    async def announce(self, info: dict[str, Any], ttl: float) -> None:
        """Record a worker's heartbeat; it counts as alive for ``ttl`` seconds."""
        k = self.keys
        worker_id = str(info["id"])
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(k.worker(worker_id), json.dumps(info), px=int(ttl * 1000))
            pipe.zadd(k.workers, {worker_id: self.clock.time() + ttl})
            await pipe.execute()

    @boundary("cannot retire a worker")
    async def retire(self, worker_id: str) -> None:
        """Forget a worker that stopped cleanly."""
        k = self.keys
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(k.worker(worker_id))
            pipe.zrem(k.workers, worker_id)
            await pipe.execute()

    @boundary("cannot read the workers")
    async def workers(self) -> list[dict[str, Any]]:
        """Workers whose heartbeat has not expired, each as it announced itself."""
        k = self.keys
        now = self.clock.time()
        client = self.client
        await client.zremrangebyscore(k.workers, "-inf", now)
        ids = [text(i) for i in await client.zrange(k.workers, 0, -1)]
        if not ids:
            return []
        details = await client.mget([k.worker(i) for i in ids])
        return [json.loads(d) for d in details if d is not None]


def priority_of(key: str) -> int:
    """The priority a :func:`priority_key` stands for."""
    if key.startswith("p"):
        return int(key[5:], 16)
    return -int(key[5:].translate(_COMPLEMENT), 16)


def _receipts_by_queue(messages: Sequence[TaskMessage]) -> dict[str, list[bytes]]:
    by_queue: dict[str, list[bytes]] = {}
    for message in messages:
        if message.receipt is not None:
            by_queue.setdefault(message.queue, []).append(message.receipt)
    return by_queue


async def _last_of(replies: list[asyncio.Future[Any]]) -> Any:
    """Await every reply (so none is left unretrieved); the last one's value, or the first
    error."""
    outcome: Any = None
    failure: BaseException | None = None
    for reply in replies:
        try:
            outcome = await reply
        except Exception as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
    return outcome


def _entry(stored: bytes | str) -> dict[str, Any]:
    """A dead-letter entry as stored (JSON); an unreadable one as its text."""
    try:
        entry = json.loads(stored)
    except ValueError:
        entry = None
    if not isinstance(entry, dict):
        return {"reason": "unreadable dead-letter entry", "raw": text(stored)}
    return entry


def _id_in(raw: str) -> str:
    """The task id of a malformed member, if one can be read (for its FAILED record)."""
    start = raw.find('"id":')
    if start < 0:
        return ""
    rest = raw[start + 5 :].lstrip()
    if not rest.startswith('"'):
        return ""
    end = rest.find('"', 1)
    return rest[1:end] if end > 0 else ""
