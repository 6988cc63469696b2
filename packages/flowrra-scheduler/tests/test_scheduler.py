"""The scheduler on each store (SQLite, PostgreSQL, MySQL: the ``db_url`` fixture): firing,
idempotency, persistence, misfires, changes, bad input, and failures of the broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flowrra_scheduler import Scheduler

from flowrra import (
    Flowrra,
    MemoryBroker,
    MisfirePolicy,
    ScheduledTask,
    ScheduleError,
    ScheduleNotFoundError,
    ScheduleStoreError,
    ScheduleType,
    TaskMessage,
)
from flowrra.clock import ManualClock


class FlakyBroker(MemoryBroker):
    """The in-memory broker, noting what is enqueued and refusing the first ``failures``."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.failures = failures
        self.sent: list[TaskMessage] = []

    async def enqueue(self, message: TaskMessage) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("broker down (test)")
        self.sent.append(message)
        await super().enqueue(message)


class Harness:
    """An app with a ``record`` task, and a way to wait until it ran ``n`` times."""

    def __init__(self, broker: MemoryBroker | None = None) -> None:
        self.app = Flowrra(broker=broker) if broker is not None else Flowrra()
        self.calls: list[tuple[Any, ...]] = []
        self._changed = asyncio.Event()

        @self.app.task()
        async def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((*args, *sorted(kwargs.items())))
            self._changed.set()

        @self.app.task()
        async def other() -> None:
            return None

        self.record = record

    async def wait_calls(self, n: int, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.calls) < n:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def harness(db_url: str, drop_tables: None) -> AsyncIterator[Harness]:
    h = Harness()
    async with h.app:
        yield h


def soon(seconds: float = 0.3) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def fetch(scheduler: Scheduler, schedule_id: str) -> ScheduledTask:
    """The stored schedule: ``schedule_*`` return its id, as 0.1.8 did."""
    schedule = await scheduler.get(schedule_id)
    assert schedule is not None
    return schedule


def instant(clock: ManualClock, seconds: float = 0.0) -> datetime:
    """``seconds`` after the clock's now, as the scheduler reads it."""
    return datetime.fromtimestamp(clock.time(), UTC) + timedelta(seconds=seconds)


async def next_pass(clock: ManualClock) -> None:
    """Wait until the scheduler's loop has finished a pass and sleeps on ``clock``."""
    async with asyncio.timeout(15):
        await clock.waiting()


async def test_interval_schedule_fires_on_its_grid(harness: Harness, db_url: str) -> None:
    clock = ManualClock()
    fired: list[datetime] = []
    async with harness.app.create_scheduler(db_url, clock=clock) as scheduler:
        scheduler.on_fire(lambda schedule, due, task_id: fired.append(due))
        made = await fetch(
            scheduler,
            await scheduler.schedule_interval(harness.record, interval=60, args=("tick",)),
        )
        first = instant(clock, 60)
        assert made.next_run_at == first  # an interval from now, on the scheduler's clock
        for n in range(1, 4):
            await next_pass(clock)
            clock.advance(59)
            await next_pass(clock)
            assert scheduler.fired == n - 1  # not due yet
            clock.advance(1)
            await harness.wait_calls(n)
    assert harness.calls == [("tick",)] * 3
    assert fired == [first, first + timedelta(seconds=60), first + timedelta(seconds=120)]
    got = await fetch(scheduler, made.id)
    assert (got.run_count, got.enabled, got.last_run_at) == (3, True, fired[-1])
    assert got.next_run_at == first + timedelta(seconds=180)
    await scheduler.store.close()


async def test_one_time_schedule_fires_once_then_is_kept_disabled(
    harness: Harness, db_url: str
) -> None:
    clock = ManualClock()
    run_at = instant(clock, 30)
    scheduler = harness.app.create_scheduler(db_url, sync_interval=10, clock=clock)
    made = await fetch(
        scheduler, await scheduler.schedule_once("record", run_at=run_at, kwargs={"once": True})
    )
    assert made.next_run_at == run_at and made.schedule_type is ScheduleType.ONE_TIME
    async with scheduler:
        await next_pass(clock)
        clock.advance(30)
        await harness.wait_calls(1)
        for _ in range(5):  # five more passes, ten seconds apart: nothing more fires
            await next_pass(clock)
            clock.advance(10)
        await next_pass(clock)
        assert harness.calls == [(("once", True),)] and scheduler.fired == 1
        done = await scheduler.get(made.id)
    assert done is not None
    assert (done.enabled, done.next_run_at, done.last_run_at, done.run_count) == (
        False,
        None,
        run_at,
        1,
    )


