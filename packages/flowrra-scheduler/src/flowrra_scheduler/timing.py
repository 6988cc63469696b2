"""When a schedule runs: validating definitions and computing occurrences.

Cron expressions are evaluated by croniter in the schedule's zone (zoneinfo), so daylight
saving time is handled as croniter handles it: a wall-clock time skipped in spring runs at
the first valid minute after the gap, and one repeated in autumn runs in both offsets.
Every instant that leaves this module is an aware UTC datetime.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from flowrra.exceptions import ScheduleError
from flowrra.schedules import MisfirePolicy, ScheduledTask, ScheduleType
from flowrra.times import as_aware

__all__ = [
    "MAX_CATCH_UP",
    "check_cron",
    "check_interval",
    "check_run_at",
    "check_timezone",
    "first_run",
    "next_after",
    "plan",
    "utc_instant",
]

MAX_CATCH_UP = 1000
"""The most occurrences ``run_all`` fires at once for one schedule after downtime."""

MAX_SECONDS = 10**9
"""The longest interval or grace accepted (about 31 years)."""


def check_timezone(name: str) -> ZoneInfo:
    """The zone called ``name`` (``"Europe/Paris"``); a clear error if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC' or 'Europe/Paris'"
        ) from exc


def check_cron(expression: str) -> str:
    """``expression`` stripped, if it has five fields (or six, seconds last, as croniter
    reads them), croniter accepts it, and it has a next run at all."""
    problem = (
        f"invalid cron expression {expression!r}: expected five fields "
        "'minute hour day-of-month month day-of-week' (e.g. '0 9 * * *'), or six with "
        "seconds last"
    )
    if not isinstance(expression, str):
        raise ScheduleError(problem)
    text = " ".join(expression.split())
    if not (text.startswith("@") or len(text.split(" ")) in (5, 6)) or not croniter.is_valid(text):
        raise ScheduleError(problem)
    try:
        croniter(text, datetime.now(UTC)).get_next(datetime)
    except (CroniterError, ValueError, OverflowError) as exc:
        raise ScheduleError(f"cron expression {expression!r} never runs: {exc}") from None
    return text


def check_interval(interval: float) -> float:
    """A positive, finite number of seconds."""
    if isinstance(interval, bool) or not isinstance(interval, int | float):
        raise ScheduleError(f"interval must be a number of seconds, got {interval!r}")
    if not math.isfinite(interval) or interval <= 0:
        raise ScheduleError(f"interval must be a positive number of seconds, got {interval!r}")
    if interval > MAX_SECONDS:
        raise ScheduleError(f"interval must be at most {MAX_SECONDS} seconds, got {interval!r}")
    if interval < 1e-3:
        raise ScheduleError(f"interval must be at least 0.001 seconds, got {interval!r}")
    return float(interval)


def utc_instant(run_at: datetime) -> datetime:
    """``run_at`` in UTC; a naive datetime is local time, as in 0.1.8
    (:func:`flowrra.times.as_aware`)."""
    if not isinstance(run_at, datetime):
        raise ScheduleError(f"run_at must be a datetime, got {run_at!r}")
    return as_aware(run_at).astimezone(UTC)


def check_run_at(run_at: datetime, now: datetime) -> datetime:
    """``run_at`` in UTC (:func:`utc_instant`), if not already past: a one-time schedule
    that could never run on time is a mistake worth hearing about."""
    instant = utc_instant(run_at)
    if instant < now:
        raise ScheduleError(f"run_at {instant.isoformat()} is in the past (now {now.isoformat()})")
    return instant


def _interval_of(schedule: ScheduledTask) -> timedelta:
    return timedelta(seconds=float(schedule.schedule))


