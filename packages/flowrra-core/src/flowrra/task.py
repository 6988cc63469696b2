"""What travels and what is recorded: the task message, its status, and its result.

A :class:`TaskMessage` is what a broker carries from ``submit`` to a worker. A
:class:`TaskResult` is what the result backend holds about one task id: its current status
and, once complete, its return value or error. Both convert to and from plain JSON-ready
dicts, which is how they cross process boundaries; nothing is ever unpickled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

__all__ = ["Task", "TaskMessage", "TaskResult", "TaskStatus", "new_task_id"]


class TaskStatus(Enum):
    """Where a task is in its lifecycle.

    ``PENDING`` (queued) → ``RUNNING`` → ``SUCCESS`` | ``FAILED``, with ``RETRYING`` between
    a failed attempt and the next one.
    """

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    RETRYING = "retrying"


_COMPLETE = frozenset({TaskStatus.SUCCESS, TaskStatus.FAILED})


def new_task_id() -> str:
    """A random 128-bit id as 32 hex characters (the shape of ``uuid4().hex``, 5x faster)."""
    return os.urandom(16).hex()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(slots=True)
class TaskResult:
    """The backend's record of one task: status, and the outcome once complete.

    ``retries`` counts the retries made so far (0 for a task that succeeded first time).
    ``error`` is ``"ExceptionType: message"``; ``traceback`` holds the formatted traceback
    of the last failed attempt. Timestamps are timezone-aware UTC datetimes.
    """

    task_id: str
    status: TaskStatus
    task_name: str | None = None
    result: Any = None
    error: str | None = None
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    retries: int = 0
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    traceback: str | None = None
    priority: int = 0

    @property
    def is_complete(self) -> bool:
        """True once the task succeeded or failed for good (no retry left)."""
        return self.status in _COMPLETE

    @property
    def is_success(self) -> bool:
        """True if the task completed successfully."""
        return self.status is TaskStatus.SUCCESS

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (status as its string value, datetimes as ISO 8601)."""
        return {
            "task_id": self.task_id,
            "status": self.status.value,
            "task_name": self.task_name,
            "result": self.result,
            "error": self.error,
            "traceback": self.traceback,
            "submitted_at": _iso(self.submitted_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "retries": self.retries,
            "args": list(self.args),
            "kwargs": self.kwargs,
            "priority": self.priority,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskResult:
        """Rebuild a result from :meth:`to_dict` output (missing optional keys default)."""
        return cls(
            task_id=data["task_id"],
            status=TaskStatus(data["status"]),
            task_name=data.get("task_name"),
            result=data.get("result"),
            error=data.get("error"),
            traceback=data.get("traceback"),
            submitted_at=_from_iso(data.get("submitted_at")),
            started_at=_from_iso(data.get("started_at")),
            finished_at=_from_iso(data.get("finished_at")),
            retries=int(data.get("retries", 0)),
            args=tuple(data.get("args") or ()),
            kwargs=dict(data.get("kwargs") or {}),
            priority=int(data.get("priority", 0)),
        )


class TaskMessage:
    """One delivery's worth of work: which task, with what, how urgent, and when.

    ``priority``: lower runs first. ``attempt``: 0 for the first run, *n* for the *n*-th
    retry. ``eta``: Unix time before which the message must not run (``None``: now).
    ``submitted_at``: Unix time of the original submit. Brokers may attach their own
    delivery data (a lease token, the raw bytes) in ``receipt``; it never travels.
    """

    __slots__ = (
        "args",
        "attempt",
        "eta",
        "id",
        "kwargs",
        "name",
        "priority",
        "receipt",
        "submitted_at",
    )

    def __init__(
        self,
        id: str,
        name: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        priority: int = 0,
        attempt: int = 0,
        eta: float | None = None,
        submitted_at: float = 0.0,
    ) -> None:
        self.id = id
        self.name = name
        self.args = args
        self.kwargs = kwargs if kwargs is not None else {}
        self.priority = priority
        self.attempt = attempt
        self.eta = eta
        self.submitted_at = submitted_at
        self.receipt: Any = None

    def next_attempt(self, eta: float) -> TaskMessage:
        """The message for the next retry, due at ``eta``."""
        return TaskMessage(
            self.id,
            self.name,
            self.args,
            self.kwargs,
            self.priority,
            self.attempt + 1,
            eta,
            self.submitted_at,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; what durable brokers store."""
        return {
            "id": self.id,
            "name": self.name,
            "args": list(self.args),
            "kwargs": self.kwargs,
            "priority": self.priority,
            "attempt": self.attempt,
            "eta": self.eta,
            "submitted_at": self.submitted_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskMessage:
        """Rebuild a message from :meth:`to_dict` output; raises ``KeyError``/``TypeError``
        / ``ValueError`` on malformed input (brokers dead-letter such messages)."""
        args = data.get("args") or []
        kwargs = data.get("kwargs") or {}
        if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
            raise TypeError("args must be a list and kwargs an object")
        eta = data.get("eta")
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            args=tuple(args),
            kwargs=kwargs,
            priority=int(data.get("priority", 0)),
            attempt=int(data.get("attempt", 0)),
            eta=float(eta) if eta is not None else None,
            submitted_at=float(data.get("submitted_at", 0.0)),
        )

    def __repr__(self) -> str:
        return (
            f"TaskMessage(id={self.id!r}, name={self.name!r}, priority={self.priority}, "
            f"attempt={self.attempt}, eta={self.eta})"
        )


# flowrra 0.1.8 exported the queued unit of work as ``Task``.
Task = TaskMessage


def utc_from_timestamp(ts: float) -> datetime:
    """A timezone-aware UTC datetime for a Unix timestamp."""
    return datetime.fromtimestamp(ts, UTC)
