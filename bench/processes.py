"""Throughput of ``flowrra worker --processes N`` on Redis, against one worker process.

Queues ``--n`` no-op tasks (``pid_of``, the Redis tests' app) on a key prefix of its own,
then starts ``flowrra worker redis_app:app --processes N -c C`` and times from its start to
the last result (start-up included: about half a second either way, which ``--n`` makes
small); medians of ``--runs`` runs per N; prints tasks/s, the ratio to the first N, and
how many processes ran tasks. What it shows depends on the cores free.

    python bench/processes.py [--n 10000] [--runs 3] [--processes 1 2] [-c 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from flowrra_redis import RedisBackend, RedisBroker

from flowrra import Flowrra

URL = os.environ.get("FLOWRRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
APPS = Path(__file__).parents[1] / "packages" / "flowrra-redis" / "tests" / "apps"


async def one_run(processes: int, n: int, concurrency: int) -> tuple[float, int]:
    prefix = f"bench-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "FLOWRRA_TEST_REDIS_URL": URL,
        "FLOWRRA_TEST_PREFIX": prefix,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(APPS), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "flowrra", "--log-level", "WARNING", "worker"]
    command += ["redis_app:app", "--processes", str(processes), "-c", str(concurrency)]
    app = Flowrra(broker=RedisBroker(URL, prefix=prefix), backend=RedisBackend(URL, prefix=prefix))
    for handle in _tasks():
        app.registry.register(handle)
    proc = None
    try:
        async with app.producer():
            ids = [await app.submit("pid_of", i) for i in range(n)]
            start = time.perf_counter()
            proc = subprocess.Popen(command, cwd=APPS, env=env)  # noqa: ASYNC220 (at once)
            pids = {(await app.wait_for_result(task_id, timeout=300)).result for task_id in ids}
            return n / (time.perf_counter() - start), len(pids)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        client = redis.Redis.from_url(URL)
        for pattern in (f"{{{prefix}}}*", f"{prefix}:*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
        client.close()


def _tasks() -> list[Any]:
    """The handles of the workers' app (imported once, for its task names)."""
    os.environ.setdefault("FLOWRRA_TEST_REDIS_URL", URL)
    os.environ.setdefault("FLOWRRA_TEST_PREFIX", "bench-import")
    sys.path.insert(0, str(APPS))
    import redis_app

    return list(redis_app.app.registry)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10000, help="tasks per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per N (medians)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("-c", "--concurrency", type=int, default=32)
    args = parser.parse_args()
    print(f"nproc={os.cpu_count()} load={os.getloadavg()[0]:.2f} n={args.n} c={args.concurrency}")
    baseline = None
    for processes in args.processes:
        runs = [asyncio.run(one_run(processes, args.n, args.concurrency)) for _ in range(args.runs)]
        rate = statistics.median(r for r, _ in runs)
        baseline = baseline or rate
        used = min(p for _, p in runs)
        print(
            f"--processes {processes}: {rate:,.0f} tasks/s median of {args.runs} "
            f"(x{rate / baseline:.2f}), tasks ran in >= {used} processes"
        )


if __name__ == "__main__":
    main()
