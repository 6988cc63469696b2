"""Instructions per task with and without task limits (callgrind; see bench/README.md):
``python bench/limits_ir.py N memory|redis none|limit``."""

import asyncio
import sys
import uuid

from flowrra import BackendConfig, Config, Flowrra

N = int(sys.argv[1])
MODE = sys.argv[2]
LIMIT = sys.argv[3] == "limit"
kw = {"rate_limit": "1000000/s", "max_concurrency": 100000} if LIMIT else {}


async def run():
    if MODE == "memory":
        app = Flowrra(Config(backend=BackendConfig(max_entries=max(N, 1))))
    else:
        from flowrra_redis import RedisBackend, RedisBroker

        p = "rlbench-" + uuid.uuid4().hex[:8]
        app = Flowrra(
            broker=RedisBroker("redis://127.0.0.1:6379/0", prefix=p),
            backend=RedisBackend("redis://127.0.0.1:6379/0", prefix=p),
        )

    @app.task(**kw)
    async def noop():
        return None

    async with app:
        if MODE == "memory":
            ids = [await app.submit(noop) for _ in range(N)]
        else:
            ids = await app.submit_many(noop, [() for _ in range(N)])
        for i in ids:
            await app.wait_for_result(i)
    if MODE != "memory":
        import redis

        r = redis.Redis()
        for k in r.scan_iter(match=f"*{p}*", count=1000):
            r.delete(k)


asyncio.run(run())
