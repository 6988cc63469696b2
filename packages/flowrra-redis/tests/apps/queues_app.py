"""``redis_app``'s app with tasks on named queues: ``flowrra worker queues_app:app -Q ...``.

A separate module, so the other tests' workers (``redis_app:app``) keep taking from the
default queue only."""

from __future__ import annotations

import asyncio
import os

try:  # the tests' own process (where apps/ is also on sys.path: one module, not two)
    from apps.redis_app import _note, app
except ImportError:  # a worker process: apps/ is on its path
    from redis_app import _note, app

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
