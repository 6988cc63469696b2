"""Run times and misfire plans, computed without a database or a clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flowrra_scheduler import timing

from flowrra import MisfirePolicy, ScheduledTask, ScheduleError, ScheduleType

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def make(
    kind: ScheduleType,
    spec: str,
    due: datetime,
    policy: MisfirePolicy = MisfirePolicy.RUN_ONCE,
    grace: float = 60.0,
    tz: str = "UTC",
) -> ScheduledTask:
    return ScheduledTask(
        id="s",
        task_name="job",
        schedule_type=kind,
        schedule=spec,
        timezone=tz,
        misfire_policy=policy,
        misfire_grace=grace,
        next_run_at=due,
    )


def test_cron_in_new_york_keeps_local_time_across_the_autumn_dst_change() -> None:
    s = make(ScheduleType.CRON, "0 9 * * *", T0, tz="America/New_York")
    before = datetime(2026, 10, 31, 12, 0, tzinfo=UTC)
    runs = []
    at: datetime | None = before
    for _ in range(3):
        assert at is not None
        at = timing.next_after(s, at)
        runs.append(at)
    # 09:00 EDT (UTC-4) on Oct 31, then 09:00 EST (UTC-5) once clocks went back on Nov 1.
    assert runs == [
        datetime(2026, 10, 31, 13, 0, tzinfo=UTC),
        datetime(2026, 11, 1, 14, 0, tzinfo=UTC),
        datetime(2026, 11, 2, 14, 0, tzinfo=UTC),
    ]
    assert all(r.tzinfo is UTC for r in runs)
    assert {r.astimezone(ZoneInfo("America/New_York")).hour for r in runs} == {9}


def test_cron_time_skipped_in_spring_runs_after_the_gap_as_croniter_does() -> None:
    s = make(ScheduleType.CRON, "30 2 * * *", T0, tz="Europe/Paris")
    # 02:30 does not exist in Paris on 2026-03-29 (02:00 -> 03:00).
    first = timing.next_after(s, datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    second = timing.next_after(s, first) if first else None
    assert first == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
    assert second == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)  # 02:30 CEST


def test_interval_keeps_its_grid_and_first_run_is_one_interval_away() -> None:
    s = make(ScheduleType.INTERVAL, "90.0", T0)
    assert timing.first_run(s, T0) == T0 + timedelta(seconds=90)
    fire, following = timing.plan(s, T0 + timedelta(seconds=0.004))
    assert fire == [T0] and following == T0 + timedelta(seconds=90)


def test_on_time_run_fires_once_under_every_policy() -> None:
    for policy in MisfirePolicy:
        s = make(ScheduleType.CRON, "*/5 * * * *", T0, policy)
        fire, following = timing.plan(s, T0 + timedelta(seconds=2))
        assert fire == [T0], policy
        assert following == T0 + timedelta(minutes=5)


def test_run_once_catches_up_with_one_run_after_downtime() -> None:
    s = make(ScheduleType.CRON, "*/5 * * * *", T0, MisfirePolicy.RUN_ONCE)
    now = T0 + timedelta(hours=2, minutes=7)
    fire, following = timing.plan(s, now)
    assert fire == [T0 + timedelta(hours=2, minutes=5)]  # once, as the latest missed
    assert following == T0 + timedelta(hours=2, minutes=10)


def test_skip_drops_runs_later_than_the_grace() -> None:
    s = make(ScheduleType.INTERVAL, "60.0", T0, MisfirePolicy.SKIP, grace=10)
    fire, following = timing.plan(s, T0 + timedelta(minutes=30, seconds=30))
    assert fire == [] and following == T0 + timedelta(minutes=31)
    fire, _ = timing.plan(s, T0 + timedelta(minutes=30, seconds=5))
    assert fire == [T0 + timedelta(minutes=30)]  # the latest is within the grace: it runs


def test_run_all_fires_each_missed_run_within_the_grace_window() -> None:
    every_minute = make(ScheduleType.CRON, "* * * * *", T0, MisfirePolicy.RUN_ALL, grace=180)
    now = T0 + timedelta(minutes=10, seconds=30)
    fire, following = timing.plan(every_minute, now)
    assert fire == [T0 + timedelta(minutes=m) for m in (8, 9, 10)]
    assert following == T0 + timedelta(minutes=11)
    interval = make(ScheduleType.INTERVAL, "60.0", T0, MisfirePolicy.RUN_ALL, grace=180)
    assert timing.plan(interval, now) == (fire, following)


def test_run_all_is_capped() -> None:
    s = make(ScheduleType.INTERVAL, "1.0", T0, MisfirePolicy.RUN_ALL, grace=10**6)
    fire, _ = timing.plan(s, T0 + timedelta(days=3))
    assert len(fire) == timing.MAX_CATCH_UP


def test_one_time_late_runs_under_run_once_and_is_dropped_by_skip() -> None:
    once = make(ScheduleType.ONE_TIME, T0.isoformat(), T0, MisfirePolicy.RUN_ONCE, grace=5)
    late = T0 + timedelta(hours=1)
    assert timing.plan(once, late) == ([T0], None)
    skipped = make(ScheduleType.ONE_TIME, T0.isoformat(), T0, MisfirePolicy.SKIP, grace=5)
    assert timing.plan(skipped, late) == ([], None)


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (timing.check_cron, "61 * * * *", "invalid cron expression"),
        (timing.check_cron, "every day", "invalid cron expression"),
        (timing.check_interval, 0, "positive"),
        (timing.check_interval, -3, "positive"),
        (timing.check_interval, float("nan"), "positive"),
        (timing.check_interval, "60", "number of seconds"),
        (timing.check_timezone, "Mars/Olympus_Mons", "unknown time zone"),
    ],
)
def test_bad_definitions_are_clear_errors(check, value, message) -> None:
    with pytest.raises(ScheduleError, match=message):
        check(value)


def test_run_at_must_not_be_past_and_naive_is_local_time(new_york_local_time: ZoneInfo) -> None:
    assert timing.check_run_at(datetime(2030, 1, 1), T0) == datetime(2030, 1, 1, 5, tzinfo=UTC)
    with pytest.raises(ScheduleError, match="in the past"):
        timing.check_run_at(T0 - timedelta(seconds=1), T0)
    paris = datetime(2030, 1, 1, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert timing.check_run_at(paris, T0) == datetime(2030, 1, 1, 8, 0, tzinfo=UTC)
