"""Working the dead letters of an app's broker: list them, queue them again, delete them.

What ``flowrra dead-letters list|requeue|purge`` runs, for brokers that declare
:class:`~flowrra.protocols.DeadLetters` (the Redis broker). Requeueing also resets each
task's record: a dead-lettered task was recorded FAILED, and a complete record is never
overwritten, so its FAILED record is replaced by a PENDING one *before* its message is
queued again (the run that follows then records as any other).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flowrra.exceptions import FlowrraError
from flowrra.protocols import DeadLetters
from flowrra.task import TaskResult, TaskStatus

if TYPE_CHECKING:
    from flowrra.app import Flowrra

__all__ = ["dead_letters_of", "listed", "purge", "requeue"]


def dead_letters_of(app: Flowrra) -> DeadLetters:
    """``app``'s broker as a :class:`~flowrra.protocols.DeadLetters`; raises
    :class:`~flowrra.exceptions.FlowrraError` naming the broker if it is not one."""
    broker = app.broker
    if not isinstance(broker, DeadLetters):
        raise FlowrraError(
            f"the broker {type(broker).__name__} keeps no dead letters that can be worked "
            "from here (it is not a flowrra.protocols.DeadLetters): use a Redis broker"
        )
    return broker


async def listed(app: Flowrra, limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` dead letters of ``app``'s broker (see
    :class:`~flowrra.protocols.DeadLetters` for an entry's fields)."""
    return await dead_letters_of(app).dead_letters(limit)


async def requeue(app: Flowrra, ids: Sequence[str] | None = None) -> list[str]:
    """Queue again the requeueable dead letters of the tasks ``ids`` (None: all of them);
    returns the ids queued. Each task's record is reset to PENDING first, so
    ``wait_for_result`` waits for the new run."""
    broker = dead_letters_of(app)
    wanted = None if ids is None else set(ids)
    entries = await broker.dead_letters(limit=1_000_000)
    chosen = [
        e
        for e in entries
        if e.get("requeueable") and e.get("id") and (wanted is None or e["id"] in wanted)
    ]
    if not chosen:
        return []
    backend = app.backend
    delete = getattr(backend, "delete", None)
    now = time.time()
    for entry in chosen:
        task_id = str(entry["id"])
        if delete is not None:
            await delete(task_id)
        pending = TaskResult(
            task_id, TaskStatus.PENDING, task_name=entry.get("name"), submitted_at=now
        )
        await backend.store(task_id, pending)
    queued = await broker.requeue_dead_letters([str(e["id"]) for e in chosen])
    return [m.id for m in queued]


async def purge(app: Flowrra, ids: Sequence[str] | None = None) -> int:
    """Delete the dead letters of the tasks ``ids`` (None: all); returns how many."""
    return await dead_letters_of(app).purge_dead_letters(ids)
