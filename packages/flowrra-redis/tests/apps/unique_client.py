"""Submits one unique task many times at once, from a process of its own, for
test_unique_redis: ``python unique_client.py KEY N START`` waits until the Unix time
START (so several processes submit together), then submits ``record(7)`` with
``unique_key=KEY`` N times concurrently, and prints the ids as JSON."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from redis_app import app, record


async def main(key: str, count: int, start: float) -> list[str]:
    async with app.producer():
        await asyncio.sleep(max(0.0, start - time.time()))
        call = record.with_options(unique_key=key)
        return list(await asyncio.gather(*(call.submit(7) for _ in range(count))))


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))))
