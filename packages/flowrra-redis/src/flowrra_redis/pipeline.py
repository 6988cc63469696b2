"""Automatic pipelining: commands issued while the connection is busy go out together.

redis-py spends most of a command's cost around the round trip (a pool checkout, retry
wrappers, a timeout task per read), and a worker's tasks each send several commands. Here
every caller appends its command to a shared list and awaits a future; one connection
(opened by redis-py, so URLs, AUTH, SELECT and TLS work as anywhere else) takes, each loop
turn, everything waiting as one write. Its replies are parsed with hiredis as the bytes
arrive (the connection's transport is handed to a protocol of ours) and resolve the
futures in order, with no reader task and no timer per reply. With N tasks in flight,
their commands share round trips: the more load, the bigger the batches.

Commands are retried on a dropped connection or a timeout, like redis-py's own retries;
a script unknown to the server (after a restart) is sent again with its body.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis._parsers.base import BaseParser
from redis.asyncio.connection import AbstractConnection

__all__ = ["AutoPipeline", "Script"]

_pack_command: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command

logger = logging.getLogger("flowrra.redis")

_RETRYABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


class Script:
    """A Lua script, sent as EVALSHA (and once as EVAL if the server does not know it)."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()


class _Link(asyncio.Protocol):
    """One open connection: the futures of the commands written to it, in order, resolved
    from ``data_received`` as hiredis parses the replies.

    A watchdog fails the link when replies are due and none has come for ``timeout``
    seconds (one timer per link, not one per reply).
    """

    def __init__(
        self,
        pipeline: AutoPipeline,
        connection: AbstractConnection,
        transport: asyncio.WriteTransport,
        timeout: float | None,
    ) -> None:
        self.pipeline = pipeline
        self.connection = connection
        self.transport = transport
        self.sent: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.lost = False
        self._parser = hiredis.Reader(replyError=redis_errors.ResponseError)
        self._timeout = timeout
        self._replies = 0
        self._watchdog: asyncio.TimerHandle | None = None

    def write(self, data: bytes, futures: list[asyncio.Future[Any]]) -> None:
        self.sent.extend(futures)
        self.transport.write(data)
        if self._watchdog is None and self._timeout is not None:
            self._arm()

    def _arm(self) -> None:
        assert self._timeout is not None
        self._watchdog = asyncio.get_running_loop().call_later(
            self._timeout, self._check, self._replies
        )

    def _check(self, replies_then: int) -> None:
        self._watchdog = None
        if self.lost or not self.sent:
            return
        if self._replies == replies_then:
            self.pipeline._lose(self, TimeoutError())
        else:
            self._arm()

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        sent = self.sent
        try:
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                self._replies += 1
                future = sent.popleft()
                if future.done():
                    continue
                if isinstance(reply, redis_errors.ResponseError):
                    future.set_exception(BaseParser.parse_error(str(reply)))  # type: ignore[no-untyped-call]
                else:
                    future.set_result(reply)
        except Exception as exc:  # a protocol error, or a reply nobody asked for
            self.pipeline._lose(self, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost:
            self.pipeline._lose(self, exc or ConnectionError("the server closed the connection"))

    def close(self) -> None:
        self.lost = True
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
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._retries = retries
        self._waiting: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._flush_scheduled = False
        self._link: _Link | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._releasing: set[asyncio.Task[None]] = set()

    async def execute(self, *args: Any) -> Any:
        """Send one command; returns its reply (raises its error)."""
        return await self.request(args)

    async def run_script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return await self.request_script(script, keys, args)

    def request_script(
        self, script: Script, keys: Sequence[Any], args: Sequence[Any]
    ) -> asyncio.Future[Any]:
        """:meth:`request` for an EVALSHA of ``script`` (sent as EVAL if Redis lacks it)."""
        return self.request(("EVALSHA", script.sha, len(keys), *keys, *args), script)

    def request(self, args: tuple[Any, ...], script: Script | None = None) -> asyncio.Future[Any]:
        """Send one command; the future gets its reply or its error. For callers that do
        not want a coroutine (batch writers resolving many waiters from one reply).

        A dropped connection or a timeout is retried ``retries`` times with backoff; an
        ``EVALSHA`` of ``script`` that the server does not know is sent again as ``EVAL``.
        Cancelling the future abandons the retries (a command already written still runs).
        """
        outer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._attempt(args, script, outer, 0)
        return outer

    def _attempt(
        self,
        args: tuple[Any, ...],
        script: Script | None,
        outer: asyncio.Future[Any],
        attempt: int,
    ) -> None:
        if not outer.done():
            self._submit(args).add_done_callback(
                functools.partial(self._settle, args, script, outer, attempt)
            )

    def _settle(
        self,
        args: tuple[Any, ...],
        script: Script | None,
        outer: asyncio.Future[Any],
        attempt: int,
        reply: asyncio.Future[Any],
    ) -> None:
        if outer.done():  # the caller gave up (cancelled): mark the reply's error as seen
            if not reply.cancelled():
                reply.exception()
            return
        if reply.cancelled():
            outer.cancel()
            return
        error = reply.exception()
        if error is None:
            outer.set_result(reply.result())
        elif script is not None and isinstance(error, redis_errors.NoScriptError):
            self._attempt(("EVAL", script.body, *args[2:]), None, outer, attempt)
        elif isinstance(error, _RETRYABLE) and attempt < self._retries:
            asyncio.get_running_loop().call_later(
                min(0.05 * 2 ** (attempt + 1), 1.0),
                self._attempt,
                args,
                script,
                outer,
                attempt + 1,
            )
        else:
            outer.set_exception(error)

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
        if not self._waiting and (self._link is None or not self._link.sent):
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.execute("PING"), timeout)

    def _submit(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((args, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def flush_now(self) -> None:
        """Write what is queued now instead of at the end of this loop turn (a batch
        writer's slice, so Redis works on it while the caller builds the next)."""
        self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._waiting:
            return
        link = self._link
        if link is None:
            if self._connecting is None or self._connecting.done():
                self._connecting = asyncio.get_running_loop().create_task(self._connect())
            return  # _connect flushes once connected
        batch, self._waiting = self._waiting, []
        try:
            link.write(b"".join([_encode(args) for args, _ in batch]), [f for _, f in batch])
        except Exception as exc:
            self._lose(link, exc)

    async def _connect(self) -> None:
        try:
            pool = self._client.connection_pool
            connection: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
        except Exception as exc:
            waiting, self._waiting = self._waiting, []
            self._fail([future for _, future in waiting], _as_redis_error(exc))
            return
        try:
            writer = connection._writer
            assert writer is not None
            transport: Any = writer.transport
            link = _Link(self, connection, transport, self._timeout)
            transport.set_protocol(link)  # replies now reach link.data_received
        except Exception as exc:
            await self._release(connection)
            waiting, self._waiting = self._waiting, []
            self._fail([future for _, future in waiting], _as_redis_error(exc))
            return
        self._link = link
        self._flush()

    def _lose(self, link: _Link, exc: BaseException) -> None:
        """The connection broke: its unanswered commands fail (callers retry), and what
        is still waiting goes out on a new connection."""
        if link.lost:
            return
        link.close()
        self._fail(list(link.sent), _as_redis_error(exc))
        link.sent.clear()
        if self._link is link:
            self._link = None
        loop = asyncio.get_running_loop()
        releasing = loop.create_task(self._release(link.connection))
        self._releasing.add(releasing)
        releasing.add_done_callback(self._releasing.discard)
        if self._waiting and (self._connecting is None or self._connecting.done()):
            self._connecting = loop.create_task(self._connect())

    async def _release(self, connection: AbstractConnection) -> None:
        with contextlib.suppress(Exception):
            await connection.disconnect(nowait=True)
        with contextlib.suppress(Exception):
            await self._client.connection_pool.release(connection)

    async def close(self, *, drain: bool = True) -> None:
        """Close the connection; first wait (``drain``) for the replies still due, unless
        the connection may be blocked (a BLPOP) and what is queued behind it should not
        run."""
        if drain and self._link is not None:
            await self.drain()
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        self._connecting = None
        closed = redis_errors.ConnectionError("the connection was closed")
        waiting, self._waiting = self._waiting, []
        self._fail([future for _, future in waiting], closed)
        link, self._link = self._link, None
        if link is not None:
            link.close()
            self._fail(list(link.sent), closed)
            await self._release(link.connection)

    @staticmethod
    def _fail(futures: list[asyncio.Future[Any]], error: Exception) -> None:
        for future in futures:
            if not future.done():
                future.set_exception(error)


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
