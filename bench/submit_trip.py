"""One awaited submit at a time, with the PENDING record and the message in one script
(broker and backend on one server: issue 16 part 4) against the two-write path, in one
run, on a redis-server of its own (a free port: the shared server is not touched).

    python bench/submit_trip.py            # 5 rounds of 5,000 submits per path, medians
    python bench/submit_trip.py --quick    # 3 rounds of 1,000
    python bench/submit_trip.py --shards 1,3   # each path on S = 1 and on S = 3 shards

Per round and path: awaited submits/s (one at a time, no worker), Redis CPU µs per submit
(``INFO cpu`` of the private server, so nobody else's), then ``submit_many`` of 100,000
tasks/s. Rounds alternate the paths so drift hits all alike. With ``--shards``, each
path runs on each shard count (S > 1: ShardedRedisBroker and ShardedRedisBackend, S
each, on the one server: a submit is one SUBMIT on its task's shard).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from typing import Any

import redis
from flowrra_redis import RedisBackend, RedisBroker, ShardedRedisBackend, ShardedRedisBroker

from flowrra import Flowrra


def _start_server(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", directory],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.01)
    client.close()
    return proc, f"redis://127.0.0.1:{port}/0"


def _cpu(client: redis.Redis) -> float:
    info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def _round(
    url: str, one_trip: bool, n: int, batch: int, tag: str, shards: int
) -> dict[str, float]:
    app = (
        Flowrra(
            broker=RedisBroker(url, prefix=f"{tag}q"),
            backend=RedisBackend(url, prefix=f"{tag}r"),
        )
        if shards == 1
        else Flowrra(
            broker=ShardedRedisBroker(url, shards=shards, prefix=f"{tag}q"),
            backend=ShardedRedisBackend(url, shards=shards, prefix=f"{tag}r"),
        )
    )
    assert app._recorded_enqueue is not None
    if not one_trip:
        app._recorded_enqueue = None  # the two-write path, as on two servers

    @app.task(name="noop")
    async def noop() -> None:
        return None

    client = redis.Redis.from_url(url)
    try:
        for _ in range(200):  # connected, scripts loaded, caches warm
            await app.submit(noop)
        cpu = _cpu(client)
        started = time.perf_counter()
        for _ in range(n):
            await app.submit(noop)
        single = n / (time.perf_counter() - started)
        redis_us = (_cpu(client) - cpu) / n * 1e6
        started = time.perf_counter()
        await app.submit_many(noop, [()] * batch)
        many = batch / (time.perf_counter() - started)
    finally:
        await app.broker.close()
        await app.backend.close()
        client.flushdb()  # the private server's own database
        client.close()
    return {"single": single, "redis_us": redis_us, "many": many}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--shards", default="1", help="shard counts, comma-separated")
    options = parser.parse_args()
    counts = [int(c) for c in options.shards.split(",")]
    rounds, n = (3, 1000) if options.quick else (5, 5000)
    batch = 100_000
    with tempfile.TemporaryDirectory() as directory:
        proc, url = _start_server(directory)
        try:
            runs: dict[str, list[dict[str, float]]] = {}
            for r in range(rounds):
                for shards in counts:
                    for path, one in (("two writes", False), ("one script", True)):
                        label = path if counts == [1] else f"S={shards}, {path}"
                        tag = f"b{r}{int(one)}s{shards}"
                        result = await _round(url, one, n, batch, tag, shards)
                        runs.setdefault(label, []).append(result)
        finally:
            proc.kill()
            proc.wait()
    print(f"{rounds} rounds x {n:,} awaited submits, submit_many of {batch:,}; medians")
    print("| path | awaited submits/s | Redis CPU µs/submit | submit_many tasks/s |")
    print("|---|---:|---:|---:|")
    for label, results in runs.items():
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(f"| {label} | {med['single']:,.0f} | {med['redis_us']:.1f} | {med['many']:,.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
