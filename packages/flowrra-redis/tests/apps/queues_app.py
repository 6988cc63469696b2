"""``redis_app``'s app with tasks on named queues: ``flowrra worker queues_app:app -Q ...``.

A separate module, so the other tests' workers (``redis_app:app``) keep taking from the
default queue only."""

from __future__ import annotations

import asyncio
import os

try:
    from redis_app import _note, app  # a worker process: apps/ is on its path
except ImportError:
    from apps.redis_app import _note, app  # the tests' own process

__all__ = ["app", "mail", "report"]


@app.task(queue="emails")
async def mail(label: str, pause: float = 0.0) -> int:
    """Goes to ``emails``; notes that it ran; returns the pid of the worker that ran it."""
    if pause:
        await asyncio.sleep(pause)
    _note(label)
    return os.getpid()


@app.task(queue="reports")
async def report(label: str) -> int:
    """Goes to ``reports``; returns the worker's pid."""
    _note(label)
    return os.getpid()