async def test_scheduling_the_same_thing_twice_gives_one_schedule(
    harness: Harness, db_url: str
) -> None:
    scheduler = harness.app.create_scheduler(db_url)
    at = soon(3600)
    try:
        a = await scheduler.schedule_cron("record", cron="0 9 * * *", args=(1,), kwargs={"k": 2})
        b = await scheduler.schedule_cron(harness.record, "0 9 * * *", [1], {"k": 2})
        c = await scheduler.schedule_interval("record", 300)
        d = await scheduler.schedule_interval("record", 300.0)
        e = await scheduler.schedule_once("record", run_at=at)
        f = await scheduler.schedule_once("record", run_at=at.astimezone(timezone_plus_two()))
        different = [
            await scheduler.schedule_cron("record", cron="0 9 * * *", args=(2,), kwargs={"k": 2}),
            await scheduler.schedule_cron("record", cron="0 9 * * *", timezone="Asia/Tokyo"),
            await scheduler.schedule_interval("other", 300),
        ]
        assert (a, c, e) == (b, d, f)
        assert len({a, c, e, *different}) == 6
        assert len(await scheduler.list()) == 6
    finally:
        await scheduler.stop()


def timezone_plus_two() -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=2))


async def test_schedules_survive_a_new_scheduler_and_app(db_url: str, drop_tables: None) -> None:
    first = Harness()
    scheduler = first.app.create_scheduler(db_url)
    made = await fetch(
        scheduler,
        await scheduler.schedule_cron(
            "record", cron="30 8 * * 1-5", timezone="Europe/Paris", description="weekdays"
        ),
    )
    interval = await scheduler.schedule_interval("record", 0.2, args=("again",))
    await scheduler.stop()

    second = Harness()  # another process, in effect: a new app and a new store connection
    async with second.app, second.app.create_scheduler(db_url) as again:
        kept = await again.get(made.id)
        assert kept is not None and kept.to_dict() == made.to_dict()
        await second.wait_calls(1)  # the interval schedule fires in the new instance
    assert second.calls[0] == ("again",)
    assert first.calls == []
    assert interval in {s.id for s in await again.list()}
    await again.store.close()


async def _backdate(scheduler: Scheduler, schedule: str, by: timedelta) -> None:
    """Pretend no scheduler ran for ``by``: move the next run into the past."""
    current = await scheduler.get(schedule)
    assert current is not None and current.next_run_at is not None
    current.next_run_at -= by
    assert await scheduler.store.replace(current, current.revision)


@pytest.mark.parametrize(
    ("policy", "grace", "fired"),
    [
        (MisfirePolicy.RUN_ONCE, 20, 1),
        (MisfirePolicy.SKIP, 20, 0),
        (MisfirePolicy.SKIP, 200, 1),
        (MisfirePolicy.RUN_ALL, 200, 3),
    ],
)
async def test_runs_missed_while_down_follow_the_misfire_policy(
    db_url: str, drop_tables: None, policy: MisfirePolicy, grace: float, fired: int
) -> None:
    harness = Harness()
    scheduler = harness.app.create_scheduler(db_url)
    made = await scheduler.schedule_interval(
        "record", 60, args=(policy.value,), misfire_policy=policy, misfire_grace=grace
    )
    # Down for 6.5 minutes: runs missed 330, 270, 210, 150, 90 and 30 seconds ago.
    await _backdate(scheduler, made, timedelta(seconds=390))
    await scheduler.stop()

    restarted = harness.app.create_scheduler(db_url)
    async with harness.app:
        assert await restarted.fire_due() == fired
        assert await restarted.fire_due() == 0  # caught up: nothing is due any more
        await harness.wait_calls(fired)
    after = await restarted.get(made)
    await restarted.stop()
    assert after is not None and after.next_run_at is not None
    assert after.next_run_at > datetime.now(UTC)
    assert after.run_count == fired
    assert len(harness.calls) == fired


