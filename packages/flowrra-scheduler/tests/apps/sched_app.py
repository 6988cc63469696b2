"""The app the multi-process tests run with ``flowrra scheduler sched_app:app``.

The store URL and an output file come from the environment. The ``beat`` task appends one
line per execution (``O_APPEND`` writes of one line are atomic), so the test counts
executions across every process from outside.
"""

from __future__ import annotations

import os

from flowrra import Flowrra

STORE = os.environ["FLOWRRA_TEST_STORE_URL"]
OUT = os.environ["FLOWRRA_TEST_OUT"]

app = Flowrra()
scheduler = app.create_scheduler(STORE, sync_interval=0.5)


@app.task()
async def beat(label: str) -> None:
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{label} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
