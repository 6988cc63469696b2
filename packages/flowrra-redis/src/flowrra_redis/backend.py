"""The Redis result backend: records with a TTL, completions announced over pub/sub.

Records go through :class:`~flowrra_redis.records.RecordWriter`: the ones stored in one
event-loop turn are one Lua script call, which writes each record (``result:<id>``, JSON;
a complete one with the TTL, and never over a complete one), publishes it on the
``events`` channel for monitors and, when the task is complete, publishes it on the
``done`` channel. ``wait_for`` never polls: each
process (each event loop in it that waits: usually one) keeps ONE pub/sub connection
subscribed to ``done`` and hands each completion to the futures waiting for that id. A
waiter registers its future first and only then reads the stored record, so a completion
that lands in between is never missed.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from flowrra.awaitables import DONE
from flowrra.backends.base import BaseResultBackend, list_by_pages
from flowrra.config import BackendConfig
from flowrra.cursors import decode_keyset, encode_keyset
from flowrra.events import EventHub, TaskEvent
from flowrra.exceptions import BackendError
from flowrra.task import TaskResult, TaskStatus
from flowrra_redis._redis_compat import on_reconnect
from flowrra_redis.codec import decode_result, encode_result, number_text
from flowrra_redis.connection import (
    UNAVAILABLE,
    Keys,
    RedisEndpoint,
    Translating,
    boundary,
    message_kind,
    next_message,
    retrieved,
    subscribe,
    text,
)
from flowrra_redis.loops import LoopState, running_loop
from flowrra_redis.pipeline import TRY_AGAIN, AutoPipeline
from flowrra_redis.records import INLINE_LIMIT, PAGE, STORE, RecordWriter

__all__ = ["DEFAULT_TTL", "RedisBackend", "decode_event", "decode_result", "encode_result"]

logger = logging.getLogger("flowrra.redis.backend")

#: Most tasks whose completion a process keeps for a ``wait_for`` to come (see
#: ``RedisBackend._expect``); past it, the oldest are forgotten and read with GET instead.
EXPECTED_LIMIT = 10_000
#: Completion notifications up to this size are kept for it; larger ones are read.
EXPECTED_RECORD_LIMIT = 4096
_UNKNOWN = b""  # wait_for: the task is not one whose completion was kept

#: Seconds a record is kept when ``BackendConfig.ttl`` is None: one day.
DEFAULT_TTL = 86_400
_COMPLETE = (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED)
_LIVE_NAMES = frozenset({"pending", "running", "retrying"})
#: Most records ``list_page`` returns at once.
MAX_PAGE = 1000
#: Longest window of ``counts``, in minutes (per-minute counts are kept a little longer).
MAX_MINUTES = 240
#: A page whose records add up to more bytes than this is decoded in a thread; a smaller
#: one in chunks of DECODE_CHUNK records (about 0.1 ms each), yielding to the loop.
DECODE_IN_THREAD = 64 * 1024
DECODE_CHUNK = 20


def page_index(keys: Keys, status: TaskStatus | None, task_name: str | None) -> tuple[str, str]:
    """The index ``list_page`` reads for these filters, and the status it keeps as a
    record's head says it (``''``: any)."""
    # the status as a record's head says it (a CANCELLED record's says "failed")
    head = TaskStatus.FAILED if status is TaskStatus.CANCELLED else status
    wanted = "" if head is None else head.value + '"'
    if task_name is not None:
        return keys.name_index(task_name), wanted
    if status is TaskStatus.FAILED or status is TaskStatus.CANCELLED:
        # both are written "failed" (a CANCELLED record says so in its trailing object)
        # and kept in the failed index: told apart once decoded
        return keys.failed_index, ""
    # most records are SUCCESS; live ones are the newest, near the top
    return keys.results_index, wanted


def _decode_all(bodies: Sequence[bytes]) -> list[TaskResult]:
    return [decode_result(body) for body in bodies]


def _record_call(
    result: TaskResult, task_id: str | None = None
) -> tuple[str, str, TaskStatus, str, str, str | None]:
    """What :meth:`RecordWriter.write` takes for ``result``; encodes it (raising
    SerializationError before anything is sent). A record larger than
    :data:`~flowrra_redis.records.INLINE_LIMIT` gets a second, small encoding for the
    ``events`` channel: monitors see its status and error, not its payload."""
    body = encode_result(result)
    event = ""
    if len(body) > INLINE_LIMIT:
        error = result.error
        event = encode_result(
            TaskResult(
                result.task_id,
                result.status,
                task_name=result.task_name,
                error=error if error is None or len(error) <= 1000 else error[:1000] + "…",
                submitted_at=result.submitted_ts,
                started_at=result.started_ts,
                finished_at=result.finished_ts,
                retries=result.retries,
                priority=result.priority,
            )
        )
    return (
        result.task_id if task_id is None else task_id,
        body,
        result.status,
        number_text(result.submitted_ts or time.time()),  # one text for a batch's shared time
        event,
        result.task_name,
    )


