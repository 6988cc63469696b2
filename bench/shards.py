"""How far from global priority order sharded queues deliver (issue 16 part 1).

Not a test: a measurement. N messages with random priorities 0..9 are queued (all before
the first reserve: the backlog a loaded system has), then C consumers of one broker drain
them in batches of B, as a worker's reserve loop does; the delivery order is compared with
the global order one queue gives (priority, then submit order).

- ``inverted``: the share of deliveries made while a strictly more urgent message was
  still waiting (on another shard: within a shard, order is exact). 0 for one shard.
- ``displacement``: how many places a message was delivered from its place in the global
  order, mean and 99th percentile, as a share of N.
- ``gap``: the mean priority difference of the inverted deliveries (how much more urgent
  the message left waiting was, at most).

    python bench/shards.py                        # shared Redis, db 9, own prefix
    python bench/shards.py --cluster              # a local 3-master cluster of its own
    python bench/shards.py --n 20000 --shards 1 3 6 --batch 1 10 50
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent / "packages/flowrra-redis/tests/apps"))

from flowrra_redis import RedisBroker, ShardedRedisBroker

from flowrra.task import TaskMessage, new_task_id


def _broker(url: str, prefix: str, shards: int) -> Any:
    if shards == 1:
        return RedisBroker(url, prefix=prefix)
    return ShardedRedisBroker(url, shards=shards, prefix=prefix)


async def run(
    url: str, n: int, shards: int, batch: int, consumers: int, seed: int
) -> dict[str, Any]:
    prefix = f"bench-shards-{uuid.uuid4().hex[:8]}"
    broker = _broker(url, prefix, shards)
    await broker.connect()
    rng = random.Random(seed)
    now = time.time()
    sent = [
        TaskMessage(new_task_id(), "bench", (i,), priority=rng.randrange(10), submitted_at=now)
        for i in range(n)
    ]
    for start in range(0, n, 1000):
        await broker.enqueue_many(sent[start : start + 1000])
    delivered: list[int] = []
    began = time.perf_counter()

    async def consume() -> None:
        while len(delivered) < n:
            got = await broker.reserve(batch, 0.2)
            delivered.extend(m.args[0] for m in got)
            for m in got:
                await broker.ack(m)

    await asyncio.gather(*(consume() for _ in range(consumers)))
    elapsed = time.perf_counter() - began
    await broker.purge()
    await broker.close()
    assert sorted(delivered) == list(range(n)), "lost or duplicated messages"
    priority = [m.priority for m in sent]
    ideal = sorted(range(n), key=lambda i: (priority[i], i))
    ideal_pos = {i: p for p, i in enumerate(ideal)}
    displacement = sorted(abs(pos - ideal_pos[i]) for pos, i in enumerate(delivered))
    inverted, gaps = 0, []
    waiting_min = 10  # the most urgent priority still waiting after each delivery
    suffix_min = [10] * (n + 1)
    for pos in range(n - 1, -1, -1):
        suffix_min[pos] = min(suffix_min[pos + 1], priority[delivered[pos]])
    for pos, i in enumerate(delivered):
        waiting_min = suffix_min[pos + 1]
        if waiting_min < priority[i]:
            inverted += 1
            gaps.append(priority[i] - waiting_min)
    return {
        "shards": shards,
        "batch": batch,
        "inverted": inverted / n,
        "disp_mean": sum(displacement) / n / n,
        "disp_p99": displacement[int(0.99 * (n - 1))] / n,
        "gap": sum(gaps) / len(gaps) if gaps else 0.0,
        "rate": n / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--cluster", action="store_true", help="start a local 3-master cluster")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 3, 6])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    cluster = None
    url = args.url
    if args.cluster:
        from local_servers import LocalCluster

        cluster = LocalCluster()
        url = cluster.url
    try:
        print(f"N={args.n:,}, priorities 0..9 uniform, {args.consumers} consumers, {url}")
        print("| shards | batch | inverted | displacement mean | displacement p99 | gap | msgs/s |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for shards in args.shards:
            for batch in args.batch:
                r = asyncio.run(run(url, args.n, shards, batch, args.consumers, args.seed))
                print(
                    f"| {r['shards']} | {r['batch']} | {r['inverted']:.1%} | "
                    f"{r['disp_mean']:.2%} | {r['disp_p99']:.2%} | {r['gap']:.2f} | "
                    f"{r['rate']:,.0f} |",
                    flush=True,
                )
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
