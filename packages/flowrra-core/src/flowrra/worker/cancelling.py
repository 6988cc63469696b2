"""Cancelling: the tasks ``app.cancel`` named, as one worker meets them.

A broker that is a :class:`~flowrra.protocols.Cancellation` tells every watching worker
the id of each task cancelled (the Redis broker over pub/sub, the in-memory one by a
call), and names the cancelled tasks among the messages ``reserve`` returns before it
returns them. :meth:`Cancels.cancelled` hears both. It keeps the id (so a message of that
task reserved before the word came is settled CANCELLED without running: the runner looks
it up before each attempt, one truth test while nothing was cancelled), and cancels the
asyncio task of a slot or CPU lane running an attempt of it: an I/O task gets
``CancelledError`` at its next ``await``; a CPU or thread task runs on, its outcome
dropped. The runner tells that interruption from a shutdown by :attr:`Cancels.interrupting`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from flowrra.task import TaskMessage

__all__ = ["REMEMBERED", "Cancels"]

logger = logging.getLogger("flowrra.worker")

#: Most cancelled task ids a worker remembers (the oldest are forgotten first): enough for
#: the messages of cancelled tasks that it holds reserved or will reserve soon.
REMEMBERED = 10_000


class Cancels:
    """What a worker knows of cancelled tasks: ``requested`` (their ids, oldest first),
    ``interrupting`` (the asyncio tasks cancelled here, and the message each was running)
    and ``cells`` (each slot's and lane's :func:`~flowrra.context.new_cell`, which says
    what it runs)."""

    def __init__(self) -> None:
        self.requested: dict[str, None] = {}
        self.interrupting: dict[asyncio.Task[Any], TaskMessage] = {}
        self.cells: list[list[Any]] = []

    def cancelled(self, task_id: str) -> None:
        """``task_id`` was cancelled: remember it, and interrupt an attempt running here."""
        requested = self.requested
        requested[task_id] = None
        if len(requested) > REMEMBERED:
            del requested[next(iter(requested))]
        for cell in self.cells:
            message, owner = cell[0], cell[2]
            if (
                message is not None
                and message.id == task_id
                and not owner.done()
                and owner not in self.interrupting
            ):
                logger.info("task %s[%s] cancelled while it ran", message.name, task_id)
                self.interrupting[owner] = message
                owner.cancel(f"task {task_id} was cancelled")

    def watch(self, cell: list[Any]) -> None:
        """A slot or lane made ``cell`` (once per asyncio task): look in it from now on."""
        self.cells = [kept for kept in self.cells if not kept[2].done()]
        self.cells.append(cell)

    def forget(self, task_id: str) -> None:
        """``task_id``'s message was settled CANCELLED here: no need to keep it."""
        self.requested.pop(task_id, None)