class _Reply:
    """A write under way: awaiting it waits for Redis's reply (a failure raises
    BackendError: this is ``store``'s error boundary). Not a coroutine, so a caller can
    tell it from a store that has not started (the worker hands these to its settler)."""

    __slots__ = ("_boundary", "_reply")

    def __init__(self, reply: asyncio.Future[None], boundary: Translating) -> None:
        self._reply = reply
        self._boundary = boundary

    def __await__(self) -> Generator[Any, None, None]:
        with self._boundary:
            yield from self._reply.__await__()


def decode_event(data: bytes | str) -> TaskEvent:
    """The event a record published on the ``events`` channel stands for."""
    return TaskEvent.from_result(decode_result(data))


class _BackendLoop(LoopState):
    """The backend's state in one event loop: its record writer, the waiters of
    ``wait_for`` and the one subscription to ``done`` that wakes them."""

    __slots__ = ("expected", "listener", "listening", "subscribed", "waiters", "writer")

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None, client: aioredis.Redis, pipe: AutoPipeline
    ) -> None:
        super().__init__(loop, client, pipe)
        self.writer: RecordWriter | None = None
        self.waiters: dict[str, list[asyncio.Future[TaskResult | None]]] = {}
        # Tasks submitted in this loop while subscribed to ``done``: their completion
        # cannot be missed, so waiting for one needs no GET. Task id -> its completion
        # notification once it came (b"" when it is to be read), None before.
        self.expected: collections.OrderedDict[str, bytes | None] = collections.OrderedDict()
        self.listening = False
        self.listener: asyncio.Task[None] | None = None
        self.subscribed: asyncio.Event | None = None

    def expect(self, task_id: str) -> None:
        """Remember that ``task_id``'s completion will reach this loop's listener (its
        PENDING record goes out before the message, while the listener is subscribed)."""
        expected = self.expected
        expected[task_id] = None
        if len(expected) > EXPECTED_LIMIT:
            expected.popitem(last=False)  # its waiter, if one comes, reads the record

    def forget(self, task_id: str, future: asyncio.Future[TaskResult | None]) -> None:
        futures = self.waiters.get(task_id)
        if futures is not None:
            with contextlib.suppress(ValueError):
                futures.remove(future)
            if not futures:
                del self.waiters[task_id]

    def deliver(self, data: bytes) -> None:
        """A completion published on ``done``: wake its waiters, or keep it for the
        ``wait_for`` to come."""
        bar = data.find(b"|")
        task_id = (data if bar < 0 else data[:bar]).decode()
        futures = self.waiters.get(task_id)
        if not futures:
            if task_id in self.expected:  # kept for the wait_for that will come
                inline = bar >= 0 and len(data) - bar - 1 <= EXPECTED_RECORD_LIMIT
                self.expected[task_id] = data[bar + 1 :] if inline else b""
            return
        record = None
        if bar >= 0:
            try:
                record = decode_result(data[bar + 1 :])
            except (ValueError, TypeError, KeyError):
                logger.warning("undecodable completion for task %s; reading it instead", task_id)
        for future in futures:
            if not future.done():
                future.set_result(record)

    def wake_all(self) -> None:
        for futures in self.waiters.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)

    def set_aside(self) -> None:
        listener = self.listener
        if listener is not None and not listener.done():
            # Its loop is gone (closed, or the parent's after a fork): it can never run
            # again and is dropped on purpose, so asyncio need not report it as pending.
            listener._log_destroy_pending = False  # type: ignore[attr-defined]
        super().set_aside()

    async def listener_reconnected(self, connection: object) -> None:
        """redis-py reconnected the listener: completions may have been missed meanwhile.
        Waiters read their records; tasks submitted before are no longer expected."""
        self.listening = False
        self.expected.clear()
        self.wake_all()


