"""Real ``flowrra scheduler`` processes sharing one store: every occurrence fires exactly
once, and SIGTERM stops them cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from flowrra_scheduler import Scheduler

from flowrra import Flowrra, MisfirePolicy

APPS = Path(__file__).parent / "apps"
OCCURRENCES = 50
EVERY = 0.2


def start_schedulers(count: int, db_url: str, out: Path) -> list[subprocess.Popen[str]]:
    env = {
        **os.environ,
        "FLOWRRA_TEST_STORE_URL": db_url,
        "FLOWRRA_TEST_OUT": str(out),
        "PYTHONPATH": str(APPS),
    }
    return [
        subprocess.Popen(
            [sys.executable, "-m", "flowrra", "scheduler", "sched_app:app"],
            cwd=APPS,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(count)
    ]


def stop(procs: list[subprocess.Popen[str]]) -> list[str]:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    outputs = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        outputs.append(out)
    return outputs


async def test_three_schedulers_fire_each_occurrence_exactly_once(
    db_url: str, drop_tables: None, tmp_path: Path
) -> None:
    out = tmp_path / "beats.txt"
    app = Flowrra()

    @app.task()
    async def beat(label: str) -> None:
        return None

    control = Scheduler(app, db_url)
    procs = start_schedulers(3, db_url, out)
    try:
        await asyncio.sleep(1.0)  # let them start, so all three compete from the first run
        made = await control.schedule_interval(
            beat, EVERY, args=("beat",), misfire_policy=MisfirePolicy.RUN_ALL, misfire_grace=60
        )
        first = await control.get(made)  # before its first run, EVERY seconds away
        async with asyncio.timeout(90):
            while True:
                current = await control.get(made)
                assert current is not None
                if current.run_count >= OCCURRENCES:
                    break
                assert all(p.poll() is None for p in procs), stop(procs)
                await asyncio.sleep(0.2)
        final = await control.disable(made)
    finally:
        outputs = stop(procs)
    await control.stop()

    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    lines = out.read_text().splitlines()
    # Exactly once: as many executions as occurrences claimed ...
    assert len(lines) == final.run_count >= OCCURRENCES, outputs
    # ... and never zero: the claimed occurrences are every one from the first to the last.
    assert first is not None and first.next_run_at is not None
    assert final.last_run_at is not None
    span = (final.last_run_at - first.next_run_at) / timedelta(seconds=EVERY)
    assert round(span) + 1 == final.run_count
    firing_pids = {line.split()[1] for line in lines}
    assert firing_pids <= {str(p.pid) for p in procs}
    assert all("scheduler stopped after firing" in o for o in outputs), outputs


def test_the_command_is_listed_and_a_bad_app_path_exits_2() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "flowrra", "--help"], capture_output=True, text=True, check=True
    )
    assert "scheduler" in listed.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "flowrra", "scheduler", "no_such_module_here:app"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "cannot import module 'no_such_module_here'" in bad.stderr
    negative = subprocess.run(
        [sys.executable, "-m", "flowrra", "scheduler", "x:app", "--sync-interval", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert negative.returncode == 2 and "--sync-interval: must be positive" in negative.stderr


def test_a_process_that_never_stops_its_scheduler_still_exits(tmp_path: Path) -> None:
    """The seed docs' example starts the scheduler and never stops it (Ctrl+C ends it):
    the process must exit, not wait for ever on the SQLite store's thread."""
    script = tmp_path / "forgetful.py"
    script.write_text(
        "import asyncio\n"
        "from flowrra import Flowrra\n"
        "app = Flowrra()\n"
        "@app.task()\n"
        "async def tick():\n"
        "    return 1\n"
        "async def main():\n"
        f"    scheduler = app.create_scheduler({f'sqlite:///{tmp_path}/s.db'!r})\n"
        "    await scheduler.schedule_interval(tick, interval=60)\n"
        "    await app.start()\n"
        "    await scheduler.start()\n"
        "    print('running', flush=True)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "running" in done.stdout, done.stderr
