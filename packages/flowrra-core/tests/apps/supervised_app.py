"""An app for `flowrra worker --processes` tests. Each process queues its own work on
startup (the in-memory broker is only reachable from inside the process), writes
``<SUPERVISED_DIR>/ready-<pid>`` holding ``VERSION`` once it has, and each task appends
``<pid> <i>`` to ``<SUPERVISED_DIR>/done``."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from flowrra import Config, ExecutorConfig, Flowrra

VERSION = 1

app = Flowrra(Config(executor=ExecutorConfig(num_workers=2)))
DIR = Path(os.environ["SUPERVISED_DIR"])
COUNT = int(os.environ.get("SUPERVISED_COUNT", "10"))
PAUSE = float(os.environ.get("SUPERVISED_PAUSE", "0.2"))


@app.task()
async def slow(i: int) -> int:
    await asyncio.sleep(PAUSE)
    with (DIR / "done").open("a") as f:
        f.write(f"{os.getpid()} {i}\n")
    return i


@app.on_startup
async def seed() -> None:
    for i in range(COUNT):
        await app.submit(slow, i)
    (DIR / f"ready-{os.getpid()}").write_text(str(VERSION))
