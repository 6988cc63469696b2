"""Schedules on the embedded default: an interval, a one-time run and a cron expression,
kept in a SQLite file (a temporary one here; `.flowrra_schedule.db` by default).

    pip install "flowrra[scheduler]"
    python examples/scheduled.py
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flowrra import Flowrra

app = Flowrra()


@app.task()
async def heartbeat(source: str) -> str:
    print(f"{datetime.now(UTC):%H:%M:%S.%f} heartbeat from {source}")
    return source


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        scheduler = app.create_scheduler(f"sqlite:///{Path(folder) / 'schedules.db'}")
        every = await scheduler.schedule_interval(heartbeat, interval=0.3, args=("interval",))
        once = await scheduler.schedule_once(
            heartbeat, run_at=datetime.now(UTC) + timedelta(seconds=0.5), args=("one-time",)
        )
        daily_id = await scheduler.schedule_cron(  # each returns the schedule's id, a str
            "heartbeat", cron="0 9 * * 1-5", timezone="Europe/Paris", args=("cron",)
        )
        again = await scheduler.schedule_interval(heartbeat, interval=0.3, args=("interval",))
        assert again == every  # the same schedule twice is one schedule
        daily = await scheduler.get(daily_id)  # the whole ScheduledTask
        assert daily is not None
        print(f"weekday 09:00 in Paris next runs at {daily.next_run_at} (UTC)")

        async with app, scheduler:
            await asyncio.sleep(1.2)

        for schedule in await scheduler.list():
            print(
                f"{schedule.schedule_type.value:>9} {schedule.schedule:<32} "
                f"runs={schedule.run_count} enabled={schedule.enabled} next={schedule.next_run_at}"
            )
        finished = await scheduler.get(once)
        await scheduler.stop()  # closes the store
        assert finished is not None and finished.run_count == 1 and not finished.enabled


asyncio.run(main())
