"""flowrra 0.1.8 on Redis (its own ``RedisBroker`` and ``RedisBackend``).

0.1.8 has no worker command: a worker is a process that starts the app, which runs its
I/O workers (coroutines popping the Redis list with BRPOP) until stopped. Run this file as
a script for that: ``python bench/redis_apps/flowrra018_app.py``; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import asyncio
import signal

from bench_urls import BACKEND_URL, BROKER_URL

from flowrra import Flowrra

app = Flowrra.from_urls(broker=BROKER_URL, backend=BACKEND_URL)


@app.task()
async def noop() -> None:
    return None


async def serve() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await app.start()
    await stop.wait()
    await app.stop(wait=True, timeout=5.0)


if __name__ == "__main__":
    asyncio.run(serve())
