"""An app for `flowrra worker` tests: it queues its own work on startup, since the
in-memory broker is only reachable from inside the process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from flowrra import Config, ExecutorConfig, Flowrra

app = Flowrra(Config(executor=ExecutorConfig(num_workers=2)))
OUT = Path(os.environ["DRAIN_OUT"])
COUNT = int(os.environ.get("DRAIN_COUNT", "10"))


@app.task()
async def slow(i: int) -> int:
    await asyncio.sleep(0.2)
    with OUT.open("a") as f:
        f.write(f"{i}\n")
    return i


@app.on_startup
async def seed() -> None:
    for i in range(COUNT):
        await app.submit(slow, i)
    Path(str(OUT) + ".ready").write_text("ready")
