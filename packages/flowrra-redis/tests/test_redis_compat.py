"""flowrra-redis relies on a few redis-py internals, all behind ``_redis_compat``: each
access works on the installed redis-py (the range check, tests/redis_py_range.py, runs
this file under the lowest and the highest supported release), no other module touches
them, and a redis-py without them is refused at import with the supported versions, not
met as an AttributeError deep inside a send."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import flowrra_redis
import redis
import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from flowrra_redis._redis_compat import (
    SUPPORTED,
    checkout,
    on_reconnect,
    parse_error,
    pool_like,
    release,
    take_transport,
)
from flowrra_redis.connection import connect_client
from packaging.specifiers import SpecifierSet

from flowrra.exceptions import PluginError

#: What only ``_redis_compat`` may write: redis-py's private modules and attributes, and
#: the undocumented members it wraps.
_INTERNALS = re.compile(
    r"\bredis\._|\._writer|\._reader|_parsers?\b|\.connection_kwargs|\.connection_class"
    r"|register_connect_callback|get_connection\(|disconnect\(nowait"
)


def test_no_other_module_touches_redis_py_internals() -> None:
    source = Path(flowrra_redis.__file__).parent
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(source.glob("*.py"))
        if path.name != "_redis_compat.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _INTERNALS.search(line)
    ]
    assert found == []


def test_error_replies_become_redis_py_exceptions() -> None:
    assert type(parse_error("NOSCRIPT No matching script.")) is redis_errors.NoScriptError
    wrong = parse_error("WRONGTYPE Operation against a key holding the wrong kind of value")
    assert type(wrong) is redis_errors.ResponseError and "WRONGTYPE" in str(wrong)


async def test_a_connection_is_taken_over_and_given_back(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    loop = asyncio.get_running_loop()

    class Probe(asyncio.Protocol):
        def __init__(self) -> None:
            self.reply: asyncio.Future[bytes] = loop.create_future()

        def data_received(self, data: bytes) -> None:
            self.reply.set_result(data)

    connection = await checkout(client)
    probe = Probe()
    transport = take_transport(connection, probe)
    transport.write(b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n")
    assert await asyncio.wait_for(probe.reply, 5) == b"$5\r\nhello\r\n"
    await release(client, connection)
    assert await client.echo("again") == b"again"  # the pool connects it afresh
    await client.aclose()


async def test_a_reestablished_subscription_is_heard(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    # Built as the backend builds its clients: redis-py retries (so reconnects) with it.
    client = connect_client(
        f"{redis_url}?client_name=flowrra-compat-probe",
        max_connections=2,
        socket_timeout=5.0,
        retry_on_timeout=True,
    )
    pubsub = client.pubsub()
    await pubsub.subscribe("flowrra-compat-probe")
    assert (await pubsub.get_message(timeout=1))["type"] == "subscribe"  # type: ignore[index]

    class Listener:
        def __init__(self) -> None:
            self.heard = 0

        async def reconnected(self, connection: object) -> None:
            self.heard += 1

    listener = Listener()
    on_reconnect(pubsub, listener.reconnected)
    for entry in sync_redis.client_list():
        if entry.get("name") == "flowrra-compat-probe":
            sync_redis.client_kill_filter(_id=entry["id"])
    for _ in range(50):
        await pubsub.get_message(timeout=0.1)  # notices, reconnects, subscribes again
        if listener.heard:
            break
    assert listener.heard == 1
    await pubsub.aclose()
    await client.aclose()


def test_a_pool_for_another_loop_is_built_like_the_first() -> None:
    client = connect_client(
        "redis://user:pw@h:1/2", max_connections=7, socket_timeout=2.5, retry_on_timeout=True
    )
    first, pool = client.connection_pool, pool_like(client)
    assert type(pool) is type(first) and pool is not first
    assert pool.connection_class is first.connection_class
    for option in ("host", "port", "db", "username", "password", "socket_timeout", "retry"):
        assert pool.connection_kwargs[option] == first.connection_kwargs[option], option
    assert pool.max_connections == 7
    assert isinstance(pool, aioredis.BlockingConnectionPool) and pool.timeout == 2.5


def test_the_installed_redis_py_is_a_supported_one() -> None:
    assert SUPPORTED.startswith(">=") or SUPPORTED.startswith("<"), SUPPORTED
    assert redis.__version__ in SpecifierSet(SUPPORTED)
    assert "<" in SUPPORTED  # a tested upper bound


def test_a_redis_py_without_what_the_pipeline_needs_is_refused_at_import() -> None:
    # A redis-py release that dropped an internal the pipeline drives.
    probe = (
        "import redis._parsers.base as base\n"
        "del base.BaseParser.parse_error\n"
        "import flowrra_redis\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert f"{PluginError.__module__}.PluginError" in result.stderr
    assert f"flowrra-redis needs redis-py {SUPPORTED}" in result.stderr
    assert "BaseParser.parse_error" in result.stderr
    assert f"pip install 'redis[hiredis]{SUPPORTED}'" in result.stderr
