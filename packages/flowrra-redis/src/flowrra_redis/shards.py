"""Sharded queues and results: one app's keys spread over S hash tags, so that on Redis
Cluster they land on S masters instead of one.

A shard is a whole :class:`~flowrra_redis.RedisBroker` (or
:class:`~flowrra_redis.RedisBackend`) on a key prefix of its own: every script still
touches one shard's keys only, one slot, so each stays atomic and cluster-safe.
:class:`ShardedRedisBroker` and :class:`ShardedRedisBackend` compose S of them behind the
same protocols. ``?shards=S`` in a URL selects them (``Flowrra.from_urls``, entry points);
with S = 1, the default, the plain classes are built and nothing here runs.

Placement (see :func:`shard_prefixes`): shard 0 keeps the prefix as it is (``{flowrra}``),
so a deployment that had one shard finds its queued tasks and records in shard 0. Shard
*i* > 0 is ``<prefix>:s<i>`` (``{flowrra:s1}``), or the first ``<prefix>:s<i>.<n>`` whose
slot lies in its own S-th of the 16,384 slots: a cluster created with its slots split
evenly over S masters then has one shard on each, whatever the prefix. A prefix that
already has a hash tag gets the suffix inside it (``{t}:app`` → ``{t:s1}:app``).

The broker:

* a message goes to the shard of its task id (CRC-32 mod S: every process agrees, with no
  state), or of its ``flowrra-shard-key`` header when it has one (:data:`SHARD_KEY`):
  messages with one key share a shard, so they keep FIFO order among equal priorities;
  a unique job goes to the shard of its unique key, so ENQUEUE_UNIQUE stays one atomic
  script; ``enqueue_many`` makes one call per shard (per queue), all sent at once;
* with a backend whose shards pair with these (:meth:`ShardedRedisBroker.enqueue_with_records`),
  a submit stores its PENDING record and queues its message in one script on its shard
  (:class:`ShardedSubmit`), as one broker does with a backend on its server;
* ``reserve`` starts at the next shard each call (rotating) and takes from the following
  ones while the batch is not full; a batch taken from several shards is merged by
  priority, then submit time, each shard's own order kept. With nothing due anywhere it
  waits on every shard at once (one blocking connection per shard, as a one-shard worker
  has one): the first shard to get work wakes it;
* what a reserve returned is settled (ack, extend, requeue, release, dead-letter) on the
  shard it came from, remembered by its receipt until then;
* a task with a rate or concurrency limit has a home shard (CRC-32 of its name): only
  the home shard limits it, exactly as one broker does, and a worker that finds one of
  its messages on another shard moves it home first (enqueue there, then ack here);
* cancellation marks the id on every shard and publishes it once (shard 0); heartbeats
  live on shard 0; depths, statistics and dead letters are summed and merged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
import heapq
import logging
import math
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from redis.crc import key_slot

from flowrra.awaitables import DONE
from flowrra.backends.base import BaseResultBackend, list_by_pages
from flowrra.brokers.base import BaseBroker
from flowrra.config import BackendConfig, BrokerConfig
from flowrra.cursors import decode_keyset, encode_keyset
from flowrra.events import EventHub, TaskEvent
from flowrra.exceptions import MaybeQueuedError
from flowrra.limits import TaskLimits
from flowrra.queues import QueueSelection
from flowrra.task import TaskMessage, TaskResult, TaskStatus
from flowrra_redis.backend import MAX_PAGE, RedisBackend, page_index
from flowrra_redis.broker import _MARK, CANCEL_WINDOW, RedisBroker, _last_of, priority_key
from flowrra_redis.connection import DEFAULT_PREFIX, Keys, prefix_from_url, text
from flowrra_redis.submits import RecordedEnqueue

__all__ = [
    "SHARD_KEY",
    "ShardedRedisBackend",
    "ShardedRedisBroker",
    "ShardedSubmit",
    "shard_of",
    "shard_prefixes",
]

logger = logging.getLogger("flowrra.redis.shards")

#: The message header that picks a message's shard instead of its task id: messages with
#: the same value share a shard, so they keep FIFO order (among equal priorities).
SHARD_KEY = "flowrra-shard-key"

_SLOTS = 16384


def _suffixed(prefix: str, suffix: str) -> str:
    """``prefix`` with ``:suffix`` inside its hash tag if it has one, else after it."""
    start = prefix.find("{")
    end = prefix.find("}", start + 1) if start >= 0 else -1
    if start >= 0 and end > start + 1:
        return f"{prefix[:end]}:{suffix}{prefix[end:]}"
    return f"{prefix}:{suffix}"


def shard_prefixes(prefix: str, shards: int) -> list[str]:
    """The key prefixes of ``shards`` shards of ``prefix`` (see the module docs): the
    prefix itself, then for shard *i* the first of ``<prefix>:s<i>``, ``<prefix>:s<i>.1``,
    ``<prefix>:s<i>.2`` ... whose hash slot lies in a part of the slot space (split in
    ``shards`` equal parts) no other shard has. Deterministic: every process computes the
    same."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    prefixes = [prefix]
    width = _SLOTS / shards
    first = int(key_slot(Keys(prefix).base.encode()) // width)
    free = [part for part in range(shards) if part != first]
    for i in range(1, shards):
        target = free[i - 1]
        n = 0
        while True:
            candidate = _suffixed(prefix, f"s{i}" if n == 0 else f"s{i}.{n}")
            if int(key_slot(Keys(candidate).base.encode()) // width) == target:
                break
            n += 1
        prefixes.append(candidate)
    return prefixes


def shard_of(key: str, shards: int) -> int:
    """The shard (0 .. ``shards`` - 1) of a task id, unique key or shard key: CRC-32 of
    its UTF-8 bytes mod ``shards`` (the same in every process and Python version, unlike
    ``hash()``)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % shards


def _order(message: TaskMessage) -> tuple[int, float, int]:
    """Where a reserved message stands when batches of several shards are merged: its
    priority, its submit time, and its place in the ``enqueue_many`` call that queued it
    (read from its receipt: ``<priority key><16-digit sequence><8 hex digits>|``; a
    message made due from the delayed set has no place, 0)."""
    place = 0
    receipt = message.receipt
    if isinstance(receipt, bytes):
        bar = receipt.find(b"|")
        end = bar - 1 if bar > 0 and receipt[bar - 1] == _MARK else bar
        head = len(priority_key(message.priority)) + 16
        if end - head == 8:
            with contextlib.suppress(ValueError):
                place = int(receipt[head:end], 16)
    return message.priority, message.submitted_at, place


class ShardedRedisBroker(BaseBroker):
    """A :class:`flowrra.protocols.Broker` over S :class:`~flowrra_redis.RedisBroker`
    shards (see the module docs), with the same optional capabilities: NamedQueues,
    UniqueJobs, Cancellation, LimitedTasks, WorkerDirectory, Redeliveries, DeadLetters.
    It is a RecordedEnqueue too, for a backend whose shards pair with these
    (:meth:`enqueue_with_records`): a submit is then one script.

    ``shards``: how many (>= 2; ``?shards=`` in the URL when built from a config).
    ``prefix``: shard 0's prefix (default ``?prefix=`` or ``flowrra``). Every other
    keyword is given to each shard's :class:`~flowrra_redis.RedisBroker`; each has its own
    connection pool of ``max_connections``.
    """

    durable = True

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        shards: int,
        prefix: str | None = None,
        **options: Any,
    ) -> None:
        if shards < 2:
            raise ValueError(f"a sharded broker needs shards >= 2, got {shards} (use RedisBroker)")
        self.url = url
        base = prefix or prefix_from_url(url) or DEFAULT_PREFIX
        #: The shards, shard 0 (the unsharded keys) first.
        self.shards = [RedisBroker(url, prefix=p, **options) for p in shard_prefixes(base, shards)]
        first = self.shards[0]
        self.lease_seconds: float | None = first.lease_seconds
        self.clock = first.clock
        self.unique_ttl = first.unique_ttl
        #: The shard each reserved, unsettled message came from, by receipt.
        self._origin: dict[bytes, RedisBroker] = {}
        self._start = 0
        #: Where the weighted turns of named queues stand (see :meth:`consume`).
        self._turn = (0, 0)
        #: Limited tasks' home shards' numbers (see :meth:`limit`); empty without limits.
        self._homes: dict[str, int] = {}

    @classmethod
    def from_config(cls, config: BrokerConfig, shards: int) -> ShardedRedisBroker:
        return cls(
            config.url,
            shards=shards,
            prefix=config.queue_key,
            max_connections=config.max_connections,
            socket_timeout=config.socket_timeout,
            retry_on_timeout=config.retry_on_timeout,
        )

    def __repr__(self) -> str:
        return f"ShardedRedisBroker({self.shards[0]!r}, shards={len(self.shards)})"

    @property
    def keys(self) -> Keys:
        """Shard 0's keys (heartbeats, the cancel channel)."""
        return self.shards[0].keys

    async def connect(self) -> None:
        await asyncio.gather(*(shard.connect() for shard in self.shards))

    async def close(self) -> None:
        results = await asyncio.gather(
            *(shard.close() for shard in self.shards), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # -- producing -----------------------------------------------------------------------

    def _shard_number(self, message: TaskMessage) -> int:
        """The shard ``message`` is queued on (see the module docs)."""
        home = self._homes.get(message.name) if self._homes else None
        if home is not None:
            return home
        key = message.headers.get(SHARD_KEY) if message.headers else None
        return shard_of(key or message.id, len(self.shards))

    def enqueue(self, message: TaskMessage) -> Awaitable[None]:
        return self.shards[self._shard_number(message)].enqueue(message)

    def enqueue_many(self, messages: Sequence[TaskMessage]) -> Awaitable[None]:
        """One ENQUEUE call per shard and named queue (in calls of up to the shard's
        ``enqueue_chunk``), all sent before any reply is awaited; each message keeps its
        place in ``messages``, which orders a batch merged from several shards. Every
        message is encoded before anything is sent."""
        if not messages:
            return DONE
        return self._send_calls(self._enqueue_calls(list(enumerate(messages))))

    def _enqueue_calls(
        self, placed: Sequence[tuple[int, TaskMessage]]
    ) -> list[tuple[RedisBroker, str, list[Any], int]]:
        """The ENQUEUE calls of ``placed`` (each message with its place in the caller's
        batch), per shard and named queue, encoded (SerializationError), not sent."""
        groups: dict[tuple[int, str], tuple[list[TaskMessage], list[int]]] = {}
        for place, message in placed:
            where = (self._shard_number(message), message.queue)
            batch, places = groups.setdefault(where, ([], []))
            batch.append(message)
            places.append(place)
        calls: list[tuple[RedisBroker, str, list[Any], int]] = []
        for (n, queue), (batch, places) in groups.items():
            shard = self.shards[n]
            chunk = shard.enqueue_chunk
            for start in range(0, len(batch), chunk):
                part = batch[start : start + chunk]
                call = shard._enqueue_call(part, places[start : start + chunk])
                calls.append((shard, queue, call, len(part)))
        return calls

    def _send_calls(self, calls: list[tuple[RedisBroker, str, list[Any], int]]) -> Awaitable[None]:
        """Send what :meth:`_enqueue_calls` built; an awaitable of the replies."""
        replies = []
        for shard, queue, call, _ in calls:
            shard._list_queue(queue)
            replies.append(shard._send_call(call, queue))
        return self._all_enqueued(calls, replies)

    async def _all_enqueued(
        self, calls: list[tuple[RedisBroker, str, list[Any], int]], replies: list[Any]
    ) -> None:
        by_shard: dict[int, tuple[RedisBroker, list[Any], list[int]]] = {}
        for (shard, _, _, size), reply in zip(calls, replies, strict=True):
            _, futures, sizes = by_shard.setdefault(id(shard), (shard, [], []))
            futures.append(reply)
            sizes.append(size)
        await _last_of(
            [
                asyncio.ensure_future(shard._all_enqueued(futures, sizes))
                for shard, futures, sizes in by_shard.values()
            ]
        )

    def enqueue_with_records(
        self, backend: object
    ) -> Callable[[Sequence[TaskMessage], Sequence[TaskResult]], Awaitable[None]] | None:
        """A :class:`~flowrra.protocols.RecordedEnqueue` for a backend whose shards pair
        with these (:class:`ShardedRedisBackend`, or a :class:`~flowrra_redis.RedisBackend`
        as one shard): one where each task id's message shard (CRC-32 mod S) shares a
        keyspace with its record's shard (:meth:`RedisBroker.enqueue_with_records`: on one
        server always; on a cluster, the same slot, so the same prefixes and shard
        counts). A submit is then one SUBMIT script on its shard (:class:`ShardedSubmit`);
        None for any other backend."""
        if isinstance(backend, ShardedRedisBackend):
            record_shards = backend.shards
        elif isinstance(backend, RedisBackend):
            record_shards = [backend]
        else:
            return None
        sends = [[shard.enqueue_with_records(b) for b in record_shards] for shard in self.shards]
        count, records = len(self.shards), len(record_shards)
        every = count * records // math.gcd(count, records)  # the placements repeat after
        if any(sends[n % count][n % records] is None for n in range(every)):
            return None
        return ShardedSubmit(self, record_shards, sends)

    # -- unique jobs ----------------------------------------------------------------------

    def _unique_shard(self, key: str) -> RedisBroker:
        return self.shards[shard_of(key, len(self.shards))]

    async def enqueue_unique(self, message: TaskMessage, key: str) -> str:
        """Queued on the shard of ``key`` (see :class:`~flowrra.protocols.UniqueJobs`),
        where its key lives: one atomic script, as on one broker."""
        return await self._unique_shard(key).enqueue_unique(message, key)

    async def release_unique(self, key: str, task_id: str, keep_for: float) -> bool:
        return await self._unique_shard(key).release_unique(key, task_id, keep_for)

    async def unique_holder(self, key: str) -> str | None:
        return await self._unique_shard(key).unique_holder(key)

    # -- consuming -----------------------------------------------------------------------

    def consume(self, selection: QueueSelection) -> None:
        """Every shard takes from these queues. Weighted turns are taken over the shards
        together (one turn, handed from shard to shard), but each shard sees its own
        messages only: a queue with nothing in the shard asked passes its turn, and strict
        order holds within a shard. Over many reserves the weights hold on average."""
        for shard in self.shards:
            shard.consume(selection)
        self._turn = (0, 0)

    async def reserve(self, max_messages: int, timeout: float) -> list[TaskMessage]:
        """Up to ``max_messages`` due messages from the shards, waiting up to ``timeout``
        seconds for the first (see the module docs for the order)."""
        with self.shards[0].translating("cannot reserve"):
            deadline = time.monotonic() + timeout
            taken = await self._take(max_messages, force=False)
            while not taken:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    return []
                dues = [s._next_due for s in self.shards if s._next_due is not None]
                if dues:
                    wait = min(wait, max(min(dues) - self.clock.time(), 0.0) + 0.001)
                taken = await self._wait_any(wait, max_messages)
                if not taken:
                    taken = await self._take(max_messages, force=True)
            return await self._settled_away(self._merged(taken))

    async def _take(self, want: int, *, force: bool) -> list[list[TaskMessage]]:
        """One pass over the shards from the next starting one, each asked for what the
        batch still lacks (a shard whose last reserve left it empty is skipped unless
        ``force``: its wake list tells of new work); a shard that fails is passed over,
        with a warning, unless all fail."""
        shards = self.shards
        count = len(shards)
        start = self._start
        self._start = (start + 1) % count
        taken: list[list[TaskMessage]] = []
        got = 0
        failures: list[Exception] = []
        for step in range(count):
            shard = shards[(start + step) % count]
            if shard._drained and not force:
                continue
            shard._turn = self._turn
            script, keys, args, acks = shard._reserve_call(want - got)
            try:
                batch = shard._taken(await shard._run(script, keys, args))
                self._turn = shard._turn
            except Exception as exc:
                for queue, receipts in acks:  # sent again with the next call, not lost
                    shard._defer_acks(receipts, queue)
                failures.append(exc)
                logger.warning("cannot reserve from shard %s: %s", shard.keys.base, exc)
                continue
            if batch:
                self._note(shard, batch)
                taken.append(batch)
                got += len(batch)
                if got >= want:
                    break
        if failures and len(failures) == count:
            raise failures[0]
        return taken

    async def _wait_any(self, wait: float, want: int) -> list[list[TaskMessage]]:
        """Block on every shard's wake list at once (a BLPOP per shard, each with its
        RESERVE pipelined behind it, as a one-shard worker waits) until one has work or
        ``wait`` passes; the other waits are cancelled, and whatever their RESERVE still
        leases is released at once (:meth:`RedisBroker._wait_for_work`)."""
        waits = [asyncio.ensure_future(shard._wait_for_work(wait, want)) for shard in self.shards]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # stopping: what finished waits leased goes back
            for future in waits:
                future.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
            for shard, future in zip(self.shards, waits, strict=True):
                if future.cancelled() or future.exception() is not None:
                    continue
                reply = future.result()
                if reply is not None and reply[0]:
                    with contextlib.suppress(Exception):
                        await shard.release(shard._taken(reply))
            raise
        finally:
            for future in waits:
                if not future.done():
                    future.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        taken: list[list[TaskMessage]] = []
        failures = 0
        for shard, future in zip(self.shards, waits, strict=True):
            if future.cancelled():
                continue
            error = future.exception()
            if error is not None:
                failures += 1
                logger.warning("cannot wait on shard %s: %s", shard.keys.base, error)
                if failures == len(waits):
                    raise error
                continue
            reply = future.result()
            if reply is not None and reply[0]:
                batch = shard._taken(reply)
                if batch:
                    self._note(shard, batch)
                    taken.append(batch)
        extra = sum(len(batch) for batch in taken) - want
        while extra > 0:  # several shards woke at once: hand back what does not fit
            last = taken[-1]
            cut = min(extra, len(last))
            await self.release(last[len(last) - cut :])
            del last[len(last) - cut :]
            if not last:
                taken.pop()
            extra -= cut
        return taken

    def _note(self, shard: RedisBroker, batch: list[TaskMessage]) -> None:
        origin = self._origin
        for message in batch:
            if message.receipt is not None:
                origin[message.receipt] = shard

    @staticmethod
    def _merged(taken: list[list[TaskMessage]]) -> list[TaskMessage]:
        if len(taken) == 1:
            return taken[0]
        # Each shard's batch is in its own order; merged, keeping that order within each.
        return list(heapq.merge(*taken, key=_order))

    def _origin_of(self, message: TaskMessage) -> RedisBroker:
        receipt = message.receipt
        shard = self._origin.get(receipt) if isinstance(receipt, bytes) else None
        return self.shards[0] if shard is None else shard

    def _settled_by(self, message: TaskMessage) -> RedisBroker:
        receipt = message.receipt
        shard = self._origin.pop(receipt, None) if isinstance(receipt, bytes) else None
        return self.shards[0] if shard is None else shard

    async def _settled_away(self, messages: list[TaskMessage]) -> list[TaskMessage]:
        """With limits: the messages of limited tasks reserved off their home shard are
        moved home (queued there, then acked here: at least once; a move sent twice is
        queued once, by the home shard's dedupe of recent ids) and left out."""
        if not self._homes:
            return messages
        kept: list[TaskMessage] = []
        away: list[tuple[RedisBroker, TaskMessage]] = []
        for message in messages:
            number = self._homes.get(message.name)
            home = None if number is None else self.shards[number]
            if (
                home is None
                or message.undeliverable is not None
                or self._origin_of(message) is home
            ):
                kept.append(message)
            else:
                away.append((home, message))
        for done, (home, message) in enumerate(away):
            try:
                await self._move_home(home, message)
            except BaseException:
                # Reserved here and not handed out: back to their queues at once, rather
                # than when their leases expire.
                unmoved = [*kept, *(m for _, m in away[done:])]
                with contextlib.suppress(Exception):
                    await self.release(unmoved)
                raise
        return kept

    async def _move_home(self, home: RedisBroker, message: TaskMessage) -> None:
        """Queue ``message`` on its limited task's ``home`` shard, then ack it here."""
        moved = message.unreserved()
        await home.enqueue(moved)
        await self._settled_by(message).ack(message)

    # -- settling -------------------------------------------------------------------------

    def redelivered(self, message: TaskMessage) -> bool:
        return self.shards[0].redelivered(message)

    def ack(self, message: TaskMessage) -> Awaitable[None]:
        return self._settled_by(message).ack(message)

    async def requeue(self, message: TaskMessage, retry: TaskMessage) -> None:
        """The retry (or next chain step) is queued on the shard ``message`` came from:
        settling one and queueing the other stays one script."""
        await self._settled_by(message).requeue(message, retry)

    async def release(self, messages: Sequence[TaskMessage]) -> None:
        for shard, some in self._by_origin(messages, settle=True):
            await shard.release(some)

    async def dead_letter(self, message: TaskMessage, reason: str) -> None:
        await self._settled_by(message).dead_letter(message, reason)

    async def extend(self, messages: Sequence[TaskMessage]) -> None:
        await asyncio.gather(
            *(shard.extend(some) for shard, some in self._by_origin(messages, settle=False))
        )

    def _by_origin(
        self, messages: Sequence[TaskMessage], *, settle: bool
    ) -> list[tuple[RedisBroker, list[TaskMessage]]]:
        pick = self._settled_by if settle else self._origin_of
        groups: dict[int, tuple[RedisBroker, list[TaskMessage]]] = {}
        for message in messages:
            shard = pick(message)
            groups.setdefault(id(shard), (shard, []))[1].append(message)
        return list(groups.values())

    async def purge(self) -> list[TaskMessage]:
        purged: list[TaskMessage] = []
        for shard in self.shards:
            purged += await shard.purge()
        return purged

    def pending_count(self) -> int:
        return sum(shard.pending_count() for shard in self.shards)

    # -- task limits ------------------------------------------------------------------------

    def limit(self, limits: Mapping[str, TaskLimits]) -> None:
        """Each limited task is limited on its home shard only (CRC-32 of its name), with
        the whole limit; its messages found on other shards are moved home (see
        :meth:`_settled_away`)."""
        count = len(self.shards)
        homes = {name: shard_of(name, count) for name in limits}
        for n, shard in enumerate(self.shards):
            shard.limit({name: lim for name, lim in limits.items() if homes[name] == n})
        self._homes = homes

    # -- cancellation ---------------------------------------------------------------------

    async def cancel(self, task_id: str) -> None:
        """Mark ``task_id`` on every shard (its messages may wait on any) and publish it
        once, from shard 0."""
        first, *others = self.shards
        now = self.clock.time()
        await asyncio.gather(
            first.cancel(task_id), *(self._mark_cancelled(shard, task_id, now) for shard in others)
        )

    @staticmethod
    async def _mark_cancelled(shard: RedisBroker, task_id: str, now: float) -> None:
        with shard.translating("cannot cancel"):
            pipe = shard.pipe
            await asyncio.gather(
                pipe.execute("ZREMRANGEBYSCORE", shard.keys.cancelled, "-inf", now - CANCEL_WINDOW),
                pipe.execute("ZADD", shard.keys.cancelled, now, task_id),
            )

    async def watch_cancels(self, cancelled: Callable[[str], None]) -> None:
        """Shard 0's channel (every cancel publishes there); the messages any shard's
        reserve marks cancelled reach ``cancelled`` too."""
        others = self.shards[1:]
        for shard in others:
            shard._cancel_watchers.append(cancelled)
        try:
            await self.shards[0].watch_cancels(cancelled)
        finally:
            for shard in others:
                shard._cancel_watchers.remove(cancelled)

    # -- monitoring -----------------------------------------------------------------------

    async def queue_depths(self) -> dict[str, int]:
        """Each count summed over the shards."""
        depths = await asyncio.gather(*(shard.queue_depths() for shard in self.shards))
        return {name: sum(d[name] for d in depths) for name in depths[0]}

    async def queue_stats(self) -> dict[str, dict[str, Any]]:
        """Per named queue, summed over the shards (priorities too)."""
        merged: dict[str, dict[str, Any]] = {}
        for stats in await asyncio.gather(*(shard.queue_stats() for shard in self.shards)):
            for queue, entry in stats.items():
                into = merged.setdefault(
                    queue, {"queued": 0, "delayed": 0, "leased": 0, "priorities": {}}
                )
                for name in ("queued", "delayed", "leased"):
                    into[name] += entry[name]
                for priority, n in entry["priorities"].items():
                    into["priorities"][priority] = into["priorities"].get(priority, 0) + n
        for entry in merged.values():
            entry["priorities"] = dict(sorted(entry["priorities"].items()))
        return merged

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` over all shards, newest first."""
        lists = await asyncio.gather(*(shard.dead_letters(limit) for shard in self.shards))
        entries = [entry for entries in lists for entry in entries]
        entries.sort(key=lambda e: e.get("at") or 0.0, reverse=True)
        return entries[: max(limit, 1)]

    async def requeue_dead_letters(self, ids: Sequence[str] | None = None) -> list[TaskMessage]:
        """Each shard requeues its own dead letters (on that shard)."""
        requeued: list[TaskMessage] = []
        for shard in self.shards:
            requeued += await shard.requeue_dead_letters(ids)
        return requeued

    async def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        counts = await asyncio.gather(*(shard.purge_dead_letters(ids) for shard in self.shards))
        return sum(counts)

    async def announce(self, info: dict[str, Any], ttl: float) -> None:
        await self.shards[0].announce(info, ttl)

    async def retire(self, worker_id: str) -> None:
        await self.shards[0].retire(worker_id)

    async def workers(self) -> list[dict[str, Any]]:
        return await self.shards[0].workers()


class ShardedSubmit:
    """One round trip per submit on shards (what
    :meth:`ShardedRedisBroker.enqueue_with_records` gives): each message goes, with its
    PENDING record, in one SUBMIT script (:class:`~flowrra_redis.submits.RecordedEnqueue`)
    of its queue shard paired with its record's shard. A batch is grouped by those pairs,
    every message encoded before anything is sent, one call per pair (and named queue, in
    chunks), all sent at once.

    A message placed by its ``flowrra-shard-key`` header or as a limited task's (see the
    module docs) sits on its key's shard while its record sits on its id's. In a batch,
    such messages go in two calls, as with two servers, sent at once (one ENQUEUE per
    queue shard keeps their order; one SUBMIT per record shard would not): the
    records (STORE on their shards) and the messages (ENQUEUE); what they cannot promise
    is the app's two-call promise: a record that fails after its message was sent raises
    :class:`~flowrra.exceptions.MaybeQueuedError`, and a refused message marks its
    record FAILED (best effort) before its BrokerError is raised.
    """

    __slots__ = ("_broker", "_records", "_sends")

    def __init__(
        self,
        broker: ShardedRedisBroker,
        record_shards: Sequence[RedisBackend],
        sends: list[list[RecordedEnqueue | None]],
    ) -> None:
        self._broker = broker
        self._records = record_shards
        #: ``sends[m][r]``: the one-script submit of queue shard m with record shard r.
        self._sends = sends

    def __repr__(self) -> str:
        return f"ShardedSubmit({self._broker!r}, {len(self._records)} record shards)"

    def __call__(
        self, messages: Sequence[TaskMessage], records: Sequence[TaskResult]
    ) -> Awaitable[None]:
        """Send ``messages`` and ``records`` (the messages' PENDING records in order, then
        any of tasks recorded but not queued) now; an awaitable of the replies (see
        :class:`~flowrra.protocols.RecordedEnqueue` and the class docs)."""
        broker = self._broker
        count = len(self._records)
        sends = self._sends
        if len(messages) == 1 and len(records) == 1:  # submit: the hot path
            message = messages[0]
            send = sends[broker._shard_number(message)][shard_of(message.id, count)]
            if send is not None:
                return send(messages, records)
        groups: dict[tuple[int, int], tuple[list[TaskMessage], list[TaskResult], list[int]]] = {}
        apart: list[tuple[int, TaskMessage]] = []
        apart_records: list[TaskResult] = []
        homes = broker._homes
        for place, message in enumerate(messages):
            pair = (broker._shard_number(message), shard_of(message.id, count))
            if (
                sends[pair[0]][pair[1]] is None
                or (message.headers and SHARD_KEY in message.headers)
                or (homes and message.name in homes)
            ):
                # Placed by a key (or a limited task's home): its record's shard is its
                # id's, so messages of one key would spread over several SUBMIT calls to
                # one queue, each with its own sequence, and lose their batch order. One
                # ENQUEUE per queue shard keeps it.
                apart.append((place, message))
                apart_records.append(records[place])
                continue
            batch, recorded, places = groups.setdefault(pair, ([], [], []))
            batch.append(message)
            recorded.append(records[place])
            places.append(place)
        for record in records[len(messages) :]:  # a chain's later steps: with a call there
            r = shard_of(record.task_id, count)
            pair = next(
                (p for p in groups if p[1] == r),
                (shard_of(record.task_id, len(broker.shards)), r),  # paired: see the offer
            )
            groups.setdefault(pair, ([], [], []))[1].append(record)
        built = []
        for (m, r), (batch, recorded, places) in groups.items():
            send = sends[m][r]
            assert send is not None
            built.append((send, send.encoded(send.parts(batch, recorded, places))))
        calls = broker._enqueue_calls(apart) if apart else []
        # every message encoded: now send
        replies = [send.send_encoded(encoded) for send, encoded in built]
        if apart:
            replies.append(self._send_apart(calls, apart_records))
        if len(replies) == 1:
            return replies[0]
        return _last_of([asyncio.ensure_future(_awaited(reply)) for reply in replies])

    def _send_apart(
        self, calls: list[tuple[RedisBroker, str, list[Any], int]], records: list[TaskResult]
    ) -> Awaitable[None]:
        """The records (their shards' STORE) and then the messages (ENQUEUE) of messages
        whose shards do not pair, sent now; settled as the class docs say."""
        by_shard: dict[int, list[TaskResult]] = {}
        count = len(self._records)
        for record in records:
            by_shard.setdefault(shard_of(record.task_id, count), []).append(record)
        stored = [self._records[r].store_many(some) for r, some in by_shard.items()]
        enqueued = self._broker._send_calls(calls)
        return self._settled_apart(stored, enqueued, records, len(calls))

    async def _settled_apart(
        self,
        stored: list[Awaitable[None]],
        enqueued: Awaitable[None],
        records: list[TaskResult],
        calls: int,
    ) -> None:
        store_failure: Exception | None = None
        for reply in stored:
            try:
                await reply
            except Exception as exc:
                store_failure = store_failure or exc
        try:
            await enqueued
        except Exception as exc:
            if store_failure is None and calls == 1:
                await self._not_queued(records, exc)
                raise
            # Several ENQUEUE calls (shards, queues): others may have queued theirs, so
            # no record is marked FAILED (a queued task's would be refused when it runs).
            store_failure = store_failure or exc
            queued: bool | None = None
        else:
            queued = True
        if store_failure is not None:
            ids = [record.task_id for record in records]
            name = records[0].task_name or "?"
            raise MaybeQueuedError(ids, name, queued, store_failure) from store_failure

    async def _not_queued(self, records: list[TaskResult], exc: BaseException) -> None:
        """Mark ``records`` FAILED, their messages refused (best effort, as the app marks
        a refused submit's records)."""
        finished = time.time()
        by_shard: dict[int, list[TaskResult]] = {}
        count = len(self._records)
        for record in records:
            record.status = TaskStatus.FAILED
            record.error = f"NotQueued: {type(exc).__name__}: {exc}"
            record.finished_ts = finished
            by_shard.setdefault(shard_of(record.task_id, count), []).append(record)
        try:
            for r, some in by_shard.items():
                await self._records[r].store_many(some)
        except Exception:
            logger.warning("could not record %d tasks as not queued", len(records), exc_info=True)


#: A shard's place in a listing cursor once it has nothing more to list.
_EXHAUSTED = "-"
_CURSOR_KIND = "s"


class ShardedRedisBackend(BaseResultBackend):
    """A :class:`flowrra.protocols.ResultBackend` over S :class:`~flowrra_redis.RedisBackend`
    shards: a task's records live on the shard of its id (CRC-32 mod S). It is a
    BatchStore, KnownTasks, EventSource, ResultPages and ResultCounts, as one shard is:
    listings merge the shards' pages newest first, counts and events are summed and
    merged.

    Records written before a deployment went from one shard to S are in shard 0: ``get``
    and ``delete`` look there when the task's own shard has no record (one more read, for
    unknown ids only); a ``wait_for`` listens on the task's shard only.
    """

    sends_when_called = True

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        shards: int,
        prefix: str | None = None,
        **options: Any,
    ) -> None:
        if shards < 2:
            raise ValueError(
                f"a sharded backend needs shards >= 2, got {shards} (use RedisBackend)"
            )
        self.url = url
        base = prefix or prefix_from_url(url) or DEFAULT_PREFIX
        #: The shards, shard 0 (the unsharded keys) first.
        self.shards = [RedisBackend(url, prefix=p, **options) for p in shard_prefixes(base, shards)]
        self.ttl = self.shards[0].ttl

    @classmethod
    def from_config(cls, config: BackendConfig, shards: int) -> ShardedRedisBackend:
        return cls(
            config.url,
            shards=shards,
            ttl=config.ttl,
            max_connections=config.max_connections,
            socket_timeout=config.socket_timeout,
            retry_on_timeout=config.retry_on_timeout,
        )

    def __repr__(self) -> str:
        return f"ShardedRedisBackend({self.shards[0]!r}, shards={len(self.shards)})"

    def shard(self, task_id: str) -> RedisBackend:
        """The shard that keeps ``task_id``'s records."""
        return self.shards[shard_of(task_id, len(self.shards))]

    async def connect(self) -> None:
        await asyncio.gather(*(shard.connect() for shard in self.shards))

    async def close(self) -> None:
        results = await asyncio.gather(
            *(shard.close() for shard in self.shards), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # -- writing -------------------------------------------------------------------------

    def store(self, task_id: str, result: TaskResult) -> Awaitable[None]:
        return self.shard(task_id).store(task_id, result)

    def store_many(self, results: Sequence[TaskResult]) -> Awaitable[None]:
        """Each shard's records in its own calls, all sent before any reply is awaited."""
        groups: dict[int, list[TaskResult]] = {}
        count = len(self.shards)
        for result in results:
            groups.setdefault(shard_of(result.task_id, count), []).append(result)
        replies = [self.shards[n].store_many(group) for n, group in groups.items()]
        if len(replies) == 1:
            return replies[0]
        return _last_of([asyncio.ensure_future(_awaited(reply)) for reply in replies])

    def expects(self, task_id: str) -> bool:
        return self.shard(task_id).expects(task_id)

    # -- reading -------------------------------------------------------------------------

    async def get(self, task_id: str) -> TaskResult | None:
        shard = self.shard(task_id)
        found = await shard.get(task_id)
        if found is None and shard is not self.shards[0]:
            found = await self.shards[0].get(task_id)  # written before sharding
        return found

    async def wait_for(self, task_id: str, timeout: float | None) -> TaskResult:
        return await self.shard(task_id).wait_for(task_id, timeout)

    async def delete(self, task_id: str) -> bool:
        shard = self.shard(task_id)
        deleted = await shard.delete(task_id)
        if shard is not self.shards[0]:
            deleted = await self.shards[0].delete(task_id) or deleted
        return deleted

    async def counts(self, minutes: int) -> dict[str, Any]:
        """Each shard's counts, summed."""
        each = await asyncio.gather(*(shard.counts(minutes) for shard in self.shards))
        totals = {name: sum(c["totals"][name] for c in each) for name in each[0]["totals"]}
        per_minute = [
            {
                "minute": entries[0]["minute"],
                "success": sum(e["success"] for e in entries),
                "failed": sum(e["failed"] for e in entries),
            }
            for entries in zip(*(c["per_minute"] for c in each), strict=True)
        ]
        return {"totals": totals, "per_minute": per_minute}

    async def list(
        self,
        *,
        status: TaskStatus | None = None,
        task_name: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[TaskResult]:
        """Records newest first, by offset: pages of :meth:`list_page` up to ``offset +
        limit`` (prefer ``list_page``)."""
        return await list_by_pages(
            self, status=status, task_name=task_name, limit=limit, offset=offset
        )

    async def list_page(
        self,
        *,
        status: TaskStatus | None = None,
        task_name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[builtins.list[TaskResult], str | None]:
        """One page newest first over every shard (see
        :class:`flowrra.protocols.ResultPages`). Each shard gives its page from its own
        place in the cursor; the records are merged by their index score and id, as one
        shard orders them, and only those no shard that still has more could precede are
        returned: a page may come short, never out of order. The cursor holds each shard's
        place."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        places = self._places(cursor)
        live = [n for n, place in enumerate(places) if place != _EXHAUSTED]
        pages = await asyncio.gather(
            *(
                self.shards[n].list_page(
                    status=status, task_name=task_name, limit=limit, cursor=places[n] or None
                )
                for n in live
            )
        )
        scores = await asyncio.gather(
            *(
                self._scores(self.shards[n], status, task_name, page)
                for n, (page, _) in zip(live, pages, strict=True)
            )
        )
        merged: list[tuple[float, str, str, int, TaskResult]] = []
        frontier: tuple[float, str] | None = None
        for n, (page, next_cursor), page_scores in zip(live, pages, scores, strict=True):
            for record, (score, score_text) in zip(page, page_scores, strict=True):
                merged.append((score, record.task_id, score_text, n, record))
            if next_cursor is not None:
                _, at_score, at_id = decode_keyset(next_cursor)
                if frontier is None or (at_score, at_id) > frontier:
                    frontier = (at_score, at_id)
        merged.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)
        out: list[TaskResult] = []
        last: dict[int, tuple[str, str]] = {}
        for score, task_id, score_text, n, record in merged:
            if len(out) == limit or (frontier is not None and (score, task_id) < frontier):
                break
            out.append(record)
            last[n] = (score_text, task_id)
        counts = dict.fromkeys(live, 0)
        for _, _, _, n, _ in merged[: len(out)]:
            counts[n] += 1
        for n, (page, next_cursor) in zip(live, pages, strict=True):
            if counts[n] == len(page):  # all given: on from where the shard stopped
                places[n] = _EXHAUSTED if next_cursor is None else next_cursor
            elif counts[n]:
                places[n] = encode_keyset(*last[n])
        if all(place == _EXHAUSTED for place in places):
            return out, None
        return out, _encode_places(places)

    @staticmethod
    async def _scores(
        shard: RedisBackend,
        status: TaskStatus | None,
        task_name: str | None,
        page: builtins.list[TaskResult],
    ) -> builtins.list[tuple[float, str]]:
        """Each record's score in the index its page was read from (ZMSCORE): what orders
        it, and what a cursor after it holds."""
        if not page:
            return []
        index, _ = page_index(shard.keys, status, task_name)
        with shard.translating("cannot list results"):
            raw = await shard.pipe.execute("ZMSCORE", index, *(r.task_id for r in page))
        out = []
        for record, value in zip(page, raw, strict=True):
            if value is None:  # left the index meanwhile: placed by its submit time
                value = repr(record.submitted_ts or 0.0)
            score_text = text(value)
            out.append((float(score_text), score_text))
        return out

    def _places(self, cursor: str | None) -> builtins.list[str]:
        """Each shard's place in a listing: ``''`` (from the start), a shard's own cursor,
        or :data:`_EXHAUSTED`. ValueError for a cursor this backend did not make."""
        count = len(self.shards)
        if cursor is None:
            return [""] * count
        if not isinstance(cursor, str) or not 0 < len(cursor) <= 200 * count:
            raise ValueError(f"not a cursor this server made: {str(cursor)[:60]!r}")
        try:
            body = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        except (binascii.Error, ValueError):
            raise ValueError(f"not a cursor this server made: {cursor[:60]!r}") from None
        kind, *places = body.split("\n")
        if kind != _CURSOR_KIND or len(places) != count:
            raise ValueError(f"not a cursor of this listing: {cursor[:60]!r}")
        for place in places:
            if place not in ("", _EXHAUSTED):
                decode_keyset(place)  # ValueError if it is not one
        return places

    # -- events ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe_events(
        self,
        max_buffer: int = 10_000,
        on_connection: Callable[[bool], None] | None = None,
    ) -> AsyncIterator[AsyncIterator[TaskEvent]]:
        """Every shard's events, merged (one subscription per shard; ``on_connection``
        hears of each: see :meth:`RedisBackend.subscribe_events`)."""
        hub = EventHub()
        async with contextlib.AsyncExitStack() as stack:
            sources = [
                await stack.enter_async_context(shard.subscribe_events(max_buffer, on_connection))
                for shard in self.shards
            ]
            async with hub.subscribe(max_buffer) as events:

                async def pump(source: AsyncIterator[TaskEvent]) -> None:
                    async for event in source:
                        hub.publish(event)

                pumps = [asyncio.create_task(pump(source)) for source in sources]
                try:
                    yield events
                finally:
                    for task in pumps:
                        task.cancel()
                    await asyncio.gather(*pumps, return_exceptions=True)


def _encode_places(places: Sequence[str]) -> str:
    body = "\n".join([_CURSOR_KIND, *places])
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


async def _awaited(reply: Awaitable[None]) -> None:
    await reply
