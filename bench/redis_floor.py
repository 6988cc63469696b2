"""The floor under "one awaited call at a time" on this machine: how many sequential
round trips to Redis a process can make, with nothing but a PING in each.

Run with the project's interpreter (redis-py and flowrra-redis installed)::

    python bench/redis_floor.py [--redis redis://127.0.0.1:6379] [--n 10000] [--runs 3]
    python bench/redis_floor.py --quick     # 2,000 round trips, one run

Four clients, from the bare socket up, each doing ``--n`` PINGs one after the other
(medians of ``--runs``): a blocking socket (``sendall`` then ``recv``), redis-py's
blocking client, redis-py's asyncio client, and flowrra-redis's automatic pipeline (the
path every flowrra command takes); then that pipeline with a PING on each of two
connections, sent together and both awaited: the shape of a single ``submit`` (its PENDING
record on the backend's connection, its message on the broker's), with no work in Redis or
in the client. A ``submit``'s rate cannot exceed that last line.
Nothing is written to Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

PING = b"*1\r\n$4\r\nPING\r\n"


def _raw_socket(host: str, port: int, n: int) -> float:
    with socket.create_connection((host, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = time.perf_counter()
        for _ in range(n):
            sock.sendall(PING)
            if not sock.recv(64).startswith(b"+PONG"):
                raise RuntimeError("unexpected reply to PING")
        return time.perf_counter() - started


def _redis_py_sync(url: str, n: int) -> float:
    import redis

    client = redis.Redis.from_url(url)
    client.ping()
    started = time.perf_counter()
    for _ in range(n):
        client.ping()
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed


async def _timed(n: int, call: Callable[[], Awaitable[object]]) -> float:
    await call()
    started = time.perf_counter()
    for _ in range(n):
        await call()
    return time.perf_counter() - started


async def _redis_py_asyncio(url: str, n: int) -> float:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        return await _timed(n, client.ping)
    finally:
        await client.aclose()


async def _flowrra_pipeline(url: str, n: int) -> float:
    from flowrra_redis.connection import connect_client
    from flowrra_redis.pipeline import AutoPipeline

    client = connect_client(url, max_connections=2, socket_timeout=5.0, retry_on_timeout=True)
    pipe = AutoPipeline(client, timeout=5.0)
    try:
        return await _timed(n, lambda: pipe.execute("PING"))
    finally:
        await pipe.close()
        await client.aclose()


async def _flowrra_two_links(url: str, n: int) -> float:
    """The shape of a ``submit``: one command on each of two connections (the backend's
    and the broker's), both sent before either reply is awaited."""
    from flowrra_redis.connection import connect_client
    from flowrra_redis.pipeline import AutoPipeline

    clients = [
        connect_client(url, max_connections=2, socket_timeout=5.0, retry_on_timeout=True)
        for _ in range(2)
    ]
    first, second = (AutoPipeline(client, timeout=5.0) for client in clients)

    async def both() -> None:
        one, two = first.request(("PING",)), second.request(("PING",))  # both sent now
        await one
        await two

    try:
        return await _timed(n, both)
    finally:
        for pipe in (first, second):
            await pipe.close()
        for client in clients:
            await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--n", type=int, default=10_000, help="round trips per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 round trips, one run")
    args = parser.parse_args()
    if args.quick:
        args.n, args.runs = 2_000, 1
    parts = urlsplit(args.redis)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    clients: dict[str, Callable[[], float]] = {
        "blocking socket": lambda: _raw_socket(host, port, args.n),
        "redis-py (blocking)": lambda: _redis_py_sync(args.redis, args.n),
        "redis-py (asyncio)": lambda: asyncio.run(_redis_py_asyncio(args.redis, args.n)),
        "flowrra-redis AutoPipeline (asyncio)": lambda: asyncio.run(
            _flowrra_pipeline(args.redis, args.n)
        ),
        "flowrra-redis, a PING on each of two connections (a submit's shape)": lambda: asyncio.run(
            _flowrra_two_links(args.redis, args.n)
        ),
    }
    print(f"{args.n:,} sequential PINGs to {host}:{port}, median of {args.runs} runs\n")
    print("| client | round trips/s | µs per round trip |")
    print("|---|---:|---:|")
    for name, run in clients.items():
        elapsed = statistics.median(run() for _ in range(args.runs))
        print(f"| {name} | {args.n / elapsed:,.0f} | {elapsed / args.n * 1e6:.0f} |")


if __name__ == "__main__":
    main()
