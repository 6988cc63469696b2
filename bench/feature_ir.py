"""Instructions per task of issue 14's features on the embedded app (callgrind).

    ir() { PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
           python bench/feature_ir.py $1 $2 2>&1 \\
           | grep -o 'Collected : [0-9]*' | grep -o '[0-9]*$'; }
    for m in plain queue unique limited concurrency; do python bench/feature_ir.py 0 $m; done
    for m in plain queue unique limited concurrency; do
      echo "$m $(( ($(ir 3000 $m) - $(ir 0 $m)) / 3000 ))"; done

Each mode submits N one-argument tasks (each its own argument), runs and waits for them,
with the collector off: ``plain`` (no feature), ``queue`` (``@app.task(queue="emails")``),
``unique`` (``unique=True``: a key derived from the arguments per submit, taken and
released), ``limited`` (``rate_limit`` never reached) and ``concurrency``
(``max_concurrency`` never reached). See bench/README.md.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

from flowrra import BackendConfig, Config, Flowrra

MODES: dict[str, dict[str, Any]] = {
    "plain": {},
    "queue": {"queue": "emails"},
    "unique": {"unique": True},
    "limited": {"rate_limit": "1000000/s"},
    "concurrency": {"max_concurrency": 1000},
}


async def run(n: int, mode: str) -> None:
    app = Flowrra(Config(backend=BackendConfig(max_entries=max(n, 1))))

    @app.task(**MODES[mode])
    async def noop(i: int) -> None:
        return None

    async with app:
        ids = [await app.submit(noop, i) for i in range(n)]
        for task_id in ids:
            await app.wait_for_result(task_id)


if __name__ == "__main__":
    gc.disable()
    asyncio.run(run(int(sys.argv[1]), sys.argv[2]))