def first_run(schedule: ScheduledTask, now: datetime) -> datetime:
    """The first due instant of a new (or re-enabled) schedule, seen at ``now``."""
    if schedule.schedule_type is ScheduleType.ONE_TIME:
        return datetime.fromisoformat(schedule.schedule).astimezone(UTC)
    if schedule.schedule_type is ScheduleType.INTERVAL:
        return now + _interval_of(schedule)
    following = next_after(schedule, now)
    if following is None:
        raise ScheduleError(f"cron expression {schedule.schedule!r} has no run after {now}")
    return following


def next_after(schedule: ScheduledTask, instant: datetime) -> datetime | None:
    """The first occurrence strictly after ``instant`` (``None`` for a one-time schedule)."""
    if schedule.schedule_type is ScheduleType.ONE_TIME:
        return None
    if schedule.schedule_type is ScheduleType.INTERVAL:
        return instant + _interval_of(schedule)
    zone = check_timezone(schedule.timezone)
    try:
        following: datetime = croniter(schedule.schedule, instant.astimezone(zone)).get_next(
            datetime
        )
    except CroniterBadDateError:
        return None  # no run left (a year field that has passed): the schedule is finished
    return following.astimezone(UTC)


def _interval_plan(
    schedule: ScheduledTask, due: datetime, now: datetime
) -> tuple[list[datetime], datetime]:
    step = _interval_of(schedule)
    behind = (now - due) // step  # whole steps between the due time and now
    latest = due + behind * step  # the last occurrence at or before now
    following = latest + step
    if schedule.misfire_policy is MisfirePolicy.RUN_ALL:
        grace = timedelta(seconds=schedule.misfire_grace)
        within = min(behind, grace // step, MAX_CATCH_UP - 1)
        candidates = (latest - k * step for k in range(within, -1, -1))
        return [t for t in candidates if now - t <= grace], following
    return [latest], following


def _previous(schedule: ScheduledTask, occurrence: datetime) -> datetime:
    zone = check_timezone(schedule.timezone)
    before: datetime = croniter(schedule.schedule, occurrence.astimezone(zone)).get_prev(datetime)
    return before.astimezone(UTC)


def _cron_plan(
    schedule: ScheduledTask, due: datetime, now: datetime
) -> tuple[list[datetime], datetime | None]:
    following = next_after(schedule, now)
    if schedule.misfire_policy is not MisfirePolicy.RUN_ALL:
        latest = due if following is None else max(due, _previous(schedule, following))
        return [latest], following
    window_start = now - timedelta(seconds=schedule.misfire_grace)
    occurrence: datetime | None = due if due >= window_start else next_after(schedule, window_start)
    missed: deque[datetime] = deque(maxlen=MAX_CATCH_UP)  # the latest ones, if too many
    while occurrence is not None and occurrence <= now:
        missed.append(occurrence)
        occurrence = next_after(schedule, occurrence)
    return list(missed), following


def plan(schedule: ScheduledTask, now: datetime) -> tuple[list[datetime], datetime | None]:
    """What to do with a schedule that is due at ``now``: the due instants to fire (one
    submit each) and the next due instant to store (``None``: the schedule is finished).

    The misfire policy decides for occurrences later than ``misfire_grace`` seconds:
    ``run_once`` fires once for all of them (as the latest), ``skip`` drops them,
    ``run_all`` fires each one still within the grace window.
    """
    due = schedule.next_run_at
    assert due is not None and due <= now
    grace = timedelta(seconds=schedule.misfire_grace)
    policy = schedule.misfire_policy
    if schedule.schedule_type is ScheduleType.ONE_TIME:
        on_time = now - due <= grace
        return ([due] if on_time or policy is MisfirePolicy.RUN_ONCE else []), None
    following: datetime | None
    if schedule.schedule_type is ScheduleType.INTERVAL:
        missed, following = _interval_plan(schedule, due, now)
    else:
        missed, following = _cron_plan(schedule, due, now)
    latest = missed[-1] if missed else due
    if policy is MisfirePolicy.RUN_ALL:
        return missed, following
    if now - latest <= grace or policy is MisfirePolicy.RUN_ONCE:
        return [latest], following
    return [], following
