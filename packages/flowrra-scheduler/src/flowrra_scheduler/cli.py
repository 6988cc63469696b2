"""``flowrra scheduler module:app``: run an app's scheduler as its own process.

The scheduler is the one the module made with ``app.create_scheduler(...)``, or, if it made
none, one on ``--store`` (default ``.flowrra_schedule.db``). On a broker shared between
processes (Redis) the process only submits, and ``flowrra worker`` processes run the tasks;
on the embedded in-memory broker it also runs them itself, since nothing else could.
SIGTERM or SIGINT stops it gracefully; run as many as you like on one store for high
availability: each occurrence fires once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from flowrra.cli import load_app, serve
from flowrra_scheduler.scheduler import Scheduler

if TYPE_CHECKING:
    from flowrra.app import Flowrra

__all__ = ["add_commands"]

logger = logging.getLogger("flowrra.scheduler")


async def run_scheduler(app: Flowrra, store: str | None, sync_interval: float | None) -> None:
    """Serve ``app``'s scheduler until SIGTERM/SIGINT."""
    scheduler: Scheduler
    if isinstance(app.scheduler, Scheduler) and store is None:
        scheduler = app.scheduler
        if sync_interval is not None:
            scheduler.sync_interval = sync_interval
    else:
        options = {} if sync_interval is None else {"sync_interval": sync_interval}
        scheduler = app.create_scheduler(store, **options)
    runs_tasks = not app.broker.durable

    async def start() -> None:
        if runs_tasks:
            await app.start()
        await scheduler.start()
        schedules = await scheduler.list(enabled_only=True)
        logger.info(
            "scheduler ready (pid %d) on %r: %d enabled schedules%s",
            os.getpid(),
            scheduler.store,
            len(schedules),
            "; running the tasks in this process (in-memory broker)" if runs_tasks else "",
        )

    async def stop() -> None:
        await scheduler.stop()
        if runs_tasks:
            await app.stop(wait=True, timeout=10.0)
        else:
            await app.close()

    async def stop_now() -> None:
        await scheduler.stop()
        await app.stop(wait=False) if runs_tasks else await app.close()

    await serve(start, stop, stop_now, grace=30.0)
    logger.info("scheduler stopped after firing %d occurrences", scheduler.fired)


def _cmd_scheduler(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    asyncio.run(run_scheduler(app, args.store, args.sync_interval))
    return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_commands(commands: Any) -> None:
    """The ``flowrra.cli`` entry point: adds ``flowrra scheduler``."""
    parser = commands.add_parser(
        "scheduler", help="run an app's scheduler (cron, interval, one-time schedules)"
    )
    parser.add_argument("app", help="the app, as module:attribute (e.g. tasks:app)")
    parser.add_argument(
        "--store",
        help="schedule store URL (default: the app's create_scheduler() store, "
        "else sqlite:///.flowrra_schedule.db)",
    )
    parser.add_argument(
        "--sync-interval",
        type=_seconds,
        help="longest delay (seconds) before changes from other processes are seen (default 5)",
    )
    parser.set_defaults(func=_cmd_scheduler)