class RedisBackend(RedisEndpoint[_BackendLoop], BaseResultBackend):
    """A :class:`flowrra.protocols.ResultBackend` on Redis.

    ``ttl``: seconds a complete record (SUCCESS, FAILED) is kept (default one day),
    counted from its completion; a PENDING, RUNNING or RETRYING record does not expire,
    so a delayed or long task never becomes unknown while it may still run. A complete
    record is never replaced (a redelivery of a finished task cannot rewrite it).
    ``prefix``: key prefix, with a Redis Cluster hash tag (also ``?prefix=`` in the
    URL). ``retries``: how many times a command lost with its connection is sent again
    (and a lost subscription re-established before a waiter hears of it) before the caller
    gets a BackendError. ``busy_timeout``: seconds a command Redis answers "not now"
    (``LOADING``, ``READONLY``, ``MASTERDOWN``) is sent again before the caller gets a
    BackendError; ``wait_for`` keeps trying until its own ``timeout``.
    ``eviction_warning``: as for the broker, a WARNING at ``connect``
    when the server's ``maxmemory-policy`` evicts keys (``False`` or
    ``?eviction_warning=off`` turns it off).

    Every public method raises :class:`~flowrra.exceptions.BackendError` (naming the
    server, never the password) for whatever redis-py raises.
    """

    #: ``store`` sends the write when called (see ``ResultBackend``); it is also a
    #: ``BatchStore``, a ``KnownTasks``, an ``EventSource``, a ``ResultPages`` and a
    #: ``ResultCounts`` (:mod:`flowrra.protocols`).
    sends_when_called = True
    state_class = _BackendLoop
    error_type = BackendError

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        ttl: float | None = None,
        prefix: str | None = None,
        max_connections: int = 50,
        socket_timeout: float = 5.0,
        retry_on_timeout: bool = True,
        retries: int = 3,
        client: aioredis.Redis | None = None,
        eviction_warning: bool = True,
        busy_timeout: float = 30.0,
    ) -> None:
        if ttl is not None and ttl <= 0:
            raise ValueError(f"ttl must be > 0 seconds or None, got {ttl}")
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
        self.ttl = float(ttl) if ttl is not None else float(DEFAULT_TTL)
        self._storing = self.translating("cannot store a result")

    @classmethod
    def from_config(cls, config: BackendConfig) -> RedisBackend:
        return cls(
            config.url,
            ttl=config.ttl,
            max_connections=config.max_connections,
            socket_timeout=config.socket_timeout,
            retry_on_timeout=config.retry_on_timeout,
        )

    @boundary("cannot connect the backend")
    async def connect(self) -> None:
        # Loaded up front: RUNNING records are sent as EVALSHA without waiting.
        await self.pipe.execute("SCRIPT", "LOAD", STORE.body)
        if self.eviction_warning:
            await self._check_eviction_policy()

    async def _close_state(self, state: _BackendLoop) -> None:
        if state.listener is not None:
            state.listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await state.listener
            state.listener = None
            state.subscribed = None
        for futures in state.waiters.values():
            for future in futures:
                if not future.done():
                    future.cancel()
        state.waiters.clear()
        await super()._close_state(state)

    # -- writing -------------------------------------------------------------------------

    def store_many(self, results: Sequence[TaskResult]) -> Awaitable[None]:
        """Store several records; returns an awaitable of Redis's replies. Each record is
        encoded and queued in turn, in script calls of up to
        :data:`~flowrra_redis.records.BURST_LIMIT` records that go out as they fill, so
        Redis stores the first while the rest are encoded. A record that cannot be encoded
        raises SerializationError; the ones before it are stored all the same (records
        are independent, unlike the messages of ``enqueue_many``)."""
        state = self._here()
        expect = state.expect if state.listening else None

        def calls() -> Iterator[tuple[str, str, TaskStatus, str, str, str | None]]:
            for result in results:
                call = _record_call(result)
                if expect is not None and call[2] is TaskStatus.PENDING:
                    expect(call[0])
                yield call

        waiters = self._records(state).write_many(calls())
        for waiter in waiters:
            waiter.add_done_callback(retrieved)  # a caller may give up on them
        return self._all_stored(waiters)

    async def _all_stored(self, waiters: list[asyncio.Future[None]]) -> None:
        with self._storing:
            for waiter in waiters:
                await waiter

    def store(self, task_id: str, result: TaskResult) -> Awaitable[None]:
        """Queue the record for this loop turn's script call (raising SerializationError
        now if it cannot be encoded) and return an awaitable of Redis's reply: the write
        is under way before the caller awaits (``submit`` overlaps it with the enqueue).
        PENDING is stored with NX, so it never replaces a status recorded before it."""
        call = _record_call(result, task_id)
        state = self._here()
        writer = state.writer or self._records(state)
        if result.status is TaskStatus.RUNNING:
            # Write-behind: the task starts without waiting for this round trip, and the
            # final record, queued after it, lands after it (for a short task, in the same
            # script call, which then skips writing it). A lost RUNNING record is replaced
            # by that one.
            writer.write_behind(*call)
            return DONE
        if state.listening and result.status is TaskStatus.PENDING:
            state.expect(task_id)
        reply = writer.write(*call)
        reply.add_done_callback(retrieved)  # a caller may give up on it (submit)
        return _Reply(reply, self._storing)

    def store_call(self, results: Sequence[TaskResult]) -> tuple[list[str], list[Any]]:
        """STORE's KEYS and ARGV for ``results`` (encoded now: SerializationError before
        anything is sent), for a broker that stores them in its own script
        (:mod:`flowrra_redis.submits`). A PENDING one's completion is expected, as
        :meth:`store` expects it."""
        state = self._here()
        calls = [_record_call(result) for result in results]
        if state.listening:
            for call in calls:
                if call[2] is TaskStatus.PENDING:
                    state.expect(call[0])
        return self._records(state).store_call(calls)

    def pending_writer(self) -> tuple[RecordWriter, Callable[[str], None] | None]:
        """For a broker that writes PENDING records in its own script call, encoded from
        their messages (:mod:`flowrra_redis.submits`): this loop's record writer (the
        script's STORE keys and arguments), and what to call with each task id before
        its record is sent so that :meth:`expects` knows it as after :meth:`store` (None:
        nothing, no listener)."""
        state = self._here()
        return self._records(state), state.expect if state.listening else None

    def expects(self, task_id: str) -> bool:
        """Whether ``task_id`` was submitted in this event loop while it listened to
        ``done`` (its completion cannot be missed; see ``ResultBackend``), and not yet
        awaited."""
        return task_id in self._here().expected

    def _records(self, state: _BackendLoop | None = None) -> RecordWriter:
        """The record writer of ``state`` (default: the running loop's)."""
        if state is None:
            state = self._here()
        writer = state.writer
        if writer is None:
            writer = state.writer = RecordWriter(state.pipe, self.keys, int(self.ttl * 1000))
        return writer

    # -- reading -------------------------------------------------------------------------

    @boundary("cannot read a result")
    async def get(self, task_id: str) -> TaskResult | None:
        data = await self.pipe.execute("GET", self.keys.result(task_id))
        return None if data is None else decode_result(data)

    @boundary("cannot wait for a result", passing=(TimeoutError,))
    async def wait_for(self, task_id: str, timeout: float | None) -> TaskResult:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        state = self._here()
        await self._ensure_listener(state)
        notified = state.expected.pop(task_id, _UNKNOWN)
        if notified:  # it came before this call: the record is in the notification
            with contextlib.suppress(ValueError, TypeError, KeyError):
                return decode_result(notified)
        # With notified None, the completion has not come yet and will reach the listener:
        # no need to read the record first.
        read_first = notified is not None
        while True:
            future: asyncio.Future[TaskResult | None] = loop.create_future()
            state.waiters.setdefault(task_id, []).append(future)
            try:
                # Armed before reading: a completion published from here on resolves it.
                if read_first:
                    current = await self._read(task_id, deadline)
                    if current is not None and current.status in _COMPLETE:
                        return current
                read_first = True
                remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
                async with asyncio.timeout(remaining):
                    delivered = await future
                if delivered is not None:
                    return delivered
                # None: a large record announced by id, or the listener reconnected; read.
            finally:
                state.forget(task_id, future)

    async def _read(self, task_id: str, deadline: float | None) -> TaskResult | None:
        """``get`` for a waiter: a "not now" reply (LOADING after a restart, a failover's
        READONLY or MASTERDOWN) is tried again past ``busy_timeout``, until the wait's
        own ``deadline`` (loop time), which bounds each attempt too."""
        loop = asyncio.get_running_loop()
        while True:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError
            try:
                async with asyncio.timeout(remaining):
                    return await self.get(task_id)
            except BackendError as exc:
                if not isinstance(exc.__cause__, TRY_AGAIN):
                    raise
            pause = 0.5 if remaining is None else min(0.5, remaining)
            await asyncio.sleep(pause)

    async def _ensure_listener(self, state: _BackendLoop) -> None:
        listener, subscribed = state.listener, state.subscribed
        if listener is not None and not listener.done() and subscribed and subscribed.is_set():
            return  # the usual case: nothing to wait for
        if listener is None or listener.done():
            subscribed = state.subscribed = asyncio.Event()
            listener = state.listener = asyncio.create_task(
                self._listen(state), name="flowrra-redis-results"
            )
        assert subscribed is not None
        waiting = asyncio.ensure_future(subscribed.wait())
        done, _ = await asyncio.wait({waiting, listener}, return_when=asyncio.FIRST_COMPLETED)
        if waiting not in done:
            waiting.cancel()
            listener.result()  # raises why it stopped

    async def _listen(self, state: _BackendLoop) -> None:
        """The one subscriber of this event loop: resolves waiters from ``done``;
        reconnects with backoff and, after a reconnect, wakes every waiter to re-read its
        record."""
        failures = 0
        subscribed = state.subscribed
        assert subscribed is not None
        while True:
            # Subscribe confirmations are kept: they say when messages start to arrive.
            pubsub: PubSub = state.client.pubsub()
            try:
                await subscribe(pubsub, self.keys.done)
                # redis-py reconnects a pub/sub connection by itself and subscribes again;
                # what was published in between is lost, so it must be known here.
                on_reconnect(pubsub, state.listener_reconnected)
                if failures:
                    state.wake_all()  # completions may have been missed while down
                failures = 0
                while True:
                    message = await next_message(pubsub)
                    if message is None:
                        continue
                    kind = message_kind(message)
                    if kind == "message":
                        state.deliver(message["data"])
                    elif kind == "subscribe":
                        state.listening = True
                        subscribed.set()
            except asyncio.CancelledError:
                raise
            except UNAVAILABLE as exc:
                failures += 1
                if not subscribed.is_set() and failures > self.retries:
                    raise  # to the waiters (wait_for's boundary)
                delay = min(0.1 * 2 ** (failures - 1), 5.0)
                logger.warning("result subscription lost (%s); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)
            finally:
                # What this loop submitted may complete unseen until it subscribes again.
                state.listening = False
                state.expected.clear()
                if running_loop() is state.loop:  # not when collected after its loop closed
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()

    @contextlib.asynccontextmanager
    async def subscribe_events(
        self,
        max_buffer: int = 10_000,
        on_connection: Callable[[bool], None] | None = None,
    ) -> AsyncIterator[AsyncIterator[TaskEvent]]:
        """Task events from every process that stores into this backend (workers,
        producers), for monitors: ``async with backend.subscribe_events() as events:
        async for event in events: ...``. One pub/sub connection per subscription (the UI
        fans one out to its clients); a subscriber ``max_buffer`` events behind loses the
        oldest. Entering returns once Redis confirmed the subscription, or raises
        BackendError when it could not be made (``retries`` attempts after the first). A
        connection lost later is re-established with backoff; events published while it
        was down are not replayed (read the records for the truth): ``on_connection``, when
        given, is called with ``False`` when the connection is lost and with ``True`` each
        time Redis confirms the subscription (the first time included), so a monitor can
        say it is not live and catch up when it is again."""
        hub = EventHub()  # the fan-out and the bounded buffer of in-process events
        subscribed = asyncio.Event()

        async def pump() -> None:
            failures = 0
            while True:
                pubsub: PubSub = self.client.pubsub()
                try:
                    # SUBSCRIBE only sends; the subscription holds once Redis confirms it,
                    # and only then may the caller count on seeing what is published next.
                    await subscribe(pubsub, self.keys.events)
                    while True:
                        message = await next_message(pubsub)
                        if message is None:
                            continue
                        kind = message_kind(message)
                        if kind == "subscribe":
                            failures = 0
                            subscribed.set()
                            if on_connection is not None:
                                on_connection(True)
                            continue
                        if kind != "message":
                            continue
                        try:
                            hub.publish(decode_event(message["data"]))
                        except (ValueError, TypeError, KeyError):
                            logger.warning("undecodable task event: %r", message["data"][:200])
                except UNAVAILABLE as exc:
                    failures += 1
                    if not subscribed.is_set() and failures > self.retries:
                        raise  # to the caller entering the subscription
                    if on_connection is not None and failures == 1:
                        on_connection(False)
                    delay = min(0.1 * 2 ** (failures - 1), 5.0)
                    logger.warning("event subscription lost (%s); retrying in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()

        async with hub.subscribe(max_buffer) as events:
            reader = asyncio.create_task(pump(), name="flowrra-redis-events")
            try:
                with self.translating("cannot subscribe to task events"):
                    waiting = asyncio.ensure_future(subscribed.wait())
                    try:
                        await asyncio.wait({waiting, reader}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiting.cancel()
                    if reader.done():
                        reader.result()  # raises why it stopped
                yield events
            finally:
                if not reader.done():
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await reader

    async def list(
        self,
        *,
        status: TaskStatus | None = None,
        task_name: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[TaskResult]:
        """Records newest first, by offset (flowrra 0.1.8's call): pages of
        :meth:`list_page` up to ``offset + limit``, so it costs what lies before the page;
        prefer ``list_page``."""
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
        """One page, newest first, read from an index (see
        :class:`flowrra.protocols.ResultPages`): the task's when ``task_name`` is given,
        else the failed records' for FAILED, else the index of every record; records of
        another status are skipped in Redis, looking at most ``max(4 * limit, 1000)`` ids
        per call (a page may then come short, with a ``next_cursor``). SUCCESS is most
        records, and live ones (PENDING, RUNNING, RETRYING) are the latest submitted, so
        these filters find theirs near the top; the STORE script keeps no index per live
        status, which would cost every task two commands more. One script call reads the
        ids and their records and drops ids whose record expired. A page over
        :data:`DECODE_IN_THREAD` bytes is decoded in a thread, a smaller one in chunks that
        yield to the loop, so no page holds the caller's event loop for long."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        after_score, after_id = "", ""
        if cursor is not None:
            after_score, _, after_id = decode_keyset(cursor)
        k = self.keys
        index, wanted = page_index(k, status, task_name)
        with self.translating("cannot list results"):
            bodies, last_score, last_id, more = await self.pipe.run_script(
                PAGE,
                [index, k.results_index],
                [k.result(""), limit, after_score, after_id, max(4 * limit, 1000), wanted],
            )
        if sum(len(body) for body in bodies) > DECODE_IN_THREAD:
            records = await asyncio.to_thread(_decode_all, bodies)
        else:  # in chunks, yielding to the loop between them
            records = _decode_all(bodies[:DECODE_CHUNK])
            for start in range(DECODE_CHUNK, len(bodies), DECODE_CHUNK):
                await asyncio.sleep(0)
                records += _decode_all(bodies[start : start + DECODE_CHUNK])
        if status is TaskStatus.FAILED or status is TaskStatus.CANCELLED:
            records = [record for record in records if record.status is status]
        next_cursor = encode_keyset(text(last_score), text(last_id)) if more else None
        return records, next_cursor

    async def counts(self, minutes: int) -> dict[str, Any]:
        """Totals and completions per minute, from the counts :data:`STORE` keeps (see
        :class:`flowrra.protocols.ResultCounts`): a few commands in one round trip,
        whatever the number of records."""
        if not 1 <= minutes <= MAX_MINUTES:
            raise ValueError(f"minutes must be between 1 and {MAX_MINUTES}, got {minutes}")
        k = self.keys
        now_minute = int(time.time()) // 60
        first = now_minute - minutes + 1
        with self.translating("cannot count results"):
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hgetall(k.totals)
                for minute in range(first, now_minute + 1):
                    pipe.hmget(k.minute(minute), "success", "failed")
                replies = await pipe.execute()
        kept = {text(key): int(value) for key, value in replies[0].items()}
        names = ("pending", "running", "retrying", "success", "failed", "retries")
        return {
            # max(0, ...): a count lowered by a record deleted behind the backend's back
            "totals": {name: max(0, kept.get(name, 0)) for name in names},
            "per_minute": [
                {"minute": minute * 60, "success": int(ok or 0), "failed": int(bad or 0)}
                for minute, (ok, bad) in zip(range(first, now_minute + 1), replies[1:], strict=True)
            ],
        }

    @boundary("cannot delete a result")
    async def delete(self, task_id: str) -> bool:
        """Forget a task's record; True if there was one."""
        k = self.keys
        data = await self.pipe.execute("GET", k.result(task_id))
        record = None
        if data is not None:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                record = decode_result(data)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(k.result(task_id))
            pipe.zrem(k.results_index, task_id)
            pipe.zrem(k.failed_index, task_id)
            if record is not None and record.task_name is not None:
                pipe.zrem(k.name_index(record.task_name), task_id)
            deleted = (await pipe.execute())[0]
            if deleted and record is not None and record.status.value in _LIVE_NAMES:
                await self.client.hincrby(k.totals, record.status.value, -1)
        return bool(deleted)
