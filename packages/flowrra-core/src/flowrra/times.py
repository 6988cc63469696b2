"""How Flowrra reads the datetimes users give it.

Every public entry that takes a point in time (``submit(eta=...)``, ``TaskResult``'s
timestamps, the scheduler's ``run_at``) passes it through :func:`as_aware`, so they all
agree: an aware datetime is the instant it names; a naive one is local time, as Flowrra
0.1.8 read it (``datetime.now() + timedelta(hours=1)`` is an hour from now).
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["as_aware"]


def as_aware(instant: datetime) -> datetime:
    """``instant`` if it is timezone-aware; if naive, the same wall-clock time in this
    process's local zone (``TZ``, else the system's), made aware with that zone's offset
    at that time. In a repeated hour (autumn), ``fold`` picks the occurrence, as Python's
    ``datetime.astimezone`` decides."""
    if instant.tzinfo is not None and instant.utcoffset() is not None:
        return instant
    return instant.astimezone()
