"""CPU tasks must live at module level: the pool's children import them by name."""

from __future__ import annotations

import os
import time

from flowrra import Config, ExecutorConfig, Flowrra

app = Flowrra(Config(executor=ExecutorConfig(num_workers=8, cpu_workers=2)))


@app.task(cpu_bound=True)
def whoami() -> int:
    return os.getpid()


@app.task(cpu_bound=True)
def occupy(seconds: float) -> list[float]:
    """Hold a pool process for ``seconds``; report (start, end) wall times and the pid."""
    start = time.time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass
    return [start, time.time(), float(os.getpid())]


@app.task(cpu_bound=True)
def square(n: int) -> int:
    return n * n


@app.task(cpu_bound=True, timeout=0.3, max_retries=0)
def too_slow() -> None:
    time.sleep(3)
