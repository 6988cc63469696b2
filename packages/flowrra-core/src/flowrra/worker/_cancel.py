"""One guard shared by the worker's loops: a cancellation is never lost to a client."""

from __future__ import annotations

import asyncio

__all__ = ["reraise_if_cancelled"]


def reraise_if_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop. A client library may turn a
    cancellation into another exception, or swallow it and return (redis-py's pipelines
    do both); a loop that carries on would then never stop, and ``Worker.stop`` would wait
    on it for ever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
