"""What a schedule store keeps: :class:`ScheduledTask`, its :class:`ScheduleType` and its
:class:`MisfirePolicy`.

The records are plain data so that a store plugin (see
:class:`flowrra.protocols.ScheduleStore`) and its contract suite need nothing but
flowrra-core. The scheduler that computes run times and fires tasks is the
``flowrra-scheduler`` distribution.

Instants are timezone-aware UTC datetimes, and stores keep them as integer microseconds
since the epoch, so equality survives every database. ``revision`` grows by one on every
write: stores compare it to settle races between scheduler processes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "MisfirePolicy",
    "ScheduleType",
    "ScheduledTask",
    "definition_key",
    "from_micros",
    "to_micros",
]

DEFAULT_SCHEDULE_URL = "sqlite:///.flowrra_schedule.db"
"""Where schedules live when no URL is given: ``.flowrra_schedule.db`` in the current
directory, as in flowrra 0.1.8."""


class ScheduleType(StrEnum):
    """How a schedule's run times are defined."""

    CRON = "cron"
    """``schedule`` is a cron expression, evaluated in the schedule's ``timezone``."""
    INTERVAL = "interval"
    """``schedule`` is a number of seconds between runs."""
    ONE_TIME = "one_time"
    """``schedule`` is the ISO 8601 UTC instant of the single run."""


class MisfirePolicy(StrEnum):
    """What happens to occurrences that came due while no scheduler was running.

    An occurrence fired within ``misfire_grace`` seconds of its due time is on time; later
    than that it is a misfire.
    """

    RUN_ONCE = "run_once"
    """Fire once for everything missed, then carry on from now (the default)."""
    SKIP = "skip"
    """Drop missed occurrences; fire only one that is still within the grace window."""
    RUN_ALL = "run_all"
    """Fire every missed occurrence whose due time is within the grace window."""


def to_micros(instant: datetime) -> int:
    """Integer microseconds since the epoch of an aware datetime."""
    if instant.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {instant!r}")
    delta = instant - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int | None) -> datetime | None:
    """The aware UTC datetime of :func:`to_micros`'s value (``None`` stays ``None``)."""
    if micros is None:
        return None
    seconds, rest = divmod(int(micros), 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest)


def definition_key(
    task_name: str,
    schedule_type: ScheduleType,
    schedule: str,
    timezone: str,
    args: tuple[Any, ...] | list[Any],
    kwargs: dict[str, Any],
) -> str:
    """The identity of a schedule's definition: scheduling the same task on the same
    schedule with the same arguments twice gives one schedule. A SHA-256 hex digest of a
    canonical JSON form, so stores can put a unique index on it."""
    canonical = json.dumps(
        [task_name, schedule_type.value, schedule, timezone, list(args), kwargs],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ScheduledTask:
    """One schedule: which task to submit, with what, and when.

    ``next_run_at`` is the next due instant (``None`` once a one-time schedule has fired);
    ``last_run_at`` the due instant of the latest occurrence fired; ``run_count`` how many
    occurrences were fired. ``revision`` is the store's optimistic-concurrency counter.
    """

    id: str
    task_name: str
    schedule_type: ScheduleType
    schedule: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    timezone: str = "UTC"
    priority: int = 0
    description: str | None = None
    misfire_policy: MisfirePolicy = MisfirePolicy.RUN_ONCE
    misfire_grace: float = 60.0
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    run_count: int = 0
    created_at: datetime = field(default_factory=_utcnow)
    updated_at: datetime = field(default_factory=_utcnow)
    revision: int = 0

    @property
    def definition_key(self) -> str:
        """See :func:`definition_key`."""
        return definition_key(
            self.task_name, self.schedule_type, self.schedule, self.timezone, self.args, self.kwargs
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (instants as ISO 8601 strings)."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "id": self.id,
            "task_name": self.task_name,
            "schedule_type": self.schedule_type.value,
            "schedule": self.schedule,
            "args": list(self.args),
            "kwargs": self.kwargs,
            "enabled": self.enabled,
            "timezone": self.timezone,
            "priority": self.priority,
            "description": self.description,
            "misfire_policy": self.misfire_policy.value,
            "misfire_grace": self.misfire_grace,
            "next_run_at": iso(self.next_run_at),
            "last_run_at": iso(self.last_run_at),
            "run_count": self.run_count,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "revision": self.revision,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScheduledTask:
        """The inverse of :meth:`to_dict`."""

        def instant(value: Any) -> datetime | None:
            if value is None:
                return None
            parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
            if not isinstance(parsed, datetime):
                raise TypeError(f"expected an ISO 8601 instant, got {value!r}")
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

        return cls(
            id=data["id"],
            task_name=data["task_name"],
            schedule_type=ScheduleType(data["schedule_type"]),
            schedule=str(data["schedule"]),
            args=tuple(data.get("args") or ()),
            kwargs=dict(data.get("kwargs") or {}),
            enabled=bool(data.get("enabled", True)),
            timezone=data.get("timezone") or "UTC",
            priority=int(data.get("priority", 0)),
            description=data.get("description"),
            misfire_policy=MisfirePolicy(data.get("misfire_policy", "run_once")),
            misfire_grace=float(data.get("misfire_grace", 60.0)),
            next_run_at=instant(data.get("next_run_at")),
            last_run_at=instant(data.get("last_run_at")),
            run_count=int(data.get("run_count", 0)),
            created_at=instant(data.get("created_at")) or _utcnow(),
            updated_at=instant(data.get("updated_at")) or _utcnow(),
            revision=int(data.get("revision", 0)),
        )


def __getattr__(name: str) -> Any:
    # get_scheduler_backend is a plugin lookup: it lives in flowrra.plugins, so that this
    # data module imports nothing of Flowrra's. The old import path keeps working.
    if name == "get_scheduler_backend":
        from flowrra.plugins import get_scheduler_backend

        return get_scheduler_backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
