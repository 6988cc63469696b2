"""``submit_many`` tasks/s, with Redis's CPU and this process's CPU per task, on a
redis-server of its own (a free port: the shared server is not touched), broker and
backend on one database (one SUBMIT script per 1,000 tasks: issue 16 part 4).

    python bench/submit_many.py                      # 5 rounds of 100,000, no arguments
    python bench/submit_many.py --calls args         # (n, "some text") per task
    python bench/submit_many.py --n 10000 --rounds 7 --calls kwargs

Each round is one ``await app.submit_many(noop, calls)`` on an empty database (flushed
between rounds: the indexes and the ``sent`` set start empty each time); medians. Redis
CPU is ``INFO cpu`` of the private server, client CPU ``time.process_time()``: on a shared
machine they say more than the rate, which moves with whatever else runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

import redis
from flowrra_redis import RedisBackend, RedisBroker
from submit_trip import _cpu, _start_server

from flowrra import Flowrra

CALLS = {
    "none": lambda n: [() for _ in range(n)],
    "args": lambda n: [(i, "some text") for i in range(n)],
    "kwargs": lambda n: [{"x": i, "label": "some text"} for i in range(n)],
}


async def _rounds(url: str, n: int, rounds: int, calls: str) -> dict[str, list[float]]:
    app = Flowrra(broker=RedisBroker(url, prefix="q"), backend=RedisBackend(url, prefix="r"))
    assert app._recorded_enqueue is not None, "one server: one script per chunk"

    @app.task(name="noop")
    async def noop(*args: Any, **kwargs: Any) -> None:
        return None

    client = redis.Redis.from_url(url)
    found: dict[str, list[float]] = {"rate": [], "redis_us": [], "client_us": []}
    try:
        await app.submit_many(noop, CALLS[calls](1000))  # connected, scripts loaded
        for _ in range(rounds):
            client.flushdb()  # the private server's own database
            batch = CALLS[calls](n)
            redis_cpu, client_cpu = _cpu(client), time.process_time()
            started = time.perf_counter()
            await app.submit_many(noop, batch)
            found["rate"].append(n / (time.perf_counter() - started))
            found["client_us"].append((time.process_time() - client_cpu) / n * 1e6)
            found["redis_us"].append((_cpu(client) - redis_cpu) / n * 1e6)
    finally:
        await app.close()
        client.close()
    return found


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", choices=sorted(CALLS), default="none")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        proc, url = _start_server(directory)
        try:
            found = await _rounds(url, options.n, options.rounds, options.calls)
        finally:
            proc.kill()
            proc.wait()
    med = {k: statistics.median(v) for k, v in found.items()}
    rates = " / ".join(f"{r:,.0f}" for r in found["rate"])
    print(f"{options.rounds} x submit_many of {options.n:,} ({options.calls}); medians")
    print("| tasks/s | rounds | Redis CPU µs/task | client CPU µs/task |")
    print("|---:|---|---:|---:|")
    print(f"| {med['rate']:,.0f} | {rates} | {med['redis_us']:.1f} | {med['client_us']:.1f} |")


if __name__ == "__main__":
    asyncio.run(main())