async def test_bad_input_is_a_clear_error_and_writes_nothing(harness: Harness, db_url: str) -> None:
    scheduler = harness.app.create_scheduler(db_url)
    cases: list[tuple[Any, str]] = [
        (scheduler.schedule_cron("record", cron="0 25 * * *"), "invalid cron expression"),
        (scheduler.schedule_cron("nope", cron="0 9 * * *"), "'nope' is not registered"),
        (scheduler.schedule_cron("record", "0 9 * * *", timezone="Nowhere/Land"), "time zone"),
        (scheduler.schedule_interval("record", interval=0), "positive"),
        (scheduler.schedule_interval("record", interval=-5), "positive"),
        (scheduler.schedule_once("record", run_at=soon(-60)), "in the past"),
        (scheduler.schedule_interval("record", 5, args=(object(),)), "must be JSON"),
        (scheduler.schedule_interval("record", 5, priority="high"), "priority"),
        (scheduler.schedule_interval("record", 5, misfire_policy="later"), "misfire_policy"),
    ]
    for call, message in cases:
        with pytest.raises(ScheduleError, match=message):
            await call
    assert await scheduler.list() == []
    await scheduler.stop()


async def test_a_past_one_time_schedule_that_exists_is_returned_not_refused(
    harness: Harness, db_url: str
) -> None:
    # An app that calls schedule_once(...) at every start must not crash once it has run.
    scheduler = harness.app.create_scheduler(db_url, sync_interval=0.1)
    run_at = soon(0.2)
    made = await scheduler.schedule_once("record", run_at=run_at)
    async with scheduler:
        await harness.wait_calls(1)
        again = await scheduler.schedule_once("record", run_at=run_at)
    assert again == made
    done = await fetch(scheduler, again)
    assert done.run_count == 1 and not done.enabled
    await scheduler.store.close()


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("postgresql://flowrra:s3cret-pw@127.0.0.1:1/db", "127.0.0.1:1"),
        ("mysql://flowrra:s3cret-pw@127.0.0.1:1/db", "127.0.0.1:1"),
        ("sqlite:////nonexistent-dir/for/sure/schedules.db", "nonexistent-dir"),
    ],
)
async def test_unreachable_database_names_host_and_scheme_not_the_password(
    url: str, host: str
) -> None:
    app = Flowrra()

    @app.task()
    async def job() -> None:
        return None

    scheduler = app.create_scheduler(url)
    with pytest.raises(ScheduleStoreError) as caught:
        await scheduler.schedule_interval(job, 10)
    message = str(caught.value)
    assert host in message and url.split(":")[0] in message
    assert "s3cret-pw" not in message


async def test_update_enable_disable_delete(harness: Harness, db_url: str) -> None:
    scheduler = harness.app.create_scheduler(db_url)
    made = await fetch(
        scheduler, await scheduler.schedule_cron("record", cron="0 9 * * *", description="old")
    )
    changed = await scheduler.update(made, cron="0 10 * * *", description="new", priority=3)
    assert changed.schedule == "0 10 * * *" and changed.description == "new"
    assert changed.priority == 3 and changed.next_run_at is not None
    assert changed.next_run_at.astimezone(UTC).hour == 10 and changed.revision > made.revision

    with pytest.raises(ScheduleError, match="invalid cron"):
        await scheduler.update(made.id, cron="nonsense")
    with pytest.raises(ScheduleError, match="applies to interval"):
        await scheduler.update(made.id, interval=5)
    with pytest.raises(ScheduleError, match="cannot update"):
        await scheduler.update(made.id, task_name="other")
    unchanged = await scheduler.get(made.id)
    assert unchanged is not None and unchanged.to_dict() == changed.to_dict()

    off = await scheduler.disable(made.id)
    assert not off.enabled
    assert [s.id for s in await scheduler.list(enabled_only=True)] == []
    on = await scheduler.enable(made)
    assert on.enabled and on.next_run_at is not None and on.next_run_at > datetime.now(UTC)

    assert await scheduler.delete(made.id) is True
    assert await scheduler.get(made.id) is None
    assert await scheduler.delete(made.id) is False
    for action in (scheduler.enable, scheduler.disable):
        with pytest.raises(ScheduleNotFoundError):
            await action(made.id)
    await scheduler.stop()


async def test_a_disabled_schedule_does_not_fire(harness: Harness, db_url: str) -> None:
    scheduler = harness.app.create_scheduler(db_url)
    made = await scheduler.schedule_once("record", run_at=soon(0.05), enabled=False)
    await asyncio.sleep(0.1)
    assert await scheduler.fire_due() == 0
    await scheduler.enable(made)  # a one-time schedule that never ran keeps its run_at
    assert await scheduler.fire_due() == 1
    await harness.wait_calls(1)
    await scheduler.stop()


