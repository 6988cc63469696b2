"""Compare this repository's flowrra with flowrra 0.1.8 on the in-memory core workloads.

Run with the project's interpreter::

    python bench/run_core.py            # full: N=100,000 x 3 runs, 2,000 round trips, RSS
    python bench/run_core.py --quick    # N=10,000, 500 round trips, no RSS

0.1.8 has the same import name, so it lives in its own virtualenv,
``bench/.venvs/flowrra-0.1.8``, created here when missing. Each side runs
``core_workload.py`` in a subprocess of its own interpreter: once for throughput and
latency, once more (``--rss``) for peak memory, so that measurement starts from a clean
process. The Markdown table goes to stdout and, with the machine facts, to
``bench/results/core.md`` (``core-quick.md`` for ``--quick``). Missed targets are reported,
not failed: the exit status is 0 unless a workload could not be run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
WORKLOAD = BENCH / "core_workload.py"
RESULTS = BENCH / "results"
LEGACY = "0.1.8"
LEGACY_VENV = BENCH / ".venvs" / f"flowrra-{LEGACY}"
LEGACY_PYTHON = LEGACY_VENV / "bin" / "python"

TARGET_THROUGHPUT = 100_000  # tasks/s, at least
#: The issue sets 100,000 tasks/s as "5x" a 0.1.8 that does 20,000/s on this machine class;
#: a loaded or slower machine moves both, so the ratio is judged too.
TARGET_THROUGHPUT_RATIO = 5.0
TARGET_P99_US = 1_000  # microseconds, below
TARGET_RSS_MB = 150  # MB after 1,000,000 tasks, below

MISSING = "n/a"


class BenchError(RuntimeError):
    """A workload could not be run or its output could not be read."""


@dataclass
class Mode:
    name: str
    n: int
    runs: int
    latency_n: int
    rss: bool
    output: Path

    @property
    def description(self) -> str:
        rss = "peak RSS after 1,000,000 tasks" if self.rss else "RSS skipped"
        return (
            f"{self.name}: throughput N={self.n:,} x {self.runs} runs (median); "
            f"latency {self.latency_n:,} round trips after 200 warm-up; {rss}"
        )


@dataclass
class Side:
    """One flowrra under test: its interpreter and what its workloads reported."""

    label: str
    python: Path
    report: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # workloads that could not be run
    notes: list[str] = field(default_factory=list)  # lost or failed tasks

    def metric(self, section: str, key: str) -> float | None:
        value = self.report.get(section, {}).get(key)
        return float(value) if isinstance(value, int | float) else None


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _clean_env() -> dict[str, str]:
    """The environment for child interpreters, without paths that could mix the two
    flowrras."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(name, None)
    return env


def _installed_version(python: Path) -> str | None:
    if not python.exists():
        return None
    proc = subprocess.run(
        [str(python), "-c", "import flowrra; print(flowrra.__version__)"],
        capture_output=True,
        text=True,
        cwd=BENCH,
        env=_clean_env(),
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_legacy_venv() -> None:
    """Create ``bench/.venvs/flowrra-0.1.8`` with flowrra 0.1.8 unless it is already there.

    The venv is made from this interpreter, so both sides run the same Python version.
    """
    if _installed_version(LEGACY_PYTHON) == LEGACY:
        return
    if not LEGACY_PYTHON.exists():
        log(f"creating {LEGACY_VENV.relative_to(BENCH.parent)}")
        LEGACY_VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(LEGACY_VENV)], check=True)
    log(f"installing flowrra=={LEGACY} into {LEGACY_VENV.relative_to(BENCH.parent)}")
    subprocess.run(
        [str(LEGACY_PYTHON), "-m", "pip", "install", "--quiet", f"flowrra=={LEGACY}"],
        check=True,
        env=_clean_env(),
    )
    found = _installed_version(LEGACY_PYTHON)
    if found != LEGACY:
        raise BenchError(f"{LEGACY_PYTHON} imports flowrra {found}, expected {LEGACY}")


