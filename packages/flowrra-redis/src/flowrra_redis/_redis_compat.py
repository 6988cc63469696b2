"""Every redis-py internal flowrra-redis relies on, in one place: the access and its check.

The auto-pipeline (:mod:`flowrra_redis.pipeline`) opens connections through redis-py, so
URLs, AUTH, SELECT and TLS behave as anywhere else, then takes over each connection's
transport and parses replies itself (with hiredis). The result listener of the backend
must know when redis-py re-established its pub/sub connection, and a client for another
event loop is built like the first one. None of that is redis-py's documented API. This
module is the only one of flowrra-redis that touches redis-py beyond it: the others call
the functions below and name no private module or attribute of redis-py.

What it relies on, each checked at import by :func:`check_redis_py` (a release without
one of them is refused there, with the supported versions, instead of failing deep
inside a send):

================================================================  =========================
redis-py internal                                                 used by
================================================================  =========================
``redis._parsers.base.BaseParser.parse_error(text)``: an error    :func:`parse_error`
reply's text to its exception class (``NOSCRIPT`` ->
``NoScriptError``)
``redis.asyncio.connection.AbstractConnection._writer``: the      :func:`take_transport`
``asyncio.StreamWriter`` of a connected connection (its
``transport`` is handed to our protocol)
``await ConnectionPool.get_connection()``, with no arguments:     :func:`checkout`
a connected connection
``AbstractConnection.disconnect(nowait=True)``, then              :func:`release`
``await ConnectionPool.release(connection)``
``AbstractConnection.register_connect_callback(method)``, and     :func:`on_reconnect`
``PubSub.connection`` (the subscribed connection)
``ConnectionPool.connection_class``, ``.connection_kwargs``,      :func:`pool_like`
``.max_connections``; ``BlockingConnectionPool.timeout``
================================================================  =========================

hiredis's ``Reader(replyError=...)`` and ``pack_command`` are hiredis's documented API.
The range of redis-py releases this holds for is the one this distribution requires
(:data:`SUPPORTED`); its lowest and highest releases are tested (``tests/compat``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection

from flowrra.exceptions import PluginError

__all__ = [
    "SUPPORTED",
    "RedisConnection",
    "check_redis_py",
    "checkout",
    "on_reconnect",
    "parse_error",
    "pool_like",
    "pool_options",
    "pool_options_of",
    "release",
    "take_transport",
    "use_connection_class",
]

#: A connection of redis-py's asyncio pools (the type :func:`checkout` gives).
RedisConnection = AbstractConnection


def _supported() -> str:
    """The redis-py range this distribution requires (its own metadata is the one source)."""
    try:
        requirements = metadata.requires("flowrra-redis") or []
    except metadata.PackageNotFoundError:
        requirements = []
    for requirement in requirements:
        if requirement.startswith("redis[") or requirement.startswith("redis>"):
            return requirement.split("]", 1)[-1].split(";", 1)[0].strip()
    return "the tested releases"


SUPPORTED = _supported()


# -- the access -------------------------------------------------------------------------


def parse_error(text: str) -> redis_errors.ResponseError:
    """The redis-py exception for an error reply's ``text`` (``"NOSCRIPT ..."`` gives
    :class:`~redis.exceptions.NoScriptError`, an unknown code a ``ResponseError``), as
    redis-py's own parser makes it."""
    from redis._parsers.base import BaseParser

    error: redis_errors.ResponseError = BaseParser.parse_error(text)  # type: ignore[no-untyped-call]
    return error


async def checkout(client: aioredis.Redis) -> RedisConnection:
    """A connected connection of ``client``'s pool, for the caller alone until
    :func:`release` (connect errors are redis-py's, after the pool's own handling)."""
    connection: RedisConnection = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    return connection


def take_transport(
    connection: RedisConnection, protocol: asyncio.BaseProtocol
) -> asyncio.WriteTransport:
    """Hand the socket of the connected ``connection`` to ``protocol``: what arrives from
    now on reaches ``protocol.data_received``, never redis-py's reader, and what is written
    to the returned transport goes straight to the server. The connection is no use to
    redis-py any more; give it back with :func:`release`, which closes it."""
    writer = connection._writer
    if writer is None:
        raise redis_errors.ConnectionError("the connection is not connected")
    transport = writer.transport
    transport.set_protocol(protocol)
    return transport


async def release(client: aioredis.Redis, connection: RedisConnection) -> None:
    """Close ``connection`` (without waiting for the close to complete) and give it back
    to ``client``'s pool, which connects it afresh when it is next taken."""
    try:
        await connection.disconnect(nowait=True)
    finally:
        await client.connection_pool.release(connection)