async def test_wakes_for_a_schedule_added_in_its_own_process(harness: Harness, db_url: str) -> None:
    clock = ManualClock()  # it never moves: only the wake-up on add can make this fire
    async with harness.app.create_scheduler(db_url, sync_interval=60, clock=clock) as scheduler:
        await next_pass(clock)  # the loop is asleep on an empty store
        assert clock.next_wake == clock.time() + 60
        await scheduler.schedule_once("record", run_at=instant(clock), args=("woken",))
        await harness.wait_calls(1, timeout=10)
    assert harness.calls == [("woken",)]


async def test_sees_schedules_added_by_another_process_within_the_sync_interval(
    harness: Harness, db_url: str
) -> None:
    elsewhere = Harness()  # another process's app and scheduler, never started
    other = elsewhere.app.create_scheduler(db_url)
    async with harness.app.create_scheduler(db_url, sync_interval=0.3):
        await asyncio.sleep(0.2)
        await other.schedule_once("record", run_at=soon(0.1), args=("from elsewhere",))
        await harness.wait_calls(1, timeout=10)
    await other.stop()
    assert harness.calls == [("from elsewhere",)]
    assert elsewhere.calls == []


async def test_a_failed_submit_gives_the_occurrence_back_and_it_fires_later(
    db_url: str, drop_tables: None
) -> None:
    broker = FlakyBroker(failures=2)
    harness = Harness(broker)
    fired: list[datetime] = []
    scheduler = harness.app.create_scheduler(db_url)
    scheduler.on_fire(lambda schedule, due, task_id: fired.append(due))
    task_ids: list[str] = []

    @scheduler.on_fire
    async def note(schedule: ScheduledTask, due: datetime, task_id: str) -> None:
        task_ids.append(task_id)

    made = await fetch(
        scheduler,
        await scheduler.schedule_once("record", run_at=soon(0.1), priority=7, args=("x",)),
    )
    async with harness.app, scheduler:
        await harness.wait_calls(1)
    assert harness.calls == [("x",)]
    assert fired == [made.next_run_at]
    assert [m.priority for m in broker.sent] == [7]  # the schedule's priority applies
    assert task_ids == [broker.sent[0].id]
    done = await scheduler.get(made)
    assert done is not None and done.run_count == 1 and not done.enabled
    await scheduler.store.close()


async def test_create_scheduler_takes_the_0_1_8_names(harness: Harness, db_url: str) -> None:
    scheduler = harness.app.create_scheduler(backend=db_url, check_interval=2.5)
    assert isinstance(scheduler, Scheduler) and harness.app.scheduler is scheduler
    assert scheduler.sync_interval == 2.5
    made = await scheduler.schedule_interval("record", 30)
    assert isinstance(made, str)
    assert (await scheduler.get_scheduled_task(made)) is not None
    assert [s.id for s in await scheduler.list_scheduled_tasks()] == [made]
    assert not (await scheduler.disable_task(made)).enabled
    assert (await scheduler.enable_task(made)).enabled
    assert await scheduler.unschedule(made) is True
    with pytest.raises(TypeError, match="pass the store once"):
        harness.app.create_scheduler(db_url, backend=db_url)
    await scheduler.stop()


async def _insert_due(scheduler: Scheduler, **fields: Any) -> ScheduledTask:
    """A due schedule written straight to the store, past the scheduler's validation (as
    another release, another app, or a hand-edited row might leave it)."""
    now = datetime.now(UTC)
    row = ScheduledTask(
        id=fields.pop("id", None) or f"raw-{now.timestamp()}-{len(fields)}",
        task_name=fields.pop("task_name", "record"),
        schedule_type=fields.pop("schedule_type", ScheduleType.INTERVAL),
        schedule=fields.pop("schedule", "60.0"),
        next_run_at=now - timedelta(seconds=1),
        **fields,
    )
    return await scheduler.store.add(row)


async def test_a_schedule_that_cannot_be_planned_does_not_block_the_others(
    harness: Harness, db_url: str
) -> None:
    scheduler = harness.app.create_scheduler(db_url)
    await _insert_due(scheduler, id="broken", schedule_type=ScheduleType.CRON, schedule="no")
    await scheduler.schedule_once("record", run_at=soon(0.05), args=("healthy",))
    await asyncio.sleep(0.1)
    assert await scheduler.fire_due() == 1
    await harness.wait_calls(1)
    assert harness.calls == [("healthy",)]
    broken = await scheduler.get("broken")
    assert broken is not None and broken.run_count == 0  # left as it was, and logged
    await scheduler.stop()


