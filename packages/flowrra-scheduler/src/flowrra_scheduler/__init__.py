"""flowrra-scheduler: cron, interval and one-time schedules for Flowrra, kept in SQLite,
PostgreSQL or MySQL and fired exactly once however many scheduler processes share them.

::

    from flowrra import Flowrra

    app = Flowrra.from_urls()
    scheduler = app.create_scheduler()          # .flowrra_schedule.db, or a database URL

    @app.task()
    async def send_daily_report() -> str: ...

    async def main() -> None:
        await scheduler.schedule_cron(send_daily_report, cron="0 9 * * *", timezone="Europe/Paris")
        async with app, scheduler:
            ...

The core finds this package through entry points: ``flowrra.extensions`` (``scheduler``:
what ``app.create_scheduler()`` builds), ``flowrra.schedule_stores`` (the stores by URL
scheme) and ``flowrra.cli`` (``flowrra scheduler module:app``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowrra.plugins import get_scheduler_backend
from flowrra.protocols import ScheduleStore
from flowrra.schedules import MisfirePolicy, ScheduledTask, ScheduleType
from flowrra_scheduler._version import __version__
from flowrra_scheduler.scheduler import Scheduler

if TYPE_CHECKING:
    from flowrra.app import Flowrra

__all__ = [
    "MisfirePolicy",
    "ScheduleType",
    "ScheduledTask",
    "Scheduler",
    "__version__",
    "get_scheduler_backend",
    "make_mysql_store",
    "make_postgresql_store",
    "make_scheduler",
    "make_sqlite_store",
]


def make_scheduler(
    app: Flowrra,
    store: ScheduleStore | str | None = None,
    *,
    backend: ScheduleStore | str | None = None,
    sync_interval: float = 5.0,
    check_interval: float | None = None,
    **options: Any,
) -> Scheduler:
    """What ``app.create_scheduler(...)`` builds. ``backend`` and ``check_interval`` are
    flowrra 0.1.8's names for ``store`` and ``sync_interval``. The app remembers the
    scheduler as ``app.scheduler``."""
    if store is not None and backend is not None:
        raise TypeError("pass the store once: store=... (backend= is its 0.1.8 name)")
    scheduler = Scheduler(
        app,
        store if store is not None else backend,
        sync_interval=check_interval if check_interval is not None else sync_interval,
        **options,
    )
    app.scheduler = scheduler
    return scheduler


def make_sqlite_store(url: str) -> ScheduleStore:
    """The ``sqlite`` entry point of ``flowrra.schedule_stores``."""
    from flowrra_scheduler.stores.sqlite import SQLiteScheduleStore

    return SQLiteScheduleStore(url)


def make_postgresql_store(url: str) -> ScheduleStore:
    """The ``postgresql`` / ``postgres`` entry points of ``flowrra.schedule_stores``."""
    from flowrra_scheduler.stores.postgresql import PostgreSQLScheduleStore

    return PostgreSQLScheduleStore(url)


def make_mysql_store(url: str) -> ScheduleStore:
    """The ``mysql`` entry point of ``flowrra.schedule_stores``."""
    from flowrra_scheduler.stores.mysql import MySQLScheduleStore

    return MySQLScheduleStore(url)
