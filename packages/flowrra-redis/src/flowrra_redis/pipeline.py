"""Automatic pipelining: commands issued while the connection is busy go out together.

redis-py spends most of a command's cost around the round trip (a pool checkout, retry
wrappers, a timeout task per read), and a worker's tasks each send several commands. Here
every caller appends its command to a shared list and awaits a future; one connection
(opened by redis-py, so URLs, AUTH, SELECT and TLS work as anywhere else) takes, each loop
turn, everything waiting as one write. Its replies are parsed with hiredis as the bytes
arrive (the connection's transport is handed to a protocol of ours, through
:mod:`flowrra_redis._redis_compat`, the one module that touches redis-py's internals) and
resolve the futures in order, with no reader task and no timer per reply. With N tasks in
flight, their commands share round trips: the more load, the bigger the batches.

A command Redis answers with "not now" (``LOADING`` after a restart, a failover's
``READONLY`` or ``MASTERDOWN``: :data:`TRY_AGAIN`) is sent again after a backoff, for up to
``busy_timeout`` seconds. On a located URL (Sentinel, Cluster) a pipeline leaves a master
as soon as its locator names another (:meth:`AutoPipeline.follow`). Commands lost
with a dropped connection (or one that stopped answering) are sent again, like
redis-py's own retries, on one new connection opened after a backoff, ahead of what was
queued meanwhile: commands on one pipeline reach Redis in the order they were queued,
retries included. A script unknown to the server
(after a restart) is sent again with its body. A reply settles its caller's future (or a
batch writer's sink) in the call that parsed it.

A pipeline belongs to one event loop (its connection's transport is that loop's): the
first loop that sends through it, or the one running when it is made. Used from another
loop it raises at once instead of writing to a socket nobody reads (which would hang);
:class:`~flowrra_redis.connection.RedisEndpoint` gives each loop a pipeline of its own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
from asyncio.events import _get_running_loop
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import hiredis
import redis.asyncio as aioredis
import redis.exceptions as redis_errors

from flowrra_redis._redis_compat import (
    RedisConnection,
    checkout,
    parse_error,
    pool_options,
    release,
    take_transport,
)

__all__ = ["TRY_AGAIN", "UNAVAILABLE", "AutoPipeline", "ReplySink", "Script"]

_pack_command: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command

logger = logging.getLogger("flowrra.redis")

#: Errors that mean "the server could not be reached or answered too late": a command
#: lost with them is retried here; callers turn them into BrokerError / BackendError.
UNAVAILABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)

#: Replies that mean "not now, try again": ``LOADING`` (a restarted server reading its data
#: set), ``CLUSTERDOWN`` (a cluster electing a new master), ``READONLY`` and
#: ``MASTERDOWN`` (a failover: the connection reaches a replica, or
#: a replica lost its master), ``TRYAGAIN`` (a cluster slot on the move). Redis did not
#: run the command, so sending it again is safe; it is sent again after a backoff until
#: the pipeline's ``busy_timeout`` (or the caller, by cancelling) gives up.
TRY_AGAIN: tuple[type[redis_errors.RedisError], ...] = (
    redis_errors.BusyLoadingError,
    redis_errors.ReadOnlyError,
    redis_errors.MasterDownError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,
)
#: Connection errors that trying again cannot mend: a password missing or wrong.
_REFUSED = (redis_errors.AuthenticationError, redis_errors.AuthorizationError)
#: Of those, the ones that say the connection reaches the wrong server: reconnect.
_RECONNECT = (redis_errors.ReadOnlyError, redis_errors.MasterDownError)


#: Bytes written to a connection that its socket has not taken yet, over which a writer
#: that asks (:meth:`AutoPipeline.written`) waits: about eight ``submit_many`` calls of
#: small tasks, so Redis never waits for the next while it is built.
WRITE_AHEAD = 4 * 1024 * 1024


class Script:
    """A Lua script, sent as EVALSHA (and once as EVAL if the server does not know it).

    ``sharded``: the same script publishing with ``SPUBLISH`` instead of ``PUBLISH``
    (and counting a channel's subscribers with ``PUBSUB SHARDNUMSUB``, not ``NUMSUB``;
    itself when it publishes nothing), which a pipeline to a Redis Cluster sends: a
    classic ``PUBLISH`` is copied to every node of a cluster over its bus, a shard
    channel's message only to the nodes serving its slot (Redis 7)."""

    def __init__(self, body: str, *, sharded: bool = False) -> None:
        self.body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()
        self.sharded: Script = self
        if not sharded and "'PUBLISH'" in body:
            shard_channels = body.replace("'PUBLISH'", "'SPUBLISH'")
            shard_channels = shard_channels.replace("'NUMSUB'", "'SHARDNUMSUB'")
            self.sharded = Script(shard_channels, sharded=True)


