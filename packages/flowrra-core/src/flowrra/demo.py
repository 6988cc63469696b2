"""``flowrra demo``: the embedded default at work, printed as it happens.

It runs I/O tasks side by side, a CPU-bound task in the process pool, a task that fails
twice and succeeds on its third attempt (exponential backoff), one that fails for good,
and tasks of different priorities queued behind a busy worker.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

from flowrra.app import Flowrra
from flowrra.config import Config, ExecutorConfig
from flowrra.events import TaskEvent
from flowrra.task import TaskStatus

app = Flowrra(Config(executor=ExecutorConfig(num_workers=3, cpu_workers=2)))

_attempts: dict[str, int] = {}


@app.task()
async def fetch_page(url: str) -> dict[str, object]:
    """Pretend to download a page."""
    await asyncio.sleep(random.uniform(0.1, 0.3))
    return {"url": url, "bytes": random.randint(2_000, 90_000)}


@app.task(cpu_bound=True)
def count_primes(limit: int) -> dict[str, int]:
    """Count primes below ``limit`` the slow way, in another process."""
    count = sum(1 for n in range(2, limit) if all(n % d for d in range(2, int(n**0.5) + 1)))
    return {"limit": limit, "primes": count, "pid": os.getpid()}


@app.task(max_retries=3, retry_delay=0.2)
async def flaky_payment(order: str) -> str:
    """Fails on its first two attempts, then succeeds."""
    _attempts[order] = _attempts.get(order, 0) + 1
    if _attempts[order] < 3:
        raise ConnectionError(f"gateway timeout on attempt {_attempts[order]}")
    return f"order {order} charged"


@app.task(max_retries=1, retry_delay=0.1)
async def broken_export() -> None:
    """Always fails."""
    raise ValueError("the export target does not exist")


@app.task()
async def report(label: str) -> str:
    await asyncio.sleep(0.05)
    return label


@app.task()
async def busy(seconds: float) -> None:
    await asyncio.sleep(seconds)


_STATUS_WORDS = {
    TaskStatus.PENDING: "queued",
    TaskStatus.RUNNING: "running",
    TaskStatus.SUCCESS: "done",
    TaskStatus.FAILED: "FAILED",
    TaskStatus.RETRYING: "will retry",
}


def _printer(started: float) -> object:
    def show(event: TaskEvent) -> None:
        detail = ""
        if event.status is TaskStatus.RETRYING:
            detail = f"  {event.error} -> retry {event.retries + 1} in {event.retry_in:.1f}s"
        elif event.status is TaskStatus.FAILED:
            detail = f"  {event.error} (after {event.retries} retries)"
        elif event.status is TaskStatus.RUNNING and event.retries:
            detail = f"  (attempt {event.retries + 1})"
        print(
            f"{time.monotonic() - started:7.3f}s  {event.task_name:<14} {event.task_id[-8:]}  "
            f"{_STATUS_WORDS[event.status]}{detail}",
            flush=True,
        )

    return show


async def run_demo() -> None:
    """Run every part of the demo and print each task's life."""
    started = time.monotonic()
    app.events.add_listener(_printer(started))  # type: ignore[arg-type]
    print(f"Flowrra demo: embedded (in-memory broker and results), pid {os.getpid()}\n")
    async with app:
        print("-- I/O tasks run side by side; a CPU task runs in the process pool")
        ids = [await app.submit(fetch_page, f"https://example.com/{n}") for n in range(4)]
        cpu_id = await app.submit(count_primes, 60_000)
        for task_id in ids:
            await app.wait_for_result(task_id, timeout=10)
        cpu = await app.wait_for_result(cpu_id, timeout=60)
        print(
            f"   count_primes ran in pid {cpu.result['pid']} and found "
            f"{cpu.result['primes']} primes below {cpu.result['limit']}\n"
        )

        print(
            "-- A task that fails twice, backing off 0.2s then 0.4s, then succeeds; "
            "and one that fails for good"
        )
        flaky_id = await app.submit(flaky_payment, "A-1001")
        broken_id = await app.submit(broken_export)
        flaky = await app.wait_for_result(flaky_id, timeout=10)
        broken = await app.wait_for_result(broken_id, timeout=10)
        print(
            f"   flaky_payment: {flaky.status.value} after {flaky.retries} retries "
            f"-> {flaky.result!r}"
        )
        print(f"   broken_export: {broken.status.value} -> {broken.error}\n")

        print(
            "-- Priorities: three slots are busy; tasks queued at priorities 10, 5, 0, 1 "
            "run lowest number first"
        )
        blockers = [await app.submit(busy, 0.3) for _ in range(3)]
        order = [await app.submit(report, f"priority {p}", priority=p) for p in (10, 5, 0, 1)]
        for task_id in blockers:
            await app.wait_for_result(task_id, timeout=10)
        finished = [await app.wait_for_result(task_id, timeout=10) for task_id in order]
        ran = sorted(finished, key=lambda r: r.started_at or 0)
        print("   started in order: " + ", ".join(str(r.result) for r in ran))
    print(f"\nDone in {time.monotonic() - started:.2f}s.")
