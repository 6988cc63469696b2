"""The scheduler: keeps schedules in a store and submits their tasks when they come due.

One loop per process. It sleeps until the earliest due time in the store, or until a
schedule changes in this process, or at most ``sync_interval`` seconds (so it sees what
other processes changed). When a schedule is due it *claims* the occurrence with a
compare-and-set on the schedule's revision, which writes the next due time in the same
statement; only the process whose write lands submits the task. No lock is held while a
task runs, and any number of scheduler processes can share one store.

If the submit fails (the broker is down), the claim is undone so the occurrence fires on a
later attempt instead of being lost.

"Now" and the waits between passes are read on a :class:`~flowrra.clock.Clock`, the app's
by default: with a :class:`~flowrra.clock.ManualClock` a test moves time forward and sees
exactly what fires, without waiting for it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import inspect
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from flowrra.clock import Clock
from flowrra.exceptions import (
    FlowrraError,
    ScheduleError,
    ScheduleNotFoundError,
    ScheduleStoreError,
    TaskNotRegisteredError,
)
from flowrra.plugins import get_scheduler_backend
from flowrra.protocols import ScheduleStore
from flowrra.schedules import MisfirePolicy, ScheduledTask, ScheduleType
from flowrra_scheduler import timing

if TYPE_CHECKING:
    from flowrra.app import Flowrra

__all__ = ["Scheduler"]

logger = logging.getLogger("flowrra.scheduler")

ScheduleRef = ScheduledTask | str


class SubmitError(FlowrraError):
    """A due occurrence could not be submitted (its claim was given back)."""


_UPDATABLE = {
    "cron",
    "interval",
    "run_at",
    "args",
    "kwargs",
    "enabled",
    "description",
    "priority",
    "timezone",
    "misfire_policy",
    "misfire_grace",
}


def _id_of(schedule: ScheduleRef) -> str:
    return schedule.id if isinstance(schedule, ScheduledTask) else str(schedule)


class Scheduler:
    """Cron, interval and one-time schedules for one :class:`flowrra.Flowrra` app.

    Build it with ``app.create_scheduler(store=None)``; ``store`` is a database URL
    (``sqlite:///schedules.db``, ``postgresql://…``, ``mysql://…``), a
    :class:`~flowrra.protocols.ScheduleStore`, or ``None`` for ``.flowrra_schedule.db``.
    Schedules can be added before :meth:`start`; tasks are submitted only while it runs.
    ``schedule_cron`` / ``schedule_interval`` / ``schedule_once`` return the schedule's
    id (a ``str``, as in 0.1.8); :meth:`get` gives the whole :class:`ScheduledTask`.

    ``sync_interval`` (seconds, default 5) bounds how long a change made by another
    process takes to be seen. ``batch_size`` is how many due schedules one pass claims.
    ``clock`` (default: the app's ``clock``, else the system's) is where "now" is read and
    the waits between passes are timed.
    """

    def __init__(
        self,
        app: Flowrra,
        store: ScheduleStore | str | None = None,
        *,
        sync_interval: float = 5.0,
        batch_size: int = 200,
        clock: Clock | None = None,
    ) -> None:
        if not sync_interval > 0:
            raise ValueError(f"sync_interval must be positive, got {sync_interval!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.app = app
        self.clock: Clock = clock if clock is not None else app.clock
        self.store: ScheduleStore = (
            store
            if store is not None and not isinstance(store, str)
            else get_scheduler_backend(store)
        )
        self.sync_interval = float(sync_interval)
        self.batch_size = batch_size
        self.fired = 0
        """Occurrences this instance submitted."""
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._on_fire: builtins.list[Callable[[ScheduledTask, datetime, str], Any]] = []
        # Schedules this process leaves alone for now: id -> (until, last pause).
        self._held: dict[str, tuple[datetime, float]] = {}

    def __repr__(self) -> str:
        return f"Scheduler({self.store!r}, running={self.is_running})"

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    async def start(self) -> None:
        """Connect to the store and start firing due schedules."""
        if self.is_running:
            return
        await self._ready()
        self._stopping = False
        self._loop_task = asyncio.create_task(self._run(), name="flowrra-scheduler")
        logger.info("scheduler started on %r", self.store)

    async def stop(self) -> None:
        """Stop firing and close the store. A submit in progress completes first."""
        self._stopping = True
        self._wake.set()
        task, self._loop_task = self._loop_task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=10)
            except TimeoutError:
                task.cancel()
                await asyncio.wait({task}, timeout=5)  # the claim is given back on cancel
        await self.store.close()
        logger.info("scheduler stopped")

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def on_fire(
        self, callback: Callable[[ScheduledTask, datetime, str], Any]
    ) -> Callable[[ScheduledTask, datetime, str], Any]:
        """Register ``callback(schedule, due_at, task_id)`` (a function or a coroutine
        function), called after each submit this instance makes (monitoring, tests).
        Exceptions it raises are logged. It runs in the firing loop: keep it quick."""
        self._on_fire.append(callback)
        return callback

    # -- creating ------------------------------------------------------------------------

    async def schedule_cron(
        self,
        task_name: Any,
        cron: str,
        args: tuple[Any, ...] | builtins.list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        enabled: bool = True,
        description: str | None = None,
        priority: int = 0,
        timezone: str = "UTC",
        misfire_policy: MisfirePolicy | str = MisfirePolicy.RUN_ONCE,
        misfire_grace: float = 60.0,
        task_id: str | None = None,
    ) -> str:
        """Run ``task_name`` on a cron expression (``"0 9 * * *"``: 09:00 every day),
        evaluated in ``timezone``. Returns the schedule's id. Idempotent: the same
        task, expression, zone and arguments give back the existing schedule's id."""
        timing.check_timezone(timezone)
        made = await self._create(
            task_name,
            ScheduleType.CRON,
            timing.check_cron(cron),
            args,
            kwargs,
            enabled=enabled,
            description=description,
            priority=priority,
            timezone=timezone,
            misfire_policy=misfire_policy,
            misfire_grace=misfire_grace,
            task_id=task_id,
        )
        return made.id

    async def schedule_interval(
        self,
        task_name: Any,
        interval: float,
        args: tuple[Any, ...] | builtins.list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        enabled: bool = True,
        description: str | None = None,
        priority: int = 0,
        misfire_policy: MisfirePolicy | str = MisfirePolicy.RUN_ONCE,
        misfire_grace: float = 60.0,
        task_id: str | None = None,
    ) -> str:
        """Run ``task_name`` every ``interval`` seconds, first ``interval`` seconds from
        now; later runs keep to that grid however late one is fired. Returns the
        schedule's id. Idempotent: the same task, interval and arguments give back the
        existing schedule's id."""
        made = await self._create(
            task_name,
            ScheduleType.INTERVAL,
            repr(timing.check_interval(interval)),
            args,
            kwargs,
            enabled=enabled,
            description=description,
            priority=priority,
            timezone="UTC",
            misfire_policy=misfire_policy,
            misfire_grace=misfire_grace,
            task_id=task_id,
        )
        return made.id

    async def schedule_once(
        self,
        task_name: Any,
        run_at: datetime,
        args: tuple[Any, ...] | builtins.list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        enabled: bool = True,
        description: str | None = None,
        priority: int = 0,
        misfire_policy: MisfirePolicy | str = MisfirePolicy.RUN_ONCE,
        misfire_grace: float = 60.0,
        task_id: str | None = None,
    ) -> str:
        """Run ``task_name`` once at ``run_at``, which must not be in the past (a naive
        datetime is local time, as in 0.1.8). Returns the schedule's id. After it fires
        the schedule stays, disabled, with its ``last_run_at``. Idempotent like the others:
        the same task, instant (to the microsecond) and arguments give back the existing
        schedule's id, even once it has fired."""
        run_at = timing.utc_instant(run_at)
        made = await self._create(
            task_name,
            ScheduleType.ONE_TIME,
            run_at.isoformat(),
            args,
            kwargs,
            enabled=enabled,
            description=description,
            priority=priority,
            timezone="UTC",
            misfire_policy=misfire_policy,
            misfire_grace=misfire_grace,
            task_id=task_id,
            run_at=run_at,
        )
        return made.id

    async def _create(
        self,
        task: Any,
        kind: ScheduleType,
        spec: str,
        args: tuple[Any, ...] | builtins.list[Any],
        kwargs: dict[str, Any] | None,
        *,
        enabled: bool,
        description: str | None,
        priority: int,
        timezone: str,
        misfire_policy: MisfirePolicy | str,
        misfire_grace: float,
        task_id: str | None,
        run_at: datetime | None = None,
    ) -> ScheduledTask:
        now = self._now()
        schedule = ScheduledTask(
            id=task_id or uuid.uuid4().hex,
            task_name=self._task_name(task),
            schedule_type=kind,
            schedule=spec,
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            enabled=bool(enabled),
            timezone=timezone,
            priority=_check_priority(priority),
            description=description,
            misfire_policy=_check_policy(misfire_policy),
            misfire_grace=_check_grace(misfire_grace),
            created_at=now,
            updated_at=now,
        )
        _check_arguments(schedule)
        await self._ready()
        if run_at is not None and run_at < now:
            # Past: fine only if this very schedule exists (it was made, and has fired,
            # before a restart); otherwise the clear error.
            existing = await self._find(schedule)
            if existing is not None:
                return existing
            timing.check_run_at(run_at, now)
        schedule.next_run_at = timing.first_run(schedule, now)
        stored = await self.store.add(schedule)
        if stored.id == schedule.id:
            logger.info(
                "scheduled %s (%s %s), next run %s",
                stored.task_name,
                kind.value,
                spec,
                stored.next_run_at,
            )
        self._wake.set()
        return stored

    async def _find(self, schedule: ScheduledTask) -> ScheduledTask | None:
        key = schedule.definition_key
        for existing in await self.store.list_all():
            if existing.definition_key == key:
                return existing
        return None

    # -- reading and changing ------------------------------------------------------------

    async def list(self, enabled_only: bool = False) -> builtins.list[ScheduledTask]:
        """Every schedule (or every enabled one), oldest first."""
        await self._ready()
        return await self.store.list_all(enabled_only)

    async def get(self, schedule: ScheduleRef) -> ScheduledTask | None:
        """The schedule with this id, or ``None``."""
        await self._ready()
        return await self.store.get(_id_of(schedule))

    async def enable(self, schedule: ScheduleRef) -> ScheduledTask:
        """Turn a schedule back on; its next run is computed from now (occurrences missed
        while it was off are not caught up)."""
        return await self.update(schedule, enabled=True)

    async def disable(self, schedule: ScheduleRef) -> ScheduledTask:
        """Stop a schedule from firing, keeping it."""
        return await self.update(schedule, enabled=False)

    async def delete(self, schedule: ScheduleRef) -> bool:
        """Remove a schedule; False if there was none."""
        await self._ready()
        deleted = await self.store.delete(_id_of(schedule))
        self._wake.set()
        return deleted

    async def update(self, schedule: ScheduleRef, **changes: Any) -> ScheduledTask:
        """Change a schedule: any of ``cron`` / ``interval`` / ``run_at`` (matching its
        type), ``args``, ``kwargs``, ``enabled``, ``description``, ``priority``,
        ``timezone`` (cron), ``misfire_policy``, ``misfire_grace``. A change of timing
        recomputes the next run from now. Raises :class:`ScheduleError` for bad values
        (nothing is written) and :class:`ScheduleNotFoundError` for an unknown id."""
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ScheduleError(
                f"cannot update {', '.join(sorted(unknown))}; updatable: "
                f"{', '.join(sorted(_UPDATABLE))}"
            )
        await self._ready()
        schedule_id = _id_of(schedule)
        while True:
            current = await self.store.get(schedule_id)
            if current is None:
                raise ScheduleNotFoundError(schedule_id)
            revision = current.revision
            changed = self._apply(current, changes)
            if changed.definition_key != current.definition_key:
                twin = await self._find(changed)
                if twin is not None and twin.id != changed.id:
                    raise ScheduleError(
                        f"schedule {twin.id} already has that definition: change or delete "
                        "that one instead"
                    )
            if await self.store.replace(changed, revision):
                self._wake.set()
                return changed
            # Someone else wrote it in between (a firing, another process): read again.

    def _apply(self, current: ScheduledTask, changes: dict[str, Any]) -> ScheduledTask:
        now = self._now()
        new = dataclasses.replace(current)
        retime = False
        kind = current.schedule_type
        for field_name, spec_of in (
            ("cron", ScheduleType.CRON),
            ("interval", ScheduleType.INTERVAL),
            ("run_at", ScheduleType.ONE_TIME),
        ):
            if field_name in changes and kind is not spec_of:
                raise ScheduleError(
                    f"schedule {current.id} is a {kind.value} schedule; {field_name!r} "
                    f"applies to {spec_of.value} schedules"
                )
        if "cron" in changes:
            new.schedule = timing.check_cron(changes["cron"])
            retime = True
        if "interval" in changes:
            new.schedule = repr(timing.check_interval(changes["interval"]))
            retime = True
        if "run_at" in changes:
            new.schedule = timing.check_run_at(changes["run_at"], now).isoformat()
            new.last_run_at = None
            new.enabled = bool(changes.get("enabled", True))  # a new run_at re-arms it
            retime = True
        if "timezone" in changes:
            if kind is not ScheduleType.CRON:
                raise ScheduleError("timezone applies to cron schedules only")
            timing.check_timezone(changes["timezone"])
            new.timezone = changes["timezone"]
            retime = True
        if "args" in changes:
            new.args = tuple(changes["args"])
        if "kwargs" in changes:
            new.kwargs = dict(changes["kwargs"] or {})
        if "description" in changes:
            new.description = changes["description"]
        if "priority" in changes:
            new.priority = _check_priority(changes["priority"])
        if "misfire_policy" in changes:
            new.misfire_policy = _check_policy(changes["misfire_policy"])
        if "misfire_grace" in changes:
            new.misfire_grace = _check_grace(changes["misfire_grace"])
        if "enabled" in changes and "run_at" not in changes:
            enabled = bool(changes["enabled"])
            if enabled and not current.enabled:
                if kind is ScheduleType.ONE_TIME and current.next_run_at is None:
                    raise ScheduleError(
                        f"one-time schedule {current.id} has already run: to run it again, "
                        "update it with a new run_at"
                    )
                retime = True
            new.enabled = enabled
        _check_arguments(new)
        if retime:
            # A one-time schedule keeps its run_at: re-enabled after it passed, it is a
            # late run, and its misfire policy decides.
            new.next_run_at = timing.first_run(new, now)
        new.updated_at = now
        return new

    # -- 0.1.8 names ---------------------------------------------------------------------

    async def unschedule(self, schedule: ScheduleRef) -> bool:
        """0.1.8's name for :meth:`delete`."""
        return await self.delete(schedule)

    async def enable_task(self, schedule: ScheduleRef) -> ScheduledTask:
        """0.1.8's name for :meth:`enable`."""
        return await self.enable(schedule)

    async def disable_task(self, schedule: ScheduleRef) -> ScheduledTask:
        """0.1.8's name for :meth:`disable`."""
        return await self.disable(schedule)

    async def get_scheduled_task(self, schedule: ScheduleRef) -> ScheduledTask | None:
        """0.1.8's name for :meth:`get`."""
        return await self.get(schedule)

    async def list_scheduled_tasks(self) -> builtins.list[ScheduledTask]:
        """0.1.8's name for :meth:`list`."""
        return await self.list()

    # -- firing --------------------------------------------------------------------------

    async def _ready(self) -> None:
        await self.store.connect()  # idempotent and safe to call concurrently

    async def _run(self) -> None:
        backoff = 0.0
        while not self._stopping:
            self._wake.clear()
            try:
                full = await self._pass()
                wait = 0.0 if full else await self._until_next()
                backoff = 0.0
            except Exception as exc:  # the store is down, most likely: back off, retry
                backoff = min(max(backoff * 2, 0.25), self.sync_interval)
                logger.error(
                    "scheduler pass failed, retrying in %.2fs: %s",
                    backoff,
                    exc,
                    exc_info=not isinstance(exc, ScheduleStoreError),
                )
                wait = backoff
            await self._sleep(wait)

    async def _until_next(self) -> float:
        """Seconds until something is due that this instance would fire (at most
        ``sync_interval``)."""
        now = self._now()
        if not self._held:
            next_at = await self.store.next_run_at()
        else:
            # The earliest next run may be a held schedule's: look past them.
            self._held = {k: v for k, v in self._held.items() if v[0] > now}
            horizon = now + timedelta(seconds=self.sync_interval)
            upcoming = await self.store.due(horizon, self.batch_size + len(self._held))
            times = [s.next_run_at for s in upcoming if s.id not in self._held and s.next_run_at]
            times += [until for until, _ in self._held.values()]
            next_at = min(times, default=None)
        if next_at is None:
            return self.sync_interval
        return min(self.sync_interval, max(0.0, (next_at - self._now()).total_seconds()))

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0 or self._wake.is_set():
            return
        clock = self.clock
        with contextlib.suppress(TimeoutError):
            async with clock.timeout_at(clock.monotonic() + seconds):
                await self._wake.wait()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.time(), UTC)

    async def fire_due(self) -> int:
        """One pass: claim and submit what is due now (up to ``batch_size`` schedules);
        returns how many occurrences this instance fired. The loop does this on its own;
        tests and tools may call it."""
        before = self.fired
        await self._pass()
        return self.fired - before

    def _hold(self, schedule: ScheduledTask, at_least: float, reason: str) -> None:
        """Leave ``schedule`` alone in this process for a while (doubling each time), so
        one schedule that cannot fire here neither spins the loop nor delays the rest."""
        _, previous = self._held.get(schedule.id, (None, 0.0))
        pause = min(max(previous * 2, at_least), max(self.sync_interval, 1.0) * 6)
        self._held[schedule.id] = (self._now() + timedelta(seconds=pause), pause)
        logger.error(
            "schedule %s (%s): %s; trying again in %.2fs",
            schedule.id,
            schedule.task_name,
            reason,
            pause,
        )

    async def _pass(self) -> bool:
        """Fire what is due; True if the batch was full, so more may be due."""
        await self._ready()
        now = self._now()
        due = await self.store.due(now, self.batch_size + len(self._held))
        tried = 0
        for schedule in due:
            if self._stopping or tried >= self.batch_size:
                break
            held = self._held.get(schedule.id)
            if held is not None and held[0] > now:
                continue
            tried += 1
            if schedule.task_name not in self.app.registry:
                # Leave it to a scheduler whose app has the task (they may share a store).
                self._hold(
                    schedule,
                    self.sync_interval,
                    "this app does not register the task; left for another scheduler",
                )
                continue
            try:
                await self._fire(schedule, now)
            except SubmitError as exc:
                self._hold(schedule, 0.25, f"{exc}; the occurrence was given back")
            except ScheduleStoreError:
                raise  # the store itself failed: the whole pass backs off
            except Exception as exc:  # a schedule that cannot be planned must not block others
                self._hold(schedule, self.sync_interval, f"{type(exc).__name__}: {exc}")
            else:
                self._held.pop(schedule.id, None)
        return tried >= self.batch_size

    async def _fire(self, schedule: ScheduledTask, now: datetime) -> None:
        fire_at, following = timing.plan(schedule, now)
        claimed = dataclasses.replace(
            schedule,
            next_run_at=following,
            last_run_at=fire_at[-1] if fire_at else schedule.last_run_at,
            run_count=schedule.run_count + len(fire_at),
            enabled=schedule.enabled and following is not None,
            updated_at=now,
        )
        if not await self.store.replace(claimed, schedule.revision):
            return  # another scheduler claimed it, or it changed: the next pass sees it
        if len(fire_at) == 0:
            logger.warning(
                "schedule %s (%s) missed its run at %s; policy %s skips it",
                schedule.id,
                schedule.task_name,
                schedule.next_run_at,
                schedule.misfire_policy.value,
            )
        for index, due_at in enumerate(fire_at):
            try:
                task_id = await self._submit(schedule)
            except BaseException as exc:
                # Cancelled (stop) or failed: give the occurrence back either way.
                await asyncio.shield(self._unclaim(schedule, claimed, fire_at, index))
                if not isinstance(exc, Exception):
                    raise
                raise SubmitError(
                    f"could not submit {schedule.task_name!r} for schedule {schedule.id} "
                    f"(due {due_at.isoformat()}): {type(exc).__name__}: {exc}"
                ) from exc
            self.fired += 1
            logger.info(
                "fired %s for schedule %s (due %s, %.3fs late): task %s",
                schedule.task_name,
                schedule.id,
                due_at.isoformat(),
                (self._now() - due_at).total_seconds(),
                task_id,
            )
            for callback in self._on_fire:
                try:
                    outcome = callback(schedule, due_at, task_id)
                    if inspect.isawaitable(outcome):
                        await outcome
                except Exception:
                    logger.exception("on_fire callback failed")

    async def _submit(self, schedule: ScheduledTask) -> str:
        handle = self.app.registry.get_or_raise(schedule.task_name)
        task_id: str = await handle.with_options(priority=schedule.priority).submit(
            *schedule.args, **schedule.kwargs
        )
        return task_id

    async def _unclaim(
        self,
        before: ScheduledTask,
        claimed: ScheduledTask,
        fire_at: builtins.list[datetime],
        index: int,
    ) -> None:
        """Give back the occurrences from ``fire_at[index]`` on, so a later pass fires them.

        Someone may have written the schedule since the claim (an ``update``): the give-back
        is then applied on top of what they wrote, unless they deleted or retimed it."""
        current: ScheduledTask | None = claimed
        for _ in range(10):
            if current is None or current.next_run_at != claimed.next_run_at:
                break  # deleted, or retimed by its owner: their new timing stands
            restored = dataclasses.replace(
                current,
                next_run_at=fire_at[index],
                last_run_at=fire_at[index - 1] if index > 0 else before.last_run_at,
                run_count=before.run_count + index,
            )
            if claimed.enabled != before.enabled and current.enabled == claimed.enabled:
                restored.enabled = before.enabled  # the claim disabled it (a one-time run)
            try:
                if await self.store.replace(restored, current.revision):
                    return
                current = await self.store.get(claimed.id)
            except ScheduleStoreError as exc:
                logger.error("schedule %s: giving back failed: %s", claimed.id, exc)
                break
        logger.error(
            "schedule %s: the occurrence due %s was not submitted and could not be given "
            "back (the schedule was deleted, retimed, or the store failed)",
            before.id,
            fire_at[index].isoformat(),
        )

    def _task_name(self, task: Any) -> str:
        try:
            name: str = self.app.registry.resolve(task)
        except TaskNotRegisteredError as exc:
            raise ScheduleError(
                f"task {exc.task_name!r} is not registered with this app: decorate it with "
                "@app.task() in a module the scheduler imports"
            ) from None
        return name


