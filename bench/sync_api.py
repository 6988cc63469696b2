"""What a call of the sync API costs against the same call awaited, per call.

Run with the project's interpreter (flowrra-core and flowrra-redis installed)::

    python bench/sync_api.py [--n 2000] [--rounds 5] [--threads 32]
    python bench/sync_api.py --quick      # n=500, 3 rounds
    SYNC_BENCH_URL=redis://host:6379/3 python bench/sync_api.py   # another server or db

Each row is one call made ``--n`` times one after the other, in ``--rounds`` rounds; the
figures are the medians over rounds of each round's median and 99th percentile per call
(µs), so one slow round does not move them. Sync calls come from the main thread, which runs
no event loop:

- Redis, producer only (the app is never started; ``submit_sync`` and ``delay`` run on the
  app's own loop in a background thread): ``submit``, ``get_result``, and a round trip
  (submit, then wait for the result) with one ``flowrra worker`` process running the task
  (concurrency 8); then ``--threads`` threads calling ``submit_sync`` at once (total rate).
- In memory, the app running in an event loop of another thread (as under a web server):
  the sync calls are handed to that loop; the async rows await in that loop.

The app uses a key prefix of its own (``bench-sync-<random>``) in database 12 of the local
Redis (``SYNC_BENCH_URL``) and deletes its keys at the end; nothing else is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flowrra import Flowrra

BENCH = Path(__file__).resolve().parent
URL = os.environ.get("SYNC_BENCH_URL", "redis://127.0.0.1:6379/12")
PREFIX = os.environ.get("SYNC_BENCH_PREFIX", f"bench-sync-{uuid.uuid4().hex[:8]}")

# The app the worker process imports (``flowrra worker sync_api:app``) and the producer uses.
app = Flowrra.from_urls(broker=f"{URL}?prefix={PREFIX}", backend=f"{URL}?prefix={PREFIX}")


@app.task()
async def noop() -> None:
    return None


Row = tuple[str, float, float]  # label, median µs per call, p99 µs per call


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _rounds(label: str, rounds: int, one_round: Callable[[], list[float]]) -> Row:
    medians, p99s = [], []
    for _ in range(rounds):
        median, p99 = _stats(one_round())
        medians.append(median)
        p99s.append(p99)
    return label, statistics.median(medians), statistics.median(p99s)


def _time_sync(n: int, call: Callable[[], object]) -> list[float]:
    call()  # warm
    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        started = clock()
        call()
        samples.append((clock() - started) / 1000)
    return samples


async def _time_async(n: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    await call()  # warm
    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        started = clock()
        await call()
        samples.append((clock() - started) / 1000)
    return samples


def _run_in(loop: asyncio.AbstractEventLoop, coro: Awaitable[Any]) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, loop).result()  # type: ignore[arg-type]


@contextmanager
def _worker() -> Iterator[None]:
    env = {
        **os.environ,
        "PYTHONPATH": str(BENCH),
        "SYNC_BENCH_URL": URL,
        "SYNC_BENCH_PREFIX": PREFIX,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowrra", "worker", "sync_api:app", "-c", "8"],
        cwd=BENCH,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        task_id = app.submit_sync(noop)
        app.wait_for_result_sync(task_id, timeout=30)  # the worker is up
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def redis_rows(n: int, rounds: int, threads: int) -> list[Row]:
    rows: list[Row] = []

    async def submit_async() -> list[float]:
        return await _time_async(n, lambda: app.submit(noop))

    rows.append(
        _rounds("submit: await app.submit(...)", rounds, lambda: asyncio.run(submit_async()))
    )
    rows.append(
        _rounds(
            "submit: app.submit_sync(...)",
            rounds,
            lambda: _time_sync(n, lambda: app.submit_sync(noop)),
        )
    )
    rows.append(_rounds("submit: task.delay()", rounds, lambda: _time_sync(n, noop.delay)))
    known = app.submit_sync(noop)

    async def get_async() -> list[float]:
        return await _time_async(n, lambda: app.get_result(known))

    rows.append(_rounds("get_result: await", rounds, lambda: asyncio.run(get_async())))
    rows.append(
        _rounds(
            "get_result: get_result_sync",
            rounds,
            lambda: _time_sync(n, lambda: app.get_result_sync(known)),
        )
    )
    with _worker():

        async def round_trip() -> None:
            await app.wait_for_result(await app.submit(noop), timeout=10)

        async def trips_async() -> list[float]:
            return await _time_async(n, round_trip)

        rows.append(
            _rounds(
                "round trip: await submit + wait_for_result",
                rounds,
                lambda: asyncio.run(trips_async()),
            )
        )
        rows.append(
            _rounds(
                "round trip: delay() + wait_for_result_sync",
                rounds,
                lambda: _time_sync(n, lambda: app.wait_for_result_sync(noop.delay(), timeout=10)),
            )
        )
    per_thread = max(n // threads, 1) * 4
    rates = [_threads_rate(threads, per_thread) for _ in range(rounds)]
    rows.append(
        (
            f"{threads} threads x {per_thread} submit_sync: submits/s (total)",
            statistics.median(rates),
            float("nan"),
        )
    )
    return rows


def _threads_rate(threads: int, per_thread: int) -> float:
    """Submits per second with ``threads`` threads each calling ``submit_sync`` at once."""
    barrier = threading.Barrier(threads + 1)

    def submit_many() -> None:
        barrier.wait()
        for _ in range(per_thread):
            app.submit_sync(noop)

    pool = [threading.Thread(target=submit_many) for _ in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    return threads * per_thread / (time.perf_counter() - started)


def memory_rows(n: int, rounds: int) -> list[Row]:
    embedded = Flowrra()

    @embedded.task()
    async def nothing() -> None:
        return None

    started = threading.Event()
    stop: list[asyncio.Event] = []
    loops: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        stop.append(asyncio.Event())
        loops.append(asyncio.get_running_loop())
        async with embedded:
            started.set()
            await stop[0].wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    started.wait()
    loop = loops[0]
    rows: list[Row] = []
    try:

        async def submit() -> None:
            await embedded.submit(nothing)

        async def round_trip() -> None:
            await embedded.wait_for_result(await embedded.submit(nothing), timeout=10)

        rows.append(
            _rounds(
                "memory submit: await app.submit(...)",
                rounds,
                lambda: _run_in(loop, _time_async(n, submit)),
            )
        )
        rows.append(
            _rounds(
                "memory round trip: await submit + wait_for_result",
                rounds,
                lambda: _run_in(loop, _time_async(n, round_trip)),
            )
        )
        rows.append(
            _rounds("memory submit: task.delay()", rounds, lambda: _time_sync(n, nothing.delay))
        )
        rows.append(
            _rounds(
                "memory round trip: delay() + wait_for_result_sync",
                rounds,
                lambda: _time_sync(
                    n, lambda: embedded.wait_for_result_sync(nothing.delay(), timeout=10)
                ),
            )
        )
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join()
    return rows


def _cleanup() -> None:
    import redis

    client = redis.Redis.from_url(URL)
    keys = list(client.scan_iter(match=f"{{{PREFIX}}}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (medians)")
    parser.add_argument("--threads", type=int, default=32, help="threads in the concurrent row")
    parser.add_argument("--quick", action="store_true", help="n=500, 3 rounds")
    args = parser.parse_args(argv)
    n, rounds = (500, 3) if args.quick else (args.n, args.rounds)
    print(f"# sync API vs async, per call (n={n} x {rounds} rounds; medians)\n")
    print(
        f"- python {sys.version.split()[0]}, nproc {os.cpu_count()}, load {os.getloadavg()[0]:.2f}"
    )
    print(f"- redis {URL}, prefix {PREFIX}\n")
    try:
        rows = redis_rows(n, rounds, args.threads) + memory_rows(n, rounds)
    finally:
        asyncio.run(app.close())
        _cleanup()
    print("| call | median µs | p99 µs |")
    print("|---|---:|---:|")
    for label, median, p99 in rows:
        if "submits/s" in label:
            print(f"| {label} | {median:,.0f} /s | |")
        else:
            print(f"| {label} | {median:,.1f} | {p99:,.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
