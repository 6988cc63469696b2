"""Firing lateness of flowrra-scheduler's one-time schedules on SQLite and PostgreSQL.

Run with the project's interpreter::

    python bench/run_scheduler.py            # full: 1,000 schedules due within 60 s, per store
    python bench/run_scheduler.py --quick    # 100 schedules within 10 s
    python bench/run_scheduler.py --stores sqlite --n 500 --window 30

For each store an embedded app (``Flowrra()``, in-memory broker and results) registers a
no-op task, ``app.create_scheduler(url)`` builds the scheduler, and ``--n`` one-time
schedules (``scheduler.schedule_once``) are created with due times drawn uniformly at
random (distinct microseconds) from a ``--window``-second window that opens at least
``--lead`` seconds after the setup ends. Then the app and the scheduler run until every
schedule has fired (or the window plus ``--grace`` seconds has passed). An ``on_fire``
callback records ``datetime.now(UTC) - due_at`` for each occurrence and counts the
occurrences per schedule, so a schedule fired twice or never shows up.

Stores: SQLite in a temporary file, and PostgreSQL (``--postgresql-url``, default
``postgresql://postgres@127.0.0.1:5432/test``) under a unique ``table_prefix``; its tables are
dropped at the end (``store.drop()``). The Markdown table goes to stdout and, with the
machine facts, to ``bench/results/scheduler.md`` (``scheduler-quick.md`` for ``--quick``),
with the raw numbers next to it (``.json``). A missed target is reported, not failed: the
exit status is 0 unless a store could not be run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from run_core import machine_facts as core_machine_facts

from flowrra import Flowrra

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"

STORES = ("sqlite", "postgresql")
DEFAULT_POSTGRESQL_URL = "postgresql://postgres@127.0.0.1:5432/test"

TARGET_P99_MS = 50.0  # firing lateness p99, below

#: Schedules created (and deleted again) to time ``schedule_once`` on a store before the
#: measured ones are made, so that the window can be placed after the end of the setup.
CALIBRATION_N = 20
#: How many of the latest firings are listed, with what else was due just before them.
OUTLIERS = 5
#: "Crowded": other schedules due this many milliseconds or less before an outlier.
CROWD_MS = 50.0

MISSING = "n/a"


class BenchError(RuntimeError):
    """A store could not be set up or run."""


@dataclass
class Mode:
    name: str
    n: int
    window: float
    lead: float
    grace: float
    output: Path

    @property
    def description(self) -> str:
        return (
            f"{self.name}: {self.n:,} one-time schedules per store, due uniformly at random "
            f"within {self.window:g} s, the window opening at least {self.lead:g} s after the "
            f"setup ends; up to {self.grace:g} s after the window for the last firing"
        )


@dataclass
class Firing:
    schedule_id: str
    due_offset_s: float  # due time, seconds after the window opened
    lateness_ms: float
    scheduler_due: bool  # the scheduler's due_at is the run_at the schedule was made with


@dataclass
class StoreRun:
    """One store under test and what was measured on it."""

    name: str
    url: str = ""
    n: int = 0
    firings: list[Firing] = field(default_factory=list)
    setup_s: float | None = None
    lead_s: float | None = None  # from the end of the setup to the first due time
    opens: datetime | None = None  # when the window opened (due offsets count from it)
    run_s: float | None = None
    counted_by_scheduler: int | None = None  # Scheduler.fired
    store_check: str = MISSING  # what the store says afterwards
    problems: list[str] = field(default_factory=list)  # the run could not be done
    notes: list[str] = field(default_factory=list)

    # -- derived -------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        per_id: dict[str, int] = {}
        for firing in self.firings:
            per_id[firing.schedule_id] = per_id.get(firing.schedule_id, 0) + 1
        return per_id

    @property
    def fired(self) -> int:
        """Distinct schedules that fired."""
        return len(self.counts())

    @property
    def twice(self) -> int:
        """Schedules that fired more than once."""
        return sum(1 for count in self.counts().values() if count > 1)

    @property
    def missing(self) -> int:
        return self.n - self.fired

    @property
    def exactly_once(self) -> bool:
        return self.n > 0 and self.missing == 0 and self.twice == 0

    def lateness(self) -> list[float]:
        return sorted(f.lateness_ms for f in self.firings)

    def percentile(self, q: float) -> float | None:
        ordered = self.lateness()
        return _percentile(ordered, q) if ordered else None

    def summary(self) -> dict[str, Any]:
        ordered = self.lateness()
        return {
            "store": self.name,
            "url": self.url,
            "schedules": self.n,
            "fired": self.fired,
            "occurrences": len(self.firings),
            "fired_twice_or_more": self.twice,
            "missing": self.missing,
            "scheduler_fired_counter": self.counted_by_scheduler,
            "due_at_mismatches": sum(1 for f in self.firings if not f.scheduler_due),
            "p50_ms": _percentile(ordered, 50) if ordered else None,
            "p90_ms": _percentile(ordered, 90) if ordered else None,
            "p99_ms": _percentile(ordered, 99) if ordered else None,
            "max_ms": ordered[-1] if ordered else None,
            "min_ms": ordered[0] if ordered else None,
            "mean_ms": sum(ordered) / len(ordered) if ordered else None,
            "window_opens": self.opens.isoformat() if self.opens else None,
            "setup_s": self.setup_s,
            "lead_s": self.lead_s,
            "run_s": self.run_s,
            "store_check": self.store_check,
            "problems": self.problems,
            "notes": self.notes,
            "firings": [
                [f.schedule_id, round(f.due_offset_s, 6), round(f.lateness_ms, 3)]
                for f in self.firings
            ],
        }


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (``q`` in 0..100)."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _with_prefix(url: str, prefix: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}table_prefix={prefix}"


# -- one store -----------------------------------------------------------------------------


async def _calibrate(scheduler: Any, task: Any) -> float:
    """Seconds one ``schedule_once`` takes on this store (schedules due in a day, deleted
    again); this also connects the store and creates its tables."""
    far = datetime.now(UTC) + timedelta(days=1)
    made = []
    started = time.perf_counter()
    for i in range(CALIBRATION_N):
        made.append(await scheduler.schedule_once(task, run_at=far + timedelta(microseconds=i)))
    per_call = (time.perf_counter() - started) / CALIBRATION_N
    for schedule_id in made:
        await scheduler.delete(schedule_id)
    return per_call


async def _check_store(scheduler: Any, ids: set[str]) -> str:
    """What the store says after the run: every schedule disabled with ``run_count`` 1."""
    schedules = [s for s in await scheduler.list() if s.id in ids]
    wrong = [s for s in schedules if s.enabled or s.run_count != 1 or s.next_run_at is not None]
    absent = len(ids) - len(schedules)
    if not wrong and not absent:
        return f"all {len(schedules):,} disabled with run_count 1"
    return f"{len(wrong):,} not (disabled, run_count 1), {absent:,} absent"


async def run_store(run: StoreRun, url: str, mode: Mode, rng: random.Random) -> None:
    """Measure one store into ``run`` (see the module docs)."""
    run.url = url
    run.n = mode.n
    app = Flowrra()

    @app.task()
    async def noop() -> None:
        return None

    scheduler = app.create_scheduler(url)
    store = scheduler.store
    try:
        log(f"{run.name}: timing schedule_once on {store!r}")
        per_call = await _calibrate(scheduler, noop)
        budget = 1.0 + 2.0 * per_call * mode.n  # the setup should take about half of it
        window_us = int(mode.window * 1_000_000)
        offsets = sorted(rng.sample(range(window_us), mode.n))  # distinct: see _schedule_all
        setup_started = datetime.now(UTC)
        opens = run.opens = setup_started + timedelta(seconds=budget + mode.lead)
        due = {opens + timedelta(microseconds=us) for us in offsets}
        log(
            f"{run.name}: creating {mode.n:,} schedules ({per_call * 1e3:.2f} ms each in "
            f"calibration), window opens at {opens:%H:%M:%S}"
        )
        by_id = await _schedule_all(scheduler, noop, rng, due)
        setup_ended = datetime.now(UTC)
        run.setup_s = (setup_ended - setup_started).total_seconds()
        run.lead_s = (min(due) - setup_ended).total_seconds()
        if run.lead_s < mode.lead:
            run.notes.append(
                f"the setup took {run.setup_s:.1f} s, longer than planned: the window opened "
                f"{run.lead_s:.2f} s after it instead of {mode.lead:g} s"
            )

        done = asyncio.Event()
        firings = run.firings
        seen: set[str] = set()

        def on_fire(schedule: Any, due_at: datetime, task_id: str) -> None:
            late = datetime.now(UTC) - due_at  # first, before any bookkeeping
            intended = by_id.get(schedule.id)
            firings.append(
                Firing(
                    schedule.id,
                    (due_at - opens).total_seconds(),
                    late.total_seconds() * 1e3,
                    intended == due_at,
                )
            )
            seen.add(schedule.id)
            if len(seen) >= len(by_id):
                done.set()

        scheduler.on_fire(on_fire)
        last_due = max(due)
        started = time.perf_counter()
        async with app, scheduler:
            log(f"{run.name}: running until the last schedule fires (due {last_due:%H:%M:%S})")
            deadline = (last_due - datetime.now(UTC)).total_seconds() + mode.grace
            try:
                await asyncio.wait_for(done.wait(), timeout=max(deadline, 0.0))
            except TimeoutError:
                run.notes.append(f"not all fired by {mode.grace:g} s after the window closed")
            await asyncio.sleep(0.5)  # a second firing of anything would show up here
            run.counted_by_scheduler = scheduler.fired
            run.store_check = await _check_store(scheduler, set(by_id))
        run.run_s = time.perf_counter() - started
    except Exception as exc:
        run.problems.append(f"{run.name}: {type(exc).__name__}: {exc}")
        log(f"{run.name}: failed: {type(exc).__name__}: {exc}")
    finally:
        if scheduler.is_running:
            await scheduler.stop()
        try:
            await store.drop()  # reconnects: stop() closed the store
        except Exception as exc:
            if not run.problems:  # otherwise it is the same failure again
                run.notes.append(f"could not drop the tables: {type(exc).__name__}: {exc}")
        finally:
            await store.close()


async def _schedule_all(
    scheduler: Any, task: Any, rng: random.Random, due: set[datetime]
) -> dict[str, datetime]:
    """Create one one-time schedule per due time, in random order; ``{id: run_at}``.

    The due times must be distinct: two one-time schedules of the same task, time and
    arguments are the same schedule (``schedule_once`` gives back the existing one).
    """
    order = list(due)
    rng.shuffle(order)
    by_id: dict[str, datetime] = {}
    for run_at in order:
        by_id[await scheduler.schedule_once(task, run_at=run_at)] = run_at
    if len(by_id) != len(due):
        raise BenchError(f"{len(due):,} schedule_once calls made {len(by_id):,} schedules")
    return by_id


# -- the table -----------------------------------------------------------------------------


def _fmt(value: float | None, decimals: int) -> str:
    return MISSING if value is None else f"{value:,.{decimals}f}"


def _status(ok: bool | None) -> str:
    if ok is None:
        return "not measured"
    return "met" if ok else "**NOT met**"


def _once(run: StoreRun) -> str:
    if not run.firings and run.problems:
        return MISSING
    if run.exactly_once:
        return "yes"
    parts = []
    if run.missing:
        parts.append(f"{run.missing:,} never")
    if run.twice:
        parts.append(f"{run.twice:,} twice or more")
    return "**no**: " + ", ".join(parts)


def build_table(runs: list[StoreRun]) -> str:
    header = [
        "Store",
        "schedules",
        "fired",
        "exactly once",
        "p50 ms",
        "p99 ms",
        "max ms",
        f"target p99 < {TARGET_P99_MS:g} ms",
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---:", "---:", "---", "---:", "---:", "---:", "---"]) + "|",
    ]
    for run in runs:
        p99 = run.percentile(99)
        measured = bool(run.firings) and not run.problems
        row = [
            run.name if measured or run.firings else f"{run.name} (not available)",
            f"{run.n:,}",
            f"{run.fired:,}",
            _once(run),
            _fmt(run.percentile(50), 1),
            _fmt(p99, 1),
            _fmt(run.lateness()[-1] if run.firings else None, 1),
            _status(p99 < TARGET_P99_MS if measured and p99 is not None else None),
        ]
        lines.append("| " + " | ".join(cell or "—" for cell in row) + " |")
    return "\n".join(lines)


def _outliers(run: StoreRun) -> list[str]:
    """The latest firings, with how many other schedules were due shortly before each."""
    offsets = sorted(f.due_offset_s for f in run.firings)
    out = []
    for firing in sorted(run.firings, key=lambda f: f.lateness_ms, reverse=True)[:OUTLIERS]:
        crowd = sum(
            1 for t in offsets if 0 < (firing.due_offset_s - t) * 1e3 <= CROWD_MS
        )  # due in the CROWD_MS before it (itself excluded)
        out.append(
            f"{firing.lateness_ms:,.1f} ms late, due at +{firing.due_offset_s:.3f} s; "
            f"{crowd} other(s) due in the {CROWD_MS:g} ms before it"
        )
    return out


def machine_facts() -> list[tuple[str, str]]:
    """run_core's facts, plus the scheduler's version."""
    return [*core_machine_facts(), ("flowrra-scheduler", _scheduler_version())]


def _scheduler_version() -> str:
    try:
        import flowrra_scheduler
    except ImportError:
        return "not installed"
    return str(flowrra_scheduler.__version__)


def render(runs: list[StoreRun], mode: Mode, facts: list[tuple[str, str]], seed: int) -> str:
    out = [
        "# flowrra-scheduler: firing lateness of one-time schedules",
        "",
        f"Mode: {mode.description}; seed {seed}.",
        "",
        *(f"- {name}: {value}" for name, value in facts),
        "",
        build_table(runs),
        "",
        "Lateness: `datetime.now(UTC) - due_at` in an `on_fire` callback, which the scheduler "
        "calls after it has claimed the occurrence in the store and submitted the task; "
        "nearest-rank percentiles over every occurrence.",
    ]
    for run in runs:
        if not run.firings and not run.notes:
            continue
        summary = run.summary()
        out += [
            "",
            f"{run.name} ({run.url}):",
            "",
            f"- setup {_fmt(run.setup_s, 1)} s; the window opened {_fmt(run.lead_s, 2)} s "
            f"after it; run {_fmt(run.run_s, 1)} s",
            f"- p90 {_fmt(summary['p90_ms'], 1)} ms, mean {_fmt(summary['mean_ms'], 1)} ms, "
            f"min {_fmt(summary['min_ms'], 1)} ms; Scheduler.fired "
            f"{summary['scheduler_fired_counter']}; due_at other than the run_at given: "
            f"{summary['due_at_mismatches']}",
            f"- store afterwards: {run.store_check}",
            *(f"- latest: {line}" for line in _outliers(run)),
            *(f"- note: {note}" for note in run.notes),
        ]
    problems = [p for run in runs for p in run.problems]
    if problems:
        out += ["", "Problems (stores not measured):", "", *(f"- {p}" for p in problems)]
    return "\n".join(out) + "\n"


# -- main ----------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _stores(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(STORES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"stores are a comma-separated subset of {','.join(STORES)}, got {text!r}"
        )
    return list(dict.fromkeys(names))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="100 schedules within 10 s (a smoke run)"
    )
    parser.add_argument("--n", type=_positive_int, help="schedules per store (default 1,000)")
    parser.add_argument(
        "--window", type=_positive_float, help="seconds the due times spread over (default 60)"
    )
    parser.add_argument(
        "--lead",
        type=_positive_float,
        default=5.0,
        help="seconds, at least, from the end of the setup to the window (default 5)",
    )
    parser.add_argument(
        "--grace",
        type=_positive_float,
        default=10.0,
        help="seconds after the window to wait for the last firing (default 10)",
    )
    parser.add_argument(
        "--stores",
        type=_stores,
        default=list(STORES),
        help="comma-separated: sqlite,postgresql (default both)",
    )
    parser.add_argument("--postgresql-url", default=DEFAULT_POSTGRESQL_URL)
    parser.add_argument("--seed", type=int, help="for the due times (default: random)")
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = 100 if args.quick else 1_000
    if args.window is None:
        args.window = 10.0 if args.quick else 60.0
    if args.n > args.window * 1_000_000:
        parser.error("--n cannot exceed the microseconds in --window (due times are distinct)")
    return args


async def run_all(args: argparse.Namespace, mode: Mode, seed: int) -> list[StoreRun]:
    rng = random.Random(seed)
    runs = []
    for name in args.stores:
        run = StoreRun(name)
        runs.append(run)
        tag = uuid.uuid4().hex[:8]
        if name == "sqlite":
            with tempfile.TemporaryDirectory(prefix="flowrra-bench-") as tmp:
                await run_store(run, f"sqlite:///{tmp}/schedules.db", mode, rng)
        else:
            url = _with_prefix(args.postgresql_url, f"bench_{tag}_")
            await run_store(run, url, mode, rng)
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name = "quick" if args.quick else "full"
    output = RESULTS / ("scheduler-quick.md" if args.quick else "scheduler.md")
    mode = Mode(name, args.n, args.window, args.lead, args.grace, output)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    facts = machine_facts()

    runs = asyncio.run(run_all(args, mode, seed))

    text = render(runs, mode, facts, seed)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    mode.output.write_text(text, encoding="utf-8")
    raw = {
        "mode": mode.name,
        "n": mode.n,
        "window_s": mode.window,
        "lead_s": mode.lead,
        "seed": seed,
        "target_p99_ms": TARGET_P99_MS,
        "machine": dict(facts),
        "stores": [run.summary() for run in runs],
    }
    mode.output.with_suffix(".json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {mode.output.relative_to(BENCH.parent)} and its .json")
    return 1 if any(run.problems for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