def on_reconnect(pubsub: PubSub, method: Callable[[Any], Awaitable[None]]) -> None:
    """Call ``method(connection)`` (a bound method: redis-py keeps a weak reference to
    it) each time redis-py re-establishes the subscribed connection of ``pubsub`` (it
    subscribes again by itself; what was published meanwhile is lost). Call it once
    ``pubsub`` has subscribed."""
    connection: RedisConnection | None = pubsub.connection  # typed as always None
    if connection is None:
        raise redis_errors.ConnectionError("the pub/sub connection is not open")
    connection.register_connect_callback(method)  # type: ignore[no-untyped-call]


def pool_options(client: aioredis.Redis) -> dict[str, Any]:
    """The options ``client``'s pool makes its connections with (host, TLS, timeouts,
    credentials, and a ``locator`` for a cluster or sentinel URL)."""
    return pool_options_of(client.connection_pool)


def pool_options_of(pool: aioredis.ConnectionPool) -> dict[str, Any]:
    options: dict[str, Any] = pool.connection_kwargs
    return options


def use_connection_class(
    pool: aioredis.ConnectionPool, connection_class: type[Any], **options: Any
) -> None:
    """Make ``pool``'s connections from now on with ``connection_class`` and the extra
    ``options`` (a located connection and its locator: :mod:`flowrra_redis.topology`)."""
    pool.connection_class = connection_class
    pool.connection_kwargs.update(options)


def pool_like(client: aioredis.Redis) -> aioredis.ConnectionPool:
    """A new, empty pool built like ``client``'s: same connection class, options and
    size (and wait timeout, for a blocking pool), for a client in another event loop."""
    pool = client.connection_pool
    options: dict[str, Any] = dict(pool.connection_kwargs)
    if isinstance(pool, aioredis.BlockingConnectionPool):
        options["timeout"] = pool.timeout
    return type(pool)(
        connection_class=pool.connection_class, max_connections=pool.max_connections, **options
    )


# -- the check --------------------------------------------------------------------------


def _missing() -> list[str]:
    """What of the table in the module docstring the installed redis-py lacks."""
    missing = []
    try:
        from redis._parsers.base import BaseParser
    except ImportError:
        missing.append("redis._parsers.base.BaseParser")
    else:
        if not callable(getattr(BaseParser, "parse_error", None)):
            missing.append("redis._parsers.base.BaseParser.parse_error")
        else:
            try:
                ok = isinstance(parse_error("NOSCRIPT x"), redis_errors.NoScriptError)
            except Exception:
                ok = False
            if not ok:
                missing.append("BaseParser.parse_error('NOSCRIPT ...') -> NoScriptError")
    from redis.asyncio import BlockingConnectionPool, Connection, ConnectionPool

    if not hasattr(Connection(), "_writer"):
        missing.append("redis.asyncio.Connection._writer")
    if "nowait" not in inspect.signature(Connection.disconnect).parameters:
        missing.append("redis.asyncio.Connection.disconnect(nowait=)")
    if not callable(getattr(Connection, "register_connect_callback", None)):
        missing.append("redis.asyncio.Connection.register_connect_callback")
    if not _callable_without_arguments(ConnectionPool.get_connection):
        missing.append("async redis.asyncio.ConnectionPool.get_connection()")
    if not inspect.iscoroutinefunction(ConnectionPool.release):
        missing.append("async redis.asyncio.ConnectionPool.release(connection)")
    pool = BlockingConnectionPool(max_connections=1, timeout=3)
    for name in ("connection_class", "connection_kwargs", "max_connections", "timeout"):
        if not hasattr(pool, name):
            missing.append(f"redis.asyncio.BlockingConnectionPool.{name}")
    if not hasattr(PubSub(pool, ignore_subscribe_messages=False), "connection"):
        missing.append("redis.asyncio.client.PubSub.connection")
    return missing


def _callable_without_arguments(function: Callable[..., Any]) -> bool:
    """``function`` (an unbound method) is a coroutine function that takes ``self`` and
    nothing else it requires."""
    if not inspect.iscoroutinefunction(function):
        return False
    required = [
        p
        for p in list(inspect.signature(function).parameters.values())[1:]
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return not required


def check_redis_py() -> None:
    """Raise :class:`~flowrra.exceptions.PluginError` naming the supported redis-py
    versions when the installed one lacks what this module relies on."""
    missing = _missing()
    if missing:
        import redis

        raise PluginError(
            f"flowrra-redis needs redis-py {SUPPORTED}; the installed redis-py "
            f"{redis.__version__} lacks {', '.join(missing)}. "
            f"Install a supported one: pip install 'redis[hiredis]{SUPPORTED}'"
        )
