"""How long an idle worker takes to start a task, one shard against several (issue 16).

With every shard empty, a worker of a sharded broker waits on all of them at once (a
BLPOP per shard, each with its RESERVE pipelined behind it: ``ShardedRedisBroker._wait_any``);
the first shard to get work wakes it and the other waits are cancelled. This measures
what that costs against one shard: the time from just before ``submit`` to the moment
the task's body starts (its first line reads the clock), on a worker process that has
been idle for a while (``--gap``, so it is blocked again), one task at a time.

    python bench/idle_wake.py                     # S = 1 and 3, 3 rounds of 200 each
    python bench/idle_wake.py --shards 1 3 6 --n 300 --rounds 5

A redis-server of its own on a free port (the shared server is not touched); one worker
process per round and S; rounds alternate the shard counts so drift hits all alike.
Prints the median and the 99th percentile of all rounds' samples, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from flowrra_redis import RedisBackend, RedisBroker, ShardedRedisBackend, ShardedRedisBroker

from flowrra import Flowrra

URL = os.environ.get("IDLE_WAKE_URL", "redis://127.0.0.1:6379/0")
SHARDS = int(os.environ.get("IDLE_WAKE_SHARDS", "1"))
PREFIX = os.environ.get("IDLE_WAKE_PREFIX", "idle-wake")


def build(url: str, shards: int, prefix: str) -> Flowrra:
    """The app, S shards for the queues and the results (1: the plain classes)."""
    if shards == 1:
        app = Flowrra(
            broker=RedisBroker(url, prefix=prefix), backend=RedisBackend(url, prefix=prefix)
        )
    else:
        app = Flowrra(
            broker=ShardedRedisBroker(url, shards=shards, prefix=prefix),
            backend=ShardedRedisBackend(url, shards=shards, prefix=prefix),
        )

    @app.task(name="started_at")
    async def started_at() -> float:
        return time.time()

    return app


#: What the worker process runs (``flowrra worker idle_wake:app``), from the environment.
app = build(URL, SHARDS, PREFIX)


async def _round(url: str, shards: int, n: int, gap: float, tag: str) -> list[float]:
    env = {
        **os.environ,
        "IDLE_WAKE_URL": url,
        "IDLE_WAKE_SHARDS": str(shards),
        "IDLE_WAKE_PREFIX": tag,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])
        ),
    }
    worker = subprocess.Popen(  # noqa: ASYNC220 (starts at once)
        [sys.executable, "-m", "flowrra", "worker", "idle_wake:app", "-c", "4"],
        cwd=Path(__file__).parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    producer = build(url, shards, tag)
    samples: list[float] = []
    try:
        async with producer.producer():
            for i in range(n + 20):  # the first 20 warm up (connections, scripts)
                await asyncio.sleep(gap)  # the worker is idle again: blocked on every shard
                sent = time.time()
                task_id = await producer.submit("started_at")
                result = await producer.wait_for_result(task_id, timeout=30)
                if i >= 20:
                    samples.append((result.result - sent) * 1000)
    finally:
        worker.terminate()
        worker.wait(15)
    return samples


async def main() -> None:
    from submit_trip import _start_server  # a private redis-server on a free port

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--n", type=int, default=200, help="round trips per round and S")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gap", type=float, default=0.05, help="idle seconds before each")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        proc, url = _start_server(directory)
        try:
            samples: dict[int, list[float]] = {s: [] for s in options.shards}
            for r in range(options.rounds):
                for shards in options.shards:
                    tag = f"wake{r}s{shards}"
                    samples[shards] += await _round(url, shards, options.n, options.gap, tag)
                    redis.Redis.from_url(url).flushdb()  # the private server's own
        finally:
            proc.kill()
            proc.wait()
    print(
        f"{options.rounds} rounds x {options.n} submits to an idle worker "
        f"({options.gap * 1000:.0f} ms idle before each); submit to start, ms"
    )
    print("| shards | median | p99 |")
    print("|---:|---:|---:|")
    for shards, values in samples.items():
        values.sort()
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        print(f"| {shards} | {statistics.median(values):.2f} | {p99:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