class ReplySink(Protocol):
    """Where a command's reply goes: an :class:`asyncio.Future`, or an object of a batch
    writer that settles its own waiters in the same call (no loop turn in between)."""

    def done(self) -> bool: ...

    def set_result(self, result: Any, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


_Sink = TypeVar("_Sink", bound=ReplySink)


class _Command:
    """One command and where its reply goes. A reply settles the sink in the call that
    parsed it (a future in between would cost a loop turn per hop before the caller
    wakes); an unknown script is sent again with its body. Retries after a lost connection
    are the pipeline's (:meth:`AutoPipeline._requeue`): they keep the commands' order."""

    __slots__ = (
        "args",
        "attempt",
        "busy_tries",
        "busy_until",
        "outer",
        "pipeline",
        "redirects",
        "script",
    )

    def __init__(
        self,
        pipeline: AutoPipeline,
        args: tuple[Any, ...],
        script: Script | None,
        outer: ReplySink,
    ) -> None:
        self.pipeline = pipeline
        self.args = args
        self.script = script
        self.outer = outer
        self.attempt = 0  # connections it was lost with
        self.busy_until: float | None = None  # after a "try again" reply: until when
        self.busy_tries = 0
        self.redirects = 0  # MOVED / ASK replies followed

    def resolve(self, reply: Any) -> None:
        if not self.outer.done():  # else the caller gave up (cancelled)
            self.outer.set_result(reply)

    def fail(self, error: Exception) -> None:
        """Redis answered with an error (or the command cannot be retried)."""
        outer, script = self.outer, self.script
        if outer.done():
            return
        if script is not None and isinstance(error, redis_errors.NoScriptError):
            self.args = ("EVAL", script.body, *self.args[2:])
            self.script = None
            self.pipeline._queue(self)
        elif isinstance(error, redis_errors.AskError):  # MovedError is one too
            self.pipeline._redirect(self, error)
        elif not (isinstance(error, TRY_AGAIN) and self.pipeline._try_again(self, error)):
            outer.set_exception(error)


class _Link(asyncio.Protocol):
    """One open connection: the commands written to it, in order, settled from
    ``data_received`` as hiredis parses the replies.

    A watchdog fails the link when replies are due and none has come for ``timeout``
    seconds (one timer per link, not one per reply).
    """

    #: The connection's socket, set once the link has taken it over (``_connect``).
    transport: asyncio.WriteTransport

    def __init__(
        self,
        pipeline: AutoPipeline,
        connection: RedisConnection,
        timeout: float | None,
    ) -> None:
        self.pipeline = pipeline
        self.connection = connection
        self.sent: collections.deque[_Command] = collections.deque()
        self.lost = False
        self._hiredis = hiredis.Reader(replyError=redis_errors.ResponseError)
        self._timeout = timeout
        self._replies = 0
        self._watchdog: asyncio.TimerHandle | None = None
        #: Set while the transport holds over WRITE_AHEAD bytes its socket has not taken.
        self.paused: asyncio.Future[None] | None = None

    def pause_writing(self) -> None:
        if self.paused is None:
            self.paused = self.pipeline.loop.create_future()

    def resume_writing(self) -> None:
        paused, self.paused = self.paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    def write(self, data: bytes, commands: list[_Command]) -> None:
        self.sent.extend(commands)
        self.transport.write(data)
        if self._watchdog is None and self._timeout is not None:
            self._arm()

    def _arm(self) -> None:
        assert self._timeout is not None
        self._watchdog = self.pipeline.loop.call_later(self._timeout, self._check, self._replies)

    def _check(self, replies_then: int) -> None:
        self._watchdog = None
        if self.lost or not self.sent:
            return
        if self._replies == replies_then:
            self.pipeline._lose(self, TimeoutError())
        else:
            self._arm()

    def data_received(self, data: bytes) -> None:
        parser = self._hiredis
        sent = self.sent
        try:
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                self._replies += 1
                command = sent.popleft()
                try:
                    if isinstance(reply, redis_errors.ResponseError):
                        command.fail(parse_error(str(reply)))
                        if self.lost:  # a MOVED reply: the rest goes to the new master
                            return
                    else:
                        command.resolve(reply)
                except Exception:  # a sink's bug: Redis ran the command, the link is fine
                    logger.exception("a Redis reply could not be handed to its caller")
        except Exception as exc:  # a protocol error, or a reply nobody asked for
            self.pipeline._lose(self, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost:
            self.pipeline._lose(self, exc or ConnectionError("the server closed the connection"))

    def close(self) -> None:
        self.lost = True
        self.resume_writing()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None


class AutoPipeline:
    """Runs commands on one dedicated connection of ``client``'s pool, batched.

    Callers append to ``_waiting``; the first one of a loop turn schedules ``_flush`` with
    ``call_soon``, so everything queued before it runs (the slots one reply just woke, for
    instance) leaves in one write. Batches do not wait for each other: replies resolve their
    futures in order while later batches are already on the wire.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        timeout: float | None,
        retries: int = 3,
        retry_on_timeout: bool = True,
        busy_timeout: float | None = 30.0,
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._busy_timeout = busy_timeout
        self._busy_logged = float("-inf")
        self._retries = retries
        self._retry_on_timeout = retry_on_timeout
        self._waiting: list[_Command] = []
        self._before_flush: list[Callable[[], None]] = []
        self._flush_scheduled = False
        self._link: _Link | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._backoff: asyncio.TimerHandle | None = None  # the reconnect after a failure
        self._failures = 0  # connections lost or refused in a row
        self._closed = False
        self._releasing: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = _get_running_loop()
        locator = pool_options(client).get("locator")
        #: Scripts publish with ``SPUBLISH`` (:attr:`Script.sharded`): a Redis Cluster.
        self.sharded_pubsub: bool = getattr(locator, "sharded_pubsub", False)
        if locator is not None:  # a redis+sentinel:// or redis+cluster:// URL
            locator.watch(self.follow)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop this pipeline's connection belongs to."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("this Redis pipeline has not been used in an event loop yet")
        return loop

    def _bind(self, loop: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
        """The running ``loop`` is not this pipeline's: adopt it on first use, else refuse
        (a command written to another loop's transport would never see its reply)."""
        if loop is None:
            raise RuntimeError("a Redis pipeline is used outside a running event loop")
        if self._loop is None:
            self._loop = loop
            return loop
        raise RuntimeError(
            f"this Redis pipeline belongs to event loop {self._loop!r}, not to the running "
            f"{loop!r}: each event loop needs a pipeline of its own (RedisEndpoint.pipe "
            "gives one per loop)"
        )

    async def execute(self, *args: Any) -> Any:
        """Send one command; returns its reply (raises its error)."""
        return await self.request(args)

    async def run_script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return await self.request_script(script, keys, args)

    def request_script(
        self, script: Script, keys: Sequence[Any], args: Sequence[Any]
    ) -> asyncio.Future[Any]:
        """:meth:`request` for an EVALSHA of ``script`` (sent as EVAL if Redis lacks it)."""
        if self.sharded_pubsub:
            script = script.sharded
        return self.request(("EVALSHA", script.sha, len(keys), *keys, *args), script)

    def request_script_into(
        self, sink: _Sink, script: Script, keys: Sequence[Any], args: Sequence[Any]
    ) -> _Sink:
        """:meth:`request_script` with the reply (or the error, after any retries) handed
        to ``sink`` as it is parsed; returns ``sink``."""
        if self.sharded_pubsub:
            script = script.sharded
        args = ("EVALSHA", script.sha, len(keys), *keys, *args)
        if self._loop is None or self._loop is not _get_running_loop():
            self._bind(_get_running_loop())
        self._queue(_Command(self, args, script, sink))
        return sink

    def request(self, args: tuple[Any, ...], script: Script | None = None) -> asyncio.Future[Any]:
        """Send one command; the future gets its reply or its error. For callers that do
        not want a coroutine (batch writers resolving many waiters from one reply).

        A command lost with its connection (dropped, or, with ``retry_on_timeout``, no
        reply within ``timeout``) is sent again, up to ``retries`` times, on the next
        connection, which opens after a backoff; what was queued meanwhile goes after
        it, so commands keep their order. An ``EVALSHA`` of ``script`` that the server
        does not know is sent again as ``EVAL``. Cancelling the future abandons the
        retries (a command already written still runs).
        """
        loop = self._loop
        if loop is None or loop is not _get_running_loop():
            loop = self._bind(_get_running_loop())
        outer: asyncio.Future[Any] = loop.create_future()
        self._queue(_Command(self, args, script, outer))
        return outer

    def send(self, *args: Any, what: str = "command") -> None:
        """Queue a command without waiting for its reply (write-behind).

        Commands on one pipeline reach Redis in the order they were queued, so a later
        awaited command (a result, a reserve) lands after it. A failure is logged, not
        raised: use it only for writes whose loss is harmless or repaired (an ack whose
        message a lease will redeliver).
        """
        self.request(args).add_done_callback(lambda future: _log_failure(future, what))

    async def drain(self, timeout: float | None = 5.0) -> None:
        """Wait until every queued command has been answered."""
        if (
            not self._waiting
            and not self._before_flush
            and (self._link is None or not self._link.sent)
        ):
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.execute("PING"), timeout)

    def before_flush(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once, at the start of this loop turn's write: a batch writer
        queues its command then, and it leaves with everything else of the turn."""
        loop = self._loop
        if loop is None or loop is not _get_running_loop():
            loop = self._bind(_get_running_loop())
        self._before_flush.append(callback)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)

    def _try_again(self, command: _Command, error: Exception) -> bool:
        """Redis answered ``command`` with a :data:`TRY_AGAIN` reply: send it again after
        a backoff (reconnecting first after a failover's reply), unless its
        ``busy_timeout`` has passed since the first such reply; True if it will be."""
        budget = self._busy_timeout
        if not budget or self._closed:
            return False
        now = self.loop.time()
        if command.busy_until is None:
            command.busy_until = now + budget
            if now - self._busy_logged > 5.0:  # one line per episode, not per command
                self._busy_logged = now
                logger.warning("Redis answered %s; retrying for up to %gs", error, budget)
        left = command.busy_until - now
        if left <= 0:
            return False
        command.busy_tries += 1
        delay = min(0.05 * 2**command.busy_tries, 1.0, left)
        self.loop.call_later(delay, self._send_again, command)
        if isinstance(error, _RECONNECT) and self._link is not None:
            link = self._link  # replying from a replica: connect again (DNS, a proxy)
            self.loop.call_soon(
                self._lose, link, redis_errors.ConnectionError(f"reconnecting after {error}")
            )
        return True

    def follow(self, old: tuple[str, int], new: tuple[str, int]) -> None:
        """The locator of this pipeline's pool named a new master (another connection,
        opened after a failover, asked it): if this pipeline's connection is to ``old``,
        leave it now, and send what it has not had answered, then what waits, to ``new``.
        Otherwise this connection could go on writing to a master being demoted, which
        discards what it accepts once it is a replica. Closing the connection drops the
        commands the old master holds for it (a ``CLIENT PAUSE``): they run once, on the
        new master. Callable from any thread."""
        loop = self._loop
        if loop is None or self._closed:
            return
        with contextlib.suppress(RuntimeError):  # its loop is closed: nothing to leave
            loop.call_soon_threadsafe(self._leave, old, new)

    def _leave(self, old: tuple[str, int], new: tuple[str, int]) -> None:
        link = self._link
        if link is None or link.lost:
            return
        connection = link.connection
        if (getattr(connection, "host", None), getattr(connection, "port", None)) != old:
            return
        self._lose(link, _Redirected(f"the master moved to {new[0]}:{new[1]}"))

    def _redirect(self, command: _Command, error: redis_errors.AskError) -> None:
        """Redis Cluster answered ``command`` with ``MOVED`` (the slot has a new master: a
        failover, a resharding) or ``ASK`` (the slot is migrating and this key is already
        at the target). Neither ran the command, so it is sent again: after ``MOVED`` on a
        new connection to the master named (the locator of a ``redis+cluster://`` URL
        remembers it), ahead of what waits, so commands keep their order; after ``ASK``
        once, to the node named, on a connection of its own, after ``ASKING``."""
        locator = pool_options(self._client).get("locator")
        if locator is None:
            command.outer.set_exception(
                redis_errors.ResponseError(
                    f"{'MOVED' if isinstance(error, redis_errors.MovedError) else 'ASK'} "
                    f"{error.slot_id} {error.host}:{error.port}: the server is a Redis Cluster "
                    "node: use a redis+cluster:// URL"
                )
            )
            return
        if command.redirects >= _MAX_REDIRECTS:
            command.outer.set_exception(error)
            return
        command.redirects += 1
        if not isinstance(error, redis_errors.MovedError):
            asking = self.loop.create_task(self._ask(command, error, locator))
            self._releasing.add(asking)
            asking.add_done_callback(self._releasing.discard)
            return
        locator.moved(error.host, error.port)
        logger.info("Redis Cluster moved the slot to %s:%s; following it", error.host, error.port)
        link = self._link
        if link is None or link.lost:
            self._waiting.insert(0, command)
            self._reconnect()
            return
        link.sent.appendleft(command)
        self._lose(link, _Redirected(f"MOVED to {error.host}:{error.port}"))

    async def _ask(self, command: _Command, error: redis_errors.AskError, locator: Any) -> None:
        """Send ``command`` once to the node an ``ASK`` reply named, on a connection of
        its own (``ASKING`` holds for the next command of one connection only)."""
        options = {k: v for k, v in pool_options(self._client).items() if k != "locator"}
        options.update(host=error.host, port=error.port)
        connection = locator.plain_class(**options)
        args = command.args
        if command.script is not None:  # the target may not have the script yet
            args = ("EVAL", command.script.body, *args[2:])
        try:
            async with asyncio.timeout(self._timeout):
                await connection.connect()
                await connection.send_packed_command(_encode(("ASKING",)) + _encode(args))
                await connection.read_response()
                try:
                    reply = await connection.read_response()
                except redis_errors.ResponseError as exc:
                    command.fail(exc)  # TRYAGAIN: sent again through the pipeline
                    return
        except Exception as exc:
            if not command.outer.done():
                command.outer.set_exception(_as_redis_error(exc))
            return
        finally:
            with contextlib.suppress(Exception):
                await connection.disconnect()
        command.resolve(reply)

    def _send_again(self, command: _Command) -> None:
        if not command.outer.done():  # else its caller gave up (cancelled, timed out)
            self._queue(command)

    def _queue(self, command: _Command) -> None:
        """Queue ``command`` for this loop turn's write; the caller checked that it runs
        in this pipeline's loop (a retry queued from ``data_received`` does)."""
        if self._closed:
            command.fail(_closed())
            return
        self._waiting.append(command)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def flush_now(self) -> None:
        """Write what is queued now instead of at the end of this loop turn (a batch
        writer's slice, so Redis works on it while the caller builds the next)."""
        self._flush()

    def backlog(self) -> int:
        """Bytes written to this pipeline's connection that its socket has not taken
        yet (they leave when the loop runs); 0 with no connection open."""
        link = self._link
        return 0 if link is None or link.lost else link.transport.get_write_buffer_size()

    async def written(self) -> None:
        """One turn of the loop (which writes what the socket takes), and, if over
        :data:`WRITE_AHEAD` bytes are left (see :meth:`backlog`), until under a quarter of
        that are. For a writer of many large calls: built one after the other without a
        turn of the loop, they would all be buffered while Redis waits for bytes the loop
        has not written, and without a bound, all buffered while Redis is behind."""
        await asyncio.sleep(0)
        link = self._link
        paused = None if link is None else link.paused
        if paused is not None:
            await asyncio.shield(paused)  # others may wait on it too

    def _flush(self) -> None:
        if self._before_flush:
            callbacks, self._before_flush = self._before_flush, []
            self._flush_scheduled = True  # what they queue leaves in this write
            for callback in callbacks:
                try:
                    callback()
                except Exception:  # pragma: no cover  (a writer's bug; the write goes on)
                    logger.exception("a pipeline's before-flush callback failed")
        self._flush_scheduled = False
        if not self._waiting:
            return
        link = self._link
        if link is None:
            self._reconnect()
            return  # _connect flushes once connected
        batch, self._waiting = self._waiting, []
        try:
            link.write(b"".join([_encode(command.args) for command in batch]), batch)
        except Exception as exc:
            self._lose(link, exc)

    def _reconnect(self) -> None:
        """Open a connection now, unless one is opening or a backoff is under way."""
        if self._closed or self._backoff is not None:
            return
        if self._connecting is None or self._connecting.done():
            self._connecting = self.loop.create_task(self._connect())

    def _after_backoff(self) -> None:
        self._backoff = None
        if self._waiting:
            self._reconnect()

    async def _connect(self) -> None:
        try:
            # A server that accepts the connection and never answers its handshake: one
            # deadline for the whole checkout (redis-py's own retries included).
            async with asyncio.timeout(self._timeout or None):
                connection = await checkout(self._client)
        except Exception as exc:
            waiting, self._waiting = self._waiting, []
            self._requeue(waiting, _as_redis_error(exc))
            return
        try:
            link = _Link(self, connection, self._timeout)
            link.transport = take_transport(connection, link)  # replies reach the link now
            link.transport.set_write_buffer_limits(high=WRITE_AHEAD)
        except Exception as exc:
            await self._release(connection)
            waiting, self._waiting = self._waiting, []
            self._requeue(waiting, _as_redis_error(exc))
            return
        self._link = link
        self._failures = 0
        self._flush()

    def _lose(self, link: _Link, exc: BaseException) -> None:
        """The connection broke: its unanswered commands are sent again (those with
        retries left) ahead of what is still waiting, on a new connection."""
        if link.lost:
            return
        link.close()
        unanswered = list(link.sent)
        link.sent.clear()
        if self._link is link:
            self._link = None
        releasing = self.loop.create_task(self._release(link.connection))
        self._releasing.add(releasing)
        releasing.add_done_callback(self._releasing.discard)
        self._requeue(unanswered, _as_redis_error(exc))

    def _requeue(self, failed: list[_Command], error: Exception) -> None:
        """``failed``, in order: the commands a lost connection took with it, or those
        a refused one could not send. Each counts one more failed attempt; those out of
        retries (or failed by something other than the connection) get ``error``. The
        rest go back ahead of what waits, and all of it waits for one reconnect after a
        backoff: commands keep the order they were queued in."""
        retryable = (
            isinstance(error, UNAVAILABLE)
            and not isinstance(error, _REFUSED)
            and (self._retry_on_timeout or not isinstance(error, redis_errors.TimeoutError))
        )
        redirected = isinstance(error, _Redirected)
        kept: list[_Command] = []
        for command in failed:
            if command.outer.done():
                continue  # its caller gave up
            if not redirected:
                command.attempt += 1
            if retryable and command.attempt <= self._retries:
                kept.append(command)
            else:
                command.fail(error)
        if not kept:
            if self._waiting:
                self._reconnect()
            return
        self._waiting[:0] = kept
        if redirected:  # the new master is known: connect now
            self._reconnect()
            return
        self._failures += 1
        if self._backoff is None and not self._closed:
            self._backoff = self.loop.call_later(
                min(0.05 * 2**self._failures, 1.0), self._after_backoff
            )

    async def _release(self, connection: RedisConnection) -> None:
        with contextlib.suppress(Exception):
            await release(self._client, connection)

    async def close(self, *, drain: bool = True) -> None:
        """Close the connection; first wait (``drain``) for the replies still due, unless
        the connection may be blocked (a BLPOP) and what is queued behind it should not
        run."""
        if drain and self._link is not None:
            await self.drain()
        self._closed = True
        if self._backoff is not None:
            self._backoff.cancel()
            self._backoff = None
        callbacks, self._before_flush = self._before_flush, []
        for callback in callbacks:  # a batch writer's pending burst: it fails below
            with contextlib.suppress(Exception):
                callback()
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        self._connecting = None
        waiting, self._waiting = self._waiting, []
        for command in waiting:
            command.fail(_closed())
        link, self._link = self._link, None
        if link is not None:
            link.close()
            for command in link.sent:
                command.fail(_closed())
            await self._release(link.connection)


#: MOVED / ASK replies one command follows before its caller gets the error.
_MAX_REDIRECTS = 5


class _Redirected(redis_errors.ConnectionError):
    """The pipeline's connection was closed to follow a ``MOVED`` reply, or a master its
    locator found elsewhere (:meth:`AutoPipeline.follow`)."""


def _closed() -> Exception:
    return redis_errors.ConnectionError("the connection was closed")


def _as_redis_error(exc: BaseException) -> Exception:
    if isinstance(exc, redis_errors.RedisError):
        return exc
    if isinstance(exc, TimeoutError):
        return redis_errors.TimeoutError("Redis did not answer in time")
    return redis_errors.ConnectionError(f"{type(exc).__name__}: {exc}")


def _log_failure(future: asyncio.Future[Any], what: str) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        logger.warning("Redis %s failed: %s: %s", what, type(error).__name__, error)


def _encode(args: tuple[Any, ...]) -> bytes:
    """One command in RESP: hiredis's ``pack_command`` (C) for str, bytes, int and float
    arguments, :func:`_pack` for the rest (and its error for what Redis cannot take)."""
    try:
        return _pack_command(args)
    except TypeError:
        return _pack(args)


def _pack(args: tuple[Any, ...]) -> bytes:
    """One command in RESP: the same bytes redis-py's ``pack_command`` makes for these
    argument types (bytes, str, int, float), without its per-argument dispatch."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if arg.__class__ is bytes:
            data = arg
        elif arg.__class__ is str:
            data = arg.encode()
        elif arg.__class__ is int or arg.__class__ is float:
            data = repr(arg).encode()
        elif isinstance(arg, bytes | bytearray | memoryview):
            data = bytes(arg)
        else:
            raise TypeError(f"cannot send {type(arg).__name__} to Redis: {arg!r}")
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)