def run_workload(side: Side, args: list[str]) -> dict[str, Any]:
    """Run ``core_workload.py`` under ``side``'s interpreter; its JSON report."""
    log(f"{side.label}: core_workload.py {' '.join(args)}")
    proc = subprocess.run(
        [str(side.python), str(WORKLOAD), *args],
        capture_output=True,
        text=True,
        cwd=BENCH,
        env=_clean_env(),
        check=False,
    )
    if proc.stderr.strip():
        print(proc.stderr.rstrip(), file=sys.stderr)
    if proc.returncode != 0:
        raise BenchError(
            f"{side.label}: core_workload.py {' '.join(args)} exited {proc.returncode}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise BenchError(f"{side.label}: core_workload.py printed nothing")
    try:
        report: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise BenchError(f"{side.label}: unreadable output {lines[-1]!r}: {exc}") from None
    return report


def measure(side: Side, mode: Mode, expect_legacy: bool) -> None:
    runs: list[list[str]] = [
        ["--n", str(mode.n), "--runs", str(mode.runs), "--latency-n", str(mode.latency_n)]
    ]
    if mode.rss:
        runs.append(["--rss"])
    for args in runs:
        try:
            report = run_workload(side, args)
        except BenchError as exc:
            side.problems.append(str(exc))
            continue
        version = report.get("flowrra_version")
        if (version == LEGACY) != expect_legacy:
            side.problems.append(f"{side.label}: the workload imported flowrra {version}")
            continue
        side.report.update(report)
    for section in ("throughput", "latency", "memory"):
        data = side.report.get(section, {})
        lost, failed = data.get("lost", 0), data.get("failed", 0)
        if lost or failed:
            side.notes.append(f"{side.label}: {section}: {lost} lost, {failed} failed")


# -- the table -----------------------------------------------------------------------------


def _fmt(value: float | None, decimals: int) -> str:
    return MISSING if value is None else f"{value:,.{decimals}f}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None or denominator == 0:
        return MISSING
    return f"{numerator / denominator:.2f}x"


def _status(ok: bool | None) -> str:
    if ok is None:
        return "not measured"
    return "met" if ok else "**NOT met**"


def build_table(ours: Side, legacy: Side, mode: Mode) -> str:
    version = ours.report.get("flowrra_version", "?")
    header = [
        "Metric",
        f"flowrra {version} (this repo)",
        f"flowrra {LEGACY}",
        "Ratio",
        "Target",
        "Status",
    ]
    rows: list[list[str]] = []

    tput, tput_old = (
        ours.metric("throughput", "tasks_per_s"),
        legacy.metric("throughput", "tasks_per_s"),
    )
    rows.append(
        [
            "throughput (tasks/s)",
            _fmt(tput, 0),
            _fmt(tput_old, 0),
            _ratio(tput, tput_old),
            f">= {TARGET_THROUGHPUT:,} tasks/s",
            _status(None if tput is None else tput >= TARGET_THROUGHPUT),
        ]
    )
    ratio = None if tput is None or not tput_old else tput / tput_old
    rows.append(
        [
            "throughput ratio, same run",
            "",
            "",
            _ratio(tput, tput_old),
            f">= {TARGET_THROUGHPUT_RATIO:g}x flowrra {LEGACY}",
            _status(None if ratio is None else ratio >= TARGET_THROUGHPUT_RATIO),
        ]
    )

    p50, p50_old = ours.metric("latency", "p50_us"), legacy.metric("latency", "p50_us")
    rows.append(["latency p50 (µs)", _fmt(p50, 1), _fmt(p50_old, 1), _ratio(p50_old, p50), "", ""])

    p99, p99_old = ours.metric("latency", "p99_us"), legacy.metric("latency", "p99_us")
    rows.append(
        [
            "latency p99 (µs)",
            _fmt(p99, 1),
            _fmt(p99_old, 1),
            _ratio(p99_old, p99),
            f"< {TARGET_P99_US:,} µs",
            _status(None if p99 is None else p99 < TARGET_P99_US),
        ]
    )

    lost, lost_old = ours.metric("latency", "lost"), legacy.metric("latency", "lost")
    rows.append(
        [
            f"lost round trips (of {mode.latency_n:,}, 5 s timeout)",
            _fmt(lost, 0),
            _fmt(lost_old, 0),
            "",
            "",
            "",
        ]
    )

    if mode.rss:
        rss, rss_old = ours.metric("memory", "peak_rss_mb"), legacy.metric("memory", "peak_rss_mb")
        rss_row = [_fmt(rss, 1), _fmt(rss_old, 1), _ratio(rss_old, rss)]
        rss_status = _status(None if rss is None else rss < TARGET_RSS_MB)
    else:
        rss_row, rss_status = ["skipped", "skipped", ""], "not measured"
    rows.append(["peak RSS after 1M tasks (MB)", *rss_row, f"< {TARGET_RSS_MB:,} MB", rss_status])

    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---:", "---:", "---:", "---", "---"]) + "|",
    ]
    lines += ["| " + " | ".join(cell or "—" for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_facts() -> list[tuple[str, str]]:
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("nproc", str(nproc)),
        ("cpu", cpu),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("platform", platform.platform()),
        ("load average at start", load),
    ]


def _settings(side: Side) -> str:
    parts = []
    for section in ("throughput", "latency", "memory"):
        settings = side.report.get(section, {}).get("settings")
        if settings:
            parts.append(f"{section}: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    return "; ".join(parts) or MISSING


def render(ours: Side, legacy: Side, mode: Mode, facts: list[tuple[str, str]]) -> str:
    tput_runs = {
        side.label: ", ".join(
            f"{r:,.0f}" for r in side.report.get("throughput", {}).get("tasks_per_s_runs", [])
        )
        for side in (ours, legacy)
    }
    out = [
        "# Flowrra core benchmark (in-memory broker and result store)",
        "",
        f"Mode: {mode.description}.",
        "",
        *(f"- {name}: {value}" for name, value in facts),
        "",
        build_table(ours, legacy, mode),
        "",
        "Ratio: ours / 0.1.8 for throughput, 0.1.8 / ours for latency and RSS, so > 1 means "
        "this repository is better. Targets apply to this repository's flowrra.",
        "",
        "Throughput runs (tasks/s): "
        + "; ".join(f"{label}: {runs or MISSING}" for label, runs in tput_runs.items()),
        "",
        "Settings:",
        "",
        *(f"- {side.label}: {_settings(side)}" for side in (ours, legacy)),
    ]
    notes = ours.notes + legacy.notes
    if notes:
        out += ["", "Lost or failed tasks:", "", *(f"- {n}" for n in notes)]
    problems = ours.problems + legacy.problems
    if problems:
        out += ["", "Problems (workloads not run):", "", *(f"- {p}" for p in problems)]
    return "\n".join(out) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="N=10,000, 500 round trips, no RSS (a fast check)"
    )
    parser.add_argument("--runs", type=int, default=3, help="throughput runs per side (median)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        mode = Mode("quick", 10_000, args.runs, 500, False, RESULTS / "core-quick.md")
    else:
        mode = Mode("full", 100_000, args.runs, 2_000, True, RESULTS / "core.md")
    facts = machine_facts()

    ours = Side("this repo", Path(sys.executable))
    legacy = Side(f"flowrra {LEGACY}", LEGACY_PYTHON)
    try:
        ensure_legacy_venv()
    except (BenchError, subprocess.CalledProcessError, OSError) as exc:
        legacy.problems.append(f"could not set up {LEGACY_VENV}: {exc}")
    measure(ours, mode, expect_legacy=False)
    if not legacy.problems:
        measure(legacy, mode, expect_legacy=True)

    text = render(ours, legacy, mode, facts)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    mode.output.write_text(text, encoding="utf-8")
    raw = {"mode": mode.name, "machine": dict(facts), "ours": ours.report, "legacy": legacy.report}
    mode.output.with_suffix(".json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {mode.output.relative_to(BENCH.parent)} and its .json")
    return 1 if ours.problems or legacy.problems else 0


if __name__ == "__main__":
    sys.exit(main())