def _check_priority(priority: Any) -> int:
    if priority.__class__ is not int:
        raise ScheduleError(f"priority must be an int, got {priority!r}")
    return int(priority)


def _check_policy(policy: MisfirePolicy | str) -> MisfirePolicy:
    try:
        return MisfirePolicy(policy)
    except ValueError:
        raise ScheduleError(
            f"misfire_policy must be one of {', '.join(p.value for p in MisfirePolicy)}, "
            f"got {policy!r}"
        ) from None


def _check_grace(grace: Any) -> float:
    # Under a second, skip and run_all would drop runs fired a few milliseconds late.
    if (
        isinstance(grace, bool)
        or not isinstance(grace, int | float)
        or not 1 <= grace <= timing.MAX_SECONDS
    ):
        raise ScheduleError(
            f"misfire_grace must be a number of seconds from 1 to {timing.MAX_SECONDS}, "
            f"got {grace!r}"
        )
    return float(grace)


def _check_arguments(schedule: ScheduledTask) -> None:
    if not all(isinstance(key, str) for key in schedule.kwargs):
        raise ScheduleError("the keyword arguments of a schedule must have str keys")
    if len(schedule.id) > 64 or not schedule.id:
        raise ScheduleError(f"a schedule id has 1 to 64 characters, got {schedule.id!r}")
    if len(schedule.task_name) > 255:
        raise ScheduleError("task names of scheduled tasks have at most 255 characters")
    try:
        json.dumps([list(schedule.args), schedule.kwargs], allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ScheduleError(
            f"the arguments of a schedule must be JSON (they are stored in the database): {exc}"
        ) from exc
