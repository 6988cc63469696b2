"""Distributed on Redis: this process submits, a `flowrra worker` process runs the tasks.

    pip install "flowrra[redis]"
    python examples/redis_distributed.py          # needs Redis on localhost:6379

Run as a script, it starts `flowrra worker redis_distributed:app` (this very module, so the
worker knows the same tasks), submits tasks at three priorities and one that fails once,
prints each result, then stops the worker with SIGTERM, as a deployment would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

from flowrra import Flowrra

URL = os.environ.get("FLOWRRA_EXAMPLE_REDIS_URL", "redis://127.0.0.1:6379/8")
# A prefix of its own per run, passed on to the worker, so runs never share a queue.
PREFIX = os.environ.setdefault("FLOWRRA_EXAMPLE_PREFIX", f"example-{uuid.uuid4().hex[:8]}")

app = Flowrra.from_urls(broker=f"{URL}?prefix={PREFIX}", backend=f"{URL}?prefix={PREFIX}")


@app.task()
async def resize(image: str, width: int) -> str:
    await asyncio.sleep(0.05)  # pretend to work
    return f"{image} at {width}px (worker pid {os.getpid()})"


ATTEMPTS: dict[str, int] = {}


@app.task(max_retries=2, retry_delay=0.2)
async def flaky(name: str) -> str:
    ATTEMPTS[name] = ATTEMPTS.get(name, 0) + 1
    if ATTEMPTS[name] == 1:
        raise ConnectionError("the first attempt fails")
    return f"{name} succeeded on attempt {ATTEMPTS[name]}"


async def main() -> int:
    try:
        await app.broker.connect()
    except Exception as exc:
        print(f"Redis is not reachable at {URL}: {exc}")
        return 1 if os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1" else 0
    worker = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "flowrra", "--log-level", "WARNING"),
        *("worker", "redis_distributed:app"),
        cwd=Path(__file__).parent,
    )
    try:
        async with app.producer():
            ids = [
                await app.submit(resize, f"photo-{n}.jpg", 640, priority=n % 3) for n in range(6)
            ]
            ids.append(await app.submit(flaky, "upload"))
            for task_id in ids:
                result = await app.wait_for_result(task_id, timeout=30)
                print(f"{result.task_name}: {result.status.value}: {result.result}")
            worker.send_signal(signal.SIGTERM)  # it finishes what it holds, then exits
            await asyncio.wait_for(worker.wait(), 30)
            depths = await app.broker.queue_depths()  # type: ignore[attr-defined]
            print(f"queue after the worker stopped: {depths}")
    finally:
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
            await asyncio.wait_for(worker.wait(), 30)
        await forget_this_run()
    return 0


async def forget_this_run() -> None:
    """Delete this run's keys (results would otherwise stay for their one-day TTL)."""
    client = app.broker.client  # type: ignore[attr-defined]
    keys = [key async for key in client.scan_iter(match=f"{{{PREFIX}}}*")]
    if keys:
        await client.delete(*keys)
    await app.broker.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