async def test_schedules_of_tasks_this_app_lacks_do_not_starve_the_rest(
    harness: Harness, db_url: str
) -> None:
    # Another app's schedules fill every batch; this app's own still fire.
    scheduler = Scheduler(harness.app, db_url, sync_interval=0.5, batch_size=2)
    for n in range(2):
        await _insert_due(scheduler, id=f"ghost-{n}", task_name="ghost", args=(n,))
    async with scheduler:
        await scheduler.schedule_interval("record", 0.2, args=("mine",))
        await harness.wait_calls(2)
    ghosts = [await scheduler.get(f"ghost-{n}") for n in range(2)]
    assert all(g is not None and g.run_count == 0 for g in ghosts)  # left for their app
    await scheduler.store.close()


class EditingBroker(FlakyBroker):
    """Fails the first submit, after someone edits the schedule in the meantime."""

    def __init__(self) -> None:
        super().__init__(failures=0)
        self.edit: Any = None

    async def enqueue(self, message: TaskMessage) -> None:
        if self.edit is not None:
            edit, self.edit = self.edit, None
            await edit()
            raise ConnectionError("broker down right after an edit (test)")
        await super().enqueue(message)


async def test_a_failed_submit_is_given_back_even_if_the_schedule_was_edited_meanwhile(
    db_url: str, drop_tables: None
) -> None:
    broker = EditingBroker()
    harness = Harness(broker)
    scheduler = harness.app.create_scheduler(db_url)
    made = await fetch(
        scheduler, await scheduler.schedule_once("record", run_at=soon(0.05), args=("kept",))
    )
    broker.edit = lambda: scheduler.update(made, description="edited while firing")
    await asyncio.sleep(0.1)
    async with harness.app:
        assert await scheduler.fire_due() == 0  # failed, given back on top of the edit
        pending = await scheduler.get(made)
        assert pending is not None and pending.enabled and pending.run_count == 0
        assert pending.next_run_at == made.next_run_at
        assert pending.description == "edited while firing"
        scheduler._held.clear()  # no need to wait for the retry pause in a test
        assert await scheduler.fire_due() == 1
        await harness.wait_calls(1)
    assert harness.calls == [("kept",)]
    await scheduler.stop()


async def test_a_submit_cancelled_by_stop_gives_the_occurrence_back(
    db_url: str, drop_tables: None
) -> None:
    class StuckBroker(MemoryBroker):
        async def enqueue(self, message: TaskMessage) -> None:
            await asyncio.Event().wait()  # a broker that never answers

    harness = Harness(StuckBroker())
    scheduler = harness.app.create_scheduler(db_url)
    made = await fetch(scheduler, await scheduler.schedule_once("record", run_at=soon(0.05)))
    await asyncio.sleep(0.1)
    firing = asyncio.create_task(scheduler.fire_due())
    await asyncio.sleep(0.3)
    firing.cancel()
    await asyncio.wait({firing})
    after = await scheduler.get(made)
    assert after is not None
    assert (after.enabled, after.run_count, after.next_run_at) == (True, 0, made.next_run_at)
    await scheduler.stop()


async def test_first_use_from_many_coroutines_at_once_opens_the_store_once(
    harness: Harness, db_url: str
) -> None:
    scheduler = harness.app.create_scheduler(db_url)
    made = await asyncio.gather(
        *(scheduler.schedule_interval("record", 10 + n) for n in range(5)), scheduler.start()
    )
    assert len({m for m in made if m is not None}) == 5
    await scheduler.stop()


async def test_a_fired_one_time_schedule_runs_again_after_a_new_run_at(
    harness: Harness, db_url: str
) -> None:
    scheduler = harness.app.create_scheduler(db_url, sync_interval=0.2)
    made = await scheduler.schedule_once("record", run_at=soon(0.05), args=("again",))
    async with scheduler:
        await harness.wait_calls(1)
        with pytest.raises(ScheduleError, match="already run"):
            await scheduler.enable(made)
        rearmed = await scheduler.update(made, run_at=soon(0.2))
        assert rearmed.enabled and rearmed.next_run_at is not None
        await harness.wait_calls(2)
    assert harness.calls == [("again",), ("again",)]
    await scheduler.store.close()


