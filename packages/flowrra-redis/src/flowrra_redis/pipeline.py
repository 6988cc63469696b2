"""Automatic pipelining: commands issued while the connection is busy go out together.

redis-py spends most of a command's cost around the round trip (a pool checkout, retry
wrappers, a timeout task per read), and a worker's tasks each send three commands. Here
every caller appends its command to a shared list and awaits a future; one loop owns one
connection (opened by redis-py, so URLs, AUTH, SELECT and TLS work as anywhere else) and,
each turn, writes everything waiting as one pipeline and reads the replies in order. With
N tasks in flight, their commands share round trips: the more load, the bigger the batches.

Commands are retried on a dropped connection or a timeout, like redis-py's own retries;
a script unknown to the server (after a restart) is sent again with its body.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.connection import AbstractConnection

__all__ = ["AutoPipeline", "Script"]

logger = logging.getLogger("flowrra.redis")

_RETRYABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


class Script:
    """A Lua script, sent as EVALSHA (and once as EVAL if the server does not know it)."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()


class AutoPipeline:
    """Runs commands on one dedicated connection of ``client``'s pool, batched."""

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
        self._wakeup: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._connection: AbstractConnection | None = None
        self._busy = False

    async def execute(self, *args: Any) -> Any:
        """Send one command; returns its reply (raises its error)."""
        attempt = 0
        while True:
            try:
                return await self._submit(args)
            except _RETRYABLE:
                if attempt >= self._retries:
                    raise
                attempt += 1
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0))

    async def run_script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            return await self.execute("EVAL", script.body, len(keys), *keys, *args)

    def send(self, *args: Any, what: str = "command") -> None:
        """Queue a command without waiting for its reply (write-behind).

        Commands on one pipeline reach Redis in the order they were queued, so a later
        awaited command (a result, a reserve) lands after it. A failure is logged, not
        raised: use it only for writes whose loss is harmless or repaired (a RUNNING record
        that the final one replaces, an ack whose message a lease will redeliver).
        """
        self._submit(args).add_done_callback(lambda future: _log_failure(future, what))

    async def drain(self, timeout: float | None = 5.0) -> None:
        """Wait until every queued command has been answered."""
        if not self._waiting and not self._busy:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.execute("PING"), timeout)

    def _submit(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((args, future))
        if self._runner is None or self._runner.done():
            self._wakeup = asyncio.Event()
            self._runner = loop.create_task(self._run(), name="flowrra-redis-pipeline")
        assert self._wakeup is not None
        self._wakeup.set()
        return future

    async def close(self) -> None:
        if self._runner is not None and not self._runner.done():
            await self.drain()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        await self._drop_connection()

    async def _connect(self) -> AbstractConnection:
        if self._connection is None:
            pool = self._client.connection_pool
            connection: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
            self._connection = connection
        return self._connection

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)
            with contextlib.suppress(Exception):
                await self._client.connection_pool.release(connection)

    async def _run(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        while True:
            if not self._waiting:
                wakeup.clear()
                await wakeup.wait()
                # One more turn of the loop: callers made ready by the same event (the
                # slots a reply just woke) add their commands to this batch.
                await asyncio.sleep(0)
                continue
            batch, self._waiting = self._waiting, []
            self._busy = True
            try:
                connection = await self._connect()
                packed = b"".join([_pack(args) for args, _ in batch])
                async with asyncio.timeout(self._timeout):
                    await connection.send_packed_command(packed, check_health=False)
                    for _, future in batch:
                        try:
                            reply = await connection.read_response(timeout=math.inf)
                        except redis_errors.ResponseError as error:
                            if not future.done():
                                future.set_exception(error)
                            continue
                        if not future.done():
                            future.set_result(reply)
            except asyncio.CancelledError:
                self._fail(batch, redis_errors.ConnectionError("the connection was closed"))
                raise
            except Exception as exc:
                failure: Exception
                if isinstance(exc, redis_errors.RedisError):
                    failure = exc
                elif isinstance(exc, TimeoutError):
                    failure = redis_errors.TimeoutError("Redis did not answer in time")
                else:
                    failure = redis_errors.ConnectionError(f"{type(exc).__name__}: {exc}")
                self._fail(batch, failure)
                await self._drop_connection()
            finally:
                self._busy = False

    @staticmethod
    def _fail(batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]], error: Exception) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(error)


def _log_failure(future: asyncio.Future[Any], what: str) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        logger.warning("Redis %s failed: %s: %s", what, type(error).__name__, error)


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
