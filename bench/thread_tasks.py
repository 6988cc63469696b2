"""Blocking tasks in the worker's thread pool: throughput against the ideal.

Run with the project's interpreter (flowrra-core installed)::

    python bench/thread_tasks.py [--n 2000] [--block-ms 20] [--slots 8 32 100] [--rounds 3]

Each plain ``def`` task blocks its thread for ``--block-ms`` (``time.sleep``: a database
call or an HTTP request as the ORM or ``requests`` makes it). An embedded app with ``slots``
I/O slots (and as many threads) runs ``--n`` of them; the ideal rate is
``slots / block`` tasks/s. For comparison, the same work as ``cpu_bound=True`` would run
``cpu_workers`` at a time, and as an ``async def`` calling the blocking function it would
run one at a time (it blocks the loop). Figures: median tasks/s over rounds, and the share
of the ideal rate reached.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from flowrra import Config, ExecutorConfig, Flowrra


def build(slots: int, block: float) -> tuple[Flowrra, object]:
    app = Flowrra(
        Config(executor=ExecutorConfig(num_workers=slots, max_queue_size=0, max_retries=0))
    )

    @app.task()
    def blocking() -> None:
        time.sleep(block)

    return app, blocking


async def one_round(slots: int, block: float, n: int) -> float:
    app, blocking = build(slots, block)
    async with app:
        started = time.perf_counter()
        ids = [await blocking.submit() for _ in range(n)]  # type: ignore[attr-defined]
        for task_id in ids:
            await app.wait_for_result(task_id, timeout=600)
        return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--block-ms", type=float, default=20.0)
    parser.add_argument("--slots", type=int, nargs="+", default=[8, 32, 100])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="n=400, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds = 400, 2
    block = args.block_ms / 1000
    print(f"{args.n} blocking tasks of {args.block_ms:g} ms each, median of {args.rounds}")
    print("| slots (= threads) | tasks/s | ideal tasks/s | of ideal |")
    print("|---|---|---|---|")
    for slots in args.slots:
        rates = [asyncio.run(one_round(slots, block, args.n)) for _ in range(args.rounds)]
        rate = statistics.median(rates)
        ideal = slots / block
        print(f"| {slots} | {rate:,.0f} | {ideal:,.0f} | {rate / ideal:.0%} |")


if __name__ == "__main__":
    main()