async def test_more_bad_input_is_a_schedule_error(harness: Harness, db_url: str) -> None:
    scheduler = harness.app.create_scheduler(db_url)
    cases: list[tuple[Any, str]] = [
        (scheduler.schedule_cron("record", "0 0 31 2 *"), "never runs"),
        (scheduler.schedule_cron("record", "0 9 * * * * 2020"), "invalid cron"),
        (scheduler.schedule_interval("record", 1e12), "at most"),
        (scheduler.schedule_interval("record", 5, kwargs={1: "a"}), "str keys"),
        (scheduler.schedule_interval("record", 5, args=(float("nan"),)), "must be JSON"),
        (scheduler.schedule_interval("record", 5, misfire_grace=float("inf")), "grace"),
        (scheduler.schedule_interval("record", 5, misfire_grace=0), "grace"),
        (scheduler.schedule_interval("record", 5, task_id="x" * 65), "64 characters"),
    ]
    for call, message in cases:
        with pytest.raises(ScheduleError, match=message):
            await call
    first = await scheduler.schedule_interval("record", 5)
    second = await scheduler.schedule_interval("record", 6)
    with pytest.raises(ScheduleError, match=f"{first} already has that definition"):
        await scheduler.update(second, interval=5)
    assert len(await scheduler.list()) == 2
    with pytest.raises(ValueError, match="batch_size"):
        Scheduler(harness.app, db_url, batch_size=0)
    await scheduler.stop()


async def test_the_monitor_lists_the_apps_schedules(harness: Harness, db_url: str) -> None:
    from flowrra.monitor import Monitor

    assert await Monitor(harness.app).schedules() == []
    scheduler = harness.app.create_scheduler(db_url)
    made = await fetch(
        scheduler, await scheduler.schedule_cron("record", cron="0 9 * * *", description="daily")
    )
    [shown] = await Monitor(harness.app).schedules()
    assert shown["id"] == made.id and shown["description"] == "daily"
    assert shown["next_run_at"] == made.next_run_at.isoformat()  # type: ignore[union-attr]
    await scheduler.stop()


async def test_schedule_methods_return_the_id_as_0_1_8_did(harness: Harness, db_url: str) -> None:
    scheduler = harness.app.create_scheduler(db_url)
    ids = [
        await scheduler.schedule_cron("record", cron="0 9 * * *"),
        await scheduler.schedule_interval("record", 300),
        await scheduler.schedule_once("record", run_at=soon(3600)),
    ]
    assert [type(i) for i in ids] == [str, str, str] and len(set(ids)) == 3
    assert json.loads(json.dumps({"ids": ids})) == {"ids": ids}  # JSON and URLs take it
    assert await scheduler.schedule_interval("record", 300.0) == ids[1]  # the same one
    kinds = [getattr(await scheduler.get(i), "schedule_type", None) for i in ids]
    assert kinds == [ScheduleType.CRON, ScheduleType.INTERVAL, ScheduleType.ONE_TIME]
    for schedule_id in ids:
        assert await scheduler.unschedule(schedule_id) is True
    assert await scheduler.list() == []
    await scheduler.stop()


async def test_a_naive_run_at_is_local_time_as_in_0_1_8(
    harness: Harness, db_url: str, new_york_local_time: ZoneInfo
) -> None:
    scheduler = harness.app.create_scheduler(db_url)
    naive = datetime.now() + timedelta(hours=1)  # the seed's own pattern
    meant = naive.replace(tzinfo=new_york_local_time)
    schedule_id = await scheduler.schedule_once("record", run_at=naive)
    made = await scheduler.get(schedule_id)
    assert made is not None and made.next_run_at == meant
    assert made.next_run_at.tzinfo is not None and made.next_run_at.utcoffset() == timedelta(0)
    # The same instant given aware is the same schedule.
    assert await scheduler.schedule_once("record", run_at=meant) == schedule_id
    later = naive + timedelta(hours=2)
    moved = await scheduler.update(schedule_id, run_at=later)
    assert moved.next_run_at == later.replace(tzinfo=new_york_local_time)
    stored = await scheduler.get(schedule_id)
    assert stored is not None and stored.next_run_at == moved.next_run_at
    with pytest.raises(ScheduleError, match="in the past"):
        await scheduler.schedule_once("record", run_at=datetime.now() - timedelta(minutes=1))
    await scheduler.stop()
