"""Cancelling a task by id: ``app.cancel(task_id)`` and what it answers.

What happens depends on where the task is (see the docs, "Cancellation"):

- **waiting** (PENDING: queued or delayed; RETRYING: waiting for its next attempt): the
  broker drops its message, or hands it to a worker marked cancelled, which settles it
  without running it. It never runs. :attr:`CancelOutcome.REMOVED`.
- **running** (RUNNING): every worker is told; the one running it cancels the attempt. An
  ``async def`` task gets ``asyncio.CancelledError`` at its next ``await``; a plain ``def``
  task (a thread) and a ``cpu_bound`` task (a process) cannot be interrupted: they run to
  their end and what they return is discarded. :attr:`CancelOutcome.SIGNALLED`.
- **complete** (SUCCESS, FAILED or CANCELLED): nothing is done. ``ALREADY_COMPLETE``.
- **unknown** (the backend holds no record of the id): nothing is done. ``UNKNOWN``.

The record becomes CANCELLED as the call returns (``wait_for_result`` returns it), unless
the task completed first: then the call says ``ALREADY_COMPLETE`` and the record keeps
its outcome (a complete record is never replaced). A cancelled task is not retried, and a
cancelled chain step stops its chain: the later steps are recorded CANCELLED too.
"""

from __future__ import annotations

import time
from enum import Enum

from flowrra.protocols import Broker, Cancellation, ResultBackend
from flowrra.task import TaskResult, TaskStatus

__all__ = ["CANCEL_REASON", "CancelOutcome", "cancel_task"]

#: The reason recorded (``TaskCancelled: <reason>``) unless the caller gives one.
CANCEL_REASON = "cancelled by app.cancel()"


class CancelOutcome(Enum):
    """What ``app.cancel(task_id)`` did. ``done`` is True when the task is CANCELLED now
    (``REMOVED``, ``SIGNALLED``)."""

    #: It was waiting (queued, delayed, or waiting for a retry): it will never run.
    REMOVED = "removed"
    #: It was running: its worker was told. An async task is interrupted at its next
    #: await; a thread or CPU task runs on and its result is discarded.
    SIGNALLED = "signalled"
    #: It had already completed (SUCCESS, FAILED or CANCELLED): nothing was done.
    ALREADY_COMPLETE = "already_complete"
    #: The result backend has no record of this id: nothing was done.
    UNKNOWN = "unknown"

    @property
    def done(self) -> bool:
        """True if the task is CANCELLED because of this call (or a concurrent one)."""
        return self is CancelOutcome.REMOVED or self is CancelOutcome.SIGNALLED


def check_cancellable(broker: Broker) -> Cancellation:
    """``broker`` as a :class:`~flowrra.protocols.Cancellation`; ``TypeError`` if it is not."""
    if not isinstance(broker, Cancellation):
        raise TypeError(
            f"{type(broker).__name__} cannot cancel tasks (it is not a "
            "flowrra.protocols.Cancellation): use the in-memory or the Redis broker, or "
            "implement cancel() and watch_cancels()"
        )
    return broker


async def cancel_task(
    broker: Broker, backend: ResultBackend, task_id: str, reason: str = CANCEL_REASON
) -> tuple[CancelOutcome, TaskResult | None]:
    """Cancel ``task_id`` (see the module docstring); returns the outcome and the task's
    record as it is after the call (``None`` for an unknown id)."""
    if task_id.__class__ is not str or not task_id:
        raise TypeError(f"a task id is a non-empty str, not {task_id!r}")
    if reason.__class__ is not str:
        raise TypeError(f"reason must be a str, not {reason!r}")
    cancellable = check_cancellable(broker)
    record = await backend.get(task_id)
    if record is None:
        return CancelOutcome.UNKNOWN, None
    if record.is_complete:
        return CancelOutcome.ALREADY_COMPLETE, record
    # The broker first: from here on no worker starts it, and one running it is told.
    await cancellable.cancel(task_id)
    await backend.store(task_id, TaskResult.cancelled(record, reason, finished=time.time()))
    after = await backend.get(task_id)
    if after is None or after.status is not TaskStatus.CANCELLED:
        return CancelOutcome.ALREADY_COMPLETE, after  # it completed in between
    if record.status is TaskStatus.RUNNING:
        return CancelOutcome.SIGNALLED, after
    return CancelOutcome.REMOVED, after
