"""An app for ``flowrra worker reload_app:app --processes 2 -Q a,b --reload``: the test
copies this file into a folder of its own, runs the worker there, and edits ``VERSION``.
Each task returns ``[VERSION, pid]``: which code ran, in which process."""

from __future__ import annotations

import os

from flowrra_redis import RedisBackend, RedisBroker

from flowrra import Flowrra

VERSION = 1
URL = os.environ["FLOWRRA_TEST_REDIS_URL"]
PREFIX = os.environ["FLOWRRA_TEST_PREFIX"]

app = Flowrra(broker=RedisBroker(URL, prefix=PREFIX), backend=RedisBackend(URL, prefix=PREFIX))


@app.task(queue="a")
async def in_a() -> list[int]:
    return [VERSION, os.getpid()]


@app.task(queue="b")
async def in_b() -> list[int]:
    return [VERSION, os.getpid()]


@app.task(queue="c")
async def in_c() -> list[int]:
    return [VERSION, os.getpid()]
