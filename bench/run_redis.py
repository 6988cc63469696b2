"""Compare this repository's flowrra on Redis with flowrra 0.1.8, arq, saq, taskiq and dramatiq.

Run with the project's interpreter::

    python bench/run_redis.py                 # full: N=20,000 x 3 runs, 500 round trips
    python bench/run_redis.py --quick         # N=2,000 x 1 run, 100 round trips
    python bench/run_redis.py --only arq,saq  # a subset (names: see --help)
    python bench/run_redis.py --latency       # round trips only: -c 1, 4, 100 x asyncio, uvloop
    python bench/run_redis.py --flowrra-one-db  # flowrra's broker and backend on database 12

Every system has a virtualenv of its own under ``bench/.venvs/<name>``, created here when
missing and reused after (``--upgrade`` reinstalls the latest releases); this repository's
flowrra uses the interpreter that runs this driver (the project venv, or ``nox -s bench``'s),
with ``packages/flowrra-redis`` installed into it (editable) if it is not there yet,
when that directory exists, and the packages' sources compiled to bytecode (as a pip
install does) so that worker starts do not compile them. Each system runs
``redis_workload.py`` under its own interpreter, which starts the system's own worker
command as a subprocess. Redis databases 12 (queue) and
13 (results) are flushed before and after each system; no other database is touched. The
``--flowrra-one-db`` puts this repository's flowrra's broker and
backend both on database 12 (``BENCH_FLOWRRA_URL``), so that a submit is one script; the
peers stay as they are (their single enqueue writes to database 12 only). The
Markdown table goes to stdout and, with the machine facts, to ``bench/results/redis.md``
(``redis-quick.md`` for ``--quick``, ``redis-latency.md`` for ``--latency``). Missed
targets are reported, not failed: the exit status is 0 unless a workload could not be run
(flowrra without its Redis plugin is "not available", which is not a failure).

``--latency`` measures only the round trips, for flowrra and saq (arq with ``--only``), at
concurrency 1, 4 and 100 on asyncio and on uvloop (uvloop is installed into each
interpreter), each run a fresh worker; its targets are the headline's (``-c 100`` on
uvloop).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from run_core import machine_facts

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORKLOAD = BENCH / "redis_workload.py"
RESULTS = BENCH / "results"
LOGS = RESULTS / "logs"
VENVS = BENCH / ".venvs"
FLOWRRA_REDIS = ROOT / "packages" / "flowrra-redis"
DEFAULT_REDIS = "redis://127.0.0.1:6379"
DBS = (12, 13)  # queue, results: the only databases this benchmark touches

TARGET_PROCESS = 10_000  # tasks/s, at least
TARGET_WORKER_CPU_US = 100  # per task, at most
TARGET_ENQUEUE_SINGLE = 10_000  # tasks/s, at least
TARGET_ENQUEUE_BATCH = 100_000  # tasks/s, at least
TARGET_P50_MS = 0.5  # at most
TARGET_P99_MS = 1.5  # at most
TARGET_LATENCY_SPREAD = 0.2  # -c 4 and -c 100 medians at most this far apart (fraction)

MISSING = "n/a"
OURS = "flowrra"

#: The latency matrix (``--latency``): every system at each concurrency on each loop. Its
#: systems are those whose worker concurrency and event loop can both be set: taskiq's worker
#: runs uvloop whenever it is installed, dramatiq's runs threads, 0.1.8's has no CLI. arq
#: only with ``--only``: its worker polls every 0.5 s (``poll_delay``), so each of its round
#: trips takes 0.5 s and its 18 cells take 25 minutes.
LATENCY_SYSTEMS = (OURS, "arq", "saq")
LATENCY_DEFAULT = (OURS, "saq")
LATENCY_LOOPS = ("asyncio", "uvloop")
LATENCY_CONCURRENCY = (1, 4, 100)
HEADLINE = ("uvloop", 100)  # the README's latency figure


class BenchError(RuntimeError):
    """A workload could not be run or its output could not be read."""


@dataclass
class System:
    """One task queue under test: where it runs and what it reported."""

    name: str
    label: str
    venv: Path | None  # None: the project venv
    requirements: list[str]
    modules: list[str]  # importable when the venv is ready
    report: dict[str, Any] = field(default_factory=dict)
    unavailable: str | None = None  # flowrra without its Redis plugin
    problems: list[str] = field(default_factory=list)

    @property
    def python(self) -> Path:
        if self.venv is None:
            # The interpreter running this driver is the project's: `nox -s bench`'s session
            # venv (both packages installed) or the venv you run it with.
            return Path(sys.executable)
        return self.venv / "bin" / "python"

    def get(self, *path: str) -> float | None:
        value: Any = self.report
        for key in path:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return float(value) if isinstance(value, int | float) else None


def make_systems() -> list[System]:
    return [
        System(OURS, "flowrra (this repo)", None, [], ["flowrra"]),
        System(
            "flowrra-0.1.8",
            "flowrra",
            VENVS / "flowrra-0.1.8",
            ["flowrra[redis]==0.1.8"],
            ["flowrra", "redis"],
        ),
        System("arq", "arq", VENVS / "arq", ["arq"], ["arq"]),
        # saq 0.26 imports typing_extensions without declaring it.
        System(
            "saq",
            "saq",
            VENVS / "saq",
            ["saq[redis]", "typing_extensions"],
            ["saq", "redis", "typing_extensions"],
        ),
        System("taskiq", "taskiq", VENVS / "taskiq", ["taskiq", "taskiq-redis"], ["taskiq_redis"]),
        System(
            "dramatiq", "dramatiq", VENVS / "dramatiq", ["dramatiq[redis]"], ["dramatiq", "redis"]
        ),
    ]


@dataclass
class Mode:
    name: str
    n: int
    runs: int
    latency_n: int
    warmup: int
    output: Path

    @property
    def description(self) -> str:
        return (
            f"{self.name}: N={self.n:,} tasks x {self.runs} run(s) (medians); latency "
            f"{self.latency_n:,} sequential round trips after {self.warmup} warm-up, 5 s timeout"
        )

    def timeout(self) -> float:
        """Seconds one system's workload may take before it is killed (a hang guard)."""
        per_run = self.n / 50 + self.n / 200 + 60  # processing deadline, slow enqueues, startup
        return 300 + self.runs * per_run + (self.latency_n + self.warmup) * 1.0


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- Redis, spoken directly (the driver needs no client library) -----------------------------


class RedisConnection:
    """Just enough RESP for SELECT, FLUSHDB, PING and INFO."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=10
        )
        self.buf = self.sock.makefile("rb")
        if parts.password:
            self.command("AUTH", *([parts.username] if parts.username else []), parts.password)

    def command(self, *args: str | int) -> Any:
        encoded = [str(a).encode() for a in args]
        payload = b"*%d\r\n" % len(encoded) + b"".join(
            b"$%d\r\n%s\r\n" % (len(a), a) for a in encoded
        )
        self.sock.sendall(payload)
        return self._reply()

    def _reply(self) -> Any:
        line = self.buf.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise BenchError(f"Redis: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.buf.read(size + 2)[:-2].decode()
        if kind == b"*":
            return [self._reply() for _ in range(int(rest))]
        raise BenchError(f"Redis: unexpected reply {line!r}")

    def close(self) -> None:
        self.buf.close()
        self.sock.close()


def flush_dbs(url: str) -> None:
    """FLUSHDB on the benchmark's two databases, and only on them."""
    conn = RedisConnection(url)
    try:
        for db in DBS:
            conn.command("SELECT", db)
            conn.command("FLUSHDB")
    finally:
        conn.close()


def _info(conn: RedisConnection, section: str) -> dict[str, str]:
    text = str(conn.command("INFO", section))
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def redis_facts(url: str) -> str:
    """Version, address, and the server's CPU use over one idle second before the run (the
    Redis CPU column includes whatever other clients make it do meanwhile)."""
    conn = RedisConnection(url)
    try:
        version = _info(conn, "server").get("redis_version", "?")

        def cpu() -> float:
            info = _info(conn, "cpu")
            return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

        before = cpu()
        time.sleep(1.0)
        background = (cpu() - before) * 1e3
        clients = _info(conn, "clients").get("connected_clients", "?")
    finally:
        conn.close()
    return (
        f"{version} at {urlsplit(url).netloc}; databases {DBS[0]} (queue) and {DBS[1]} "
        f"(results), flushed between systems; background CPU before the run "
        f"{background:.1f} ms/s with {clients} clients connected"
    )


# -- virtualenvs -------------------------------------------------------------------------------


def _clean_env(redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
        env.pop(name, None)
    env["BENCH_REDIS_URL"] = redis_url
    return env


def _imports(python: Path, modules: list[str], env: dict[str, str]) -> bool:
    if not python.exists():
        return False
    proc = subprocess.run(
        [str(python), "-c", "; ".join(f"import {m}" for m in modules)],
        capture_output=True,
        cwd=BENCH,
        env=env,
        check=False,
        timeout=120,
    )
    return proc.returncode == 0


def _pip(python: Path, args: list[str], env: dict[str, str]) -> None:
    log(f"{python.parent.parent.name}: pip install {' '.join(args)}")
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=900,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise BenchError(f"pip install {' '.join(args)} failed:\n{tail}")


def ensure_venv(system: System, upgrade: bool, env: dict[str, str]) -> None:
    """Create the system's virtualenv (from this interpreter, so every system runs the same
    Python) and install its packages from PyPI, unless they already import."""
    assert system.venv is not None
    if not system.python.exists():
        log(f"creating {system.venv.relative_to(ROOT)}")
        system.venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(system.venv)], check=True, timeout=300)
    if upgrade or not _imports(system.python, system.modules, env):
        _pip(system.python, [*(["--upgrade"] if upgrade else []), *system.requirements], env)
    if not _imports(system.python, system.modules, env):
        raise BenchError(f"{system.venv}: cannot import {', '.join(system.modules)}")


def ensure_flowrra_redis(system: System, env: dict[str, str]) -> None:
    """Install packages/flowrra-redis into the project venv (editable) when it exists and the
    Redis plugin does not already load; a failure makes the row "not available"."""
    if not FLOWRRA_REDIS.is_dir():
        return
    probe = "from importlib.metadata import version; version('flowrra-redis')"
    proc = subprocess.run(
        [str(system.python), "-c", probe], capture_output=True, env=env, check=False, timeout=60
    )
    if proc.returncode != 0:
        try:
            _pip(system.python, ["-e", str(FLOWRRA_REDIS)], env)
        except (BenchError, subprocess.TimeoutExpired) as exc:
            log(f"flowrra: {exc}")
    # An editable install has no bytecode until something writes it (and
    # PYTHONDONTWRITEBYTECODE may forbid that): every worker start would compile the
    # sources, which a pip-installed flowrra (and the peers) never do.
    sources = [str(p / "src") for p in (ROOT / "packages").iterdir() if (p / "src").is_dir()]
    subprocess.run(
        [str(system.python), "-m", "compileall", "-q", *sources, str(BENCH / "redis_apps")],
        capture_output=True,
        env=env,
        check=False,
        timeout=300,
    )


# -- running a workload ------------------------------------------------------------------------


def _kill_groups(pidfile: Path) -> None:
    """SIGKILL every worker process group a workload recorded (normally already gone)."""
    with contextlib.suppress(OSError):
        for line in pidfile.read_text().split():
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.killpg(int(line), signal.SIGKILL)


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the workload (it stops its worker and flushes), SIGKILL its group after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


def run_workload(
    system: System, args: list[str], env: dict[str, str], timeout: float
) -> dict[str, Any]:
    """Run ``redis_workload.py`` under ``system``'s interpreter; its JSON report."""
    with tempfile.NamedTemporaryFile("w", prefix="bench-redis-", suffix=".pids") as pids:
        pidfile = Path(pids.name)
        command = [
            str(system.python),
            str(WORKLOAD),
            "--system",
            system.name,
            "--log-dir",
            str(LOGS),
            "--pidfile",
            str(pidfile),
            *args,
        ]
        proc = subprocess.Popen(
            command,
            cwd=BENCH,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{system.name}: timed out after {timeout:.0f} s") from None
        finally:
            if proc.poll() is None:  # timed out or interrupted: let it stop its worker first
                _stop_group(proc)
            _kill_groups(pidfile)
    if stderr.strip():
        print(stderr.rstrip(), file=sys.stderr)
    if proc.returncode != 0:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        raise BenchError(f"{system.name}: redis_workload.py exited {proc.returncode}: {last}")
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise BenchError(f"{system.name}: redis_workload.py printed nothing")
    try:
        report: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise BenchError(f"{system.name}: unreadable output {lines[-1]!r}: {exc}") from None
    return report


def prepare(system: System, upgrade: bool, env: dict[str, str]) -> bool:
    """Set up the system's interpreter; False (with a problem noted) when that failed."""
    try:
        if system.venv is None:
            ensure_flowrra_redis(system, env)
            if "uvloop" in system.modules and not _imports(system.python, ["uvloop"], env):
                _pip(system.python, ["uvloop"], env)
        else:
            ensure_venv(system, upgrade, env)
    except (BenchError, subprocess.SubprocessError, OSError) as exc:
        system.problems.append(f"{system.name}: could not set up its virtualenv: {exc}")
        return False
    return True


def measure(
    system: System, mode: Mode, upgrade: bool, redis_url: str, one_db: bool = False
) -> None:
    env = _clean_env(redis_url)
    if one_db and system.name == OURS:
        env["BENCH_FLOWRRA_URL"] = f"{redis_url}/{DBS[0]}"
    if not prepare(system, upgrade, env):
        return
    try:
        system.report = run_workload(system, ["--check"], env, timeout=120)
    except BenchError as exc:
        if system.name == OURS:
            reason = str(exc).split(": ", 2)[-1] or "import failed"
            if not FLOWRRA_REDIS.is_dir():
                reason = f"packages/flowrra-redis does not exist; {reason}"
            system.unavailable = reason
            log(f"flowrra not available: {system.unavailable}")
        else:
            system.problems.append(str(exc))
        return
    workload_args = [
        *("--n", str(mode.n), "--runs", str(mode.runs)),
        *("--latency-n", str(mode.latency_n), "--warmup", str(mode.warmup)),
    ]
    log(f"{system.name} {system.report.get('version', '?')}: {' '.join(workload_args)}")
    started = time.monotonic()
    try:
        system.report = run_workload(system, workload_args, env, mode.timeout())
    except BenchError as exc:
        system.problems.append(str(exc))
    log(f"{system.name}: done in {time.monotonic() - started:.0f} s")


# -- the tables --------------------------------------------------------------------------------


def _fmt(value: float | None, decimals: int = 0) -> str:
    return MISSING if value is None else f"{value:,.{decimals}f}"


def _ms(value: float | None) -> str:
    if value is None:
        return MISSING
    return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"


def _ratio(better_if_higher: bool, ours: float | None, peer: float | None) -> str:
    if ours is None or peer is None or ours == 0 or peer == 0:
        return MISSING
    return f"{(ours / peer) if better_if_higher else (peer / ours):.2f}x"


def _status(ok: bool | None) -> str:
    if ok is None:
        return "not measured"
    return "met" if ok else "**NOT met**"


def _table(header: list[str], align: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cell or "—" for cell in row) + " |" for row in rows]
    return lines


# (column, path in the report, decimals, higher is better)
METRICS: list[tuple[str, tuple[str, ...], int, bool]] = [
    ("enqueue/s single", ("enqueue_single", "tasks_per_s"), 0, True),
    ("enqueue/s batch", ("enqueue_batch", "tasks_per_s"), 0, True),
    ("process/s", ("process", "tasks_per_s"), 0, True),
    ("worker CPU µs/task", ("process", "worker_cpu_us_per_task"), 0, False),
    ("Redis CPU µs/task", ("redis_cpu_us_per_task",), 0, False),
    ("latency p50 ms", ("latency", "p50_ms"), -1, False),
    ("p99 ms", ("latency", "p99_ms"), -1, False),
]


def _label(system: System) -> str:
    version = system.report.get("version")
    if not version:
        return system.label
    if system.name == OURS:
        return f"flowrra {version} (this repo)"
    return f"{system.label} {version}"


def _lost(system: System) -> str:
    latency = system.report.get("latency")
    if not isinstance(latency, dict):
        return MISSING
    text = f"{latency.get('lost', 0)} / {latency.get('n', '?')}"
    if latency.get("aborted_after_lost"):
        text += f" (stopped; {latency.get('measured', 0)} measured)"
    if latency.get("failed"):
        text += f", {latency['failed']} failed"
    return text


def main_table(systems: list[System]) -> list[str]:
    header = ["system", *(m[0] for m in METRICS), "lost"]
    rows: list[list[str]] = []
    for system in systems:
        if system.unavailable is not None:
            rows.append([_label(system), f"not available ({system.unavailable})"] + [""] * 7)
            continue
        if "process" not in system.report and "enqueue_single" not in system.report:
            rows.append([_label(system), "could not run (see Problems)"] + [""] * 7)
            continue
        cells = [_label(system)]
        for _, path, decimals, _ in METRICS:
            value = system.get(*path)
            cells.append(_ms(value) if decimals < 0 else _fmt(value, decimals))
        cells.append(_lost(system))
        rows.append(cells)
    return _table(header, ["---", *["---:"] * (len(header) - 1)], rows)


def ratio_table(ours: System, peers: list[System]) -> list[str]:
    header = ["flowrra vs", *(m[0] for m in METRICS)]
    rows = []
    for peer in peers:
        row = [_label(peer)]
        for _, path, _, higher in METRICS:
            row.append(_ratio(higher, ours.get(*path), peer.get(*path)))
        rows.append(row)
    return _table(header, ["---", *["---:"] * len(METRICS)], rows)


def target_table(ours: System) -> list[str]:
    def at_least(value: float | None, target: float) -> bool | None:
        return None if value is None else value >= target

    def at_most(value: float | None, target: float) -> bool | None:
        return None if value is None else value <= target

    single = ours.get("enqueue_single", "tasks_per_s")
    batch = ours.get("enqueue_batch", "tasks_per_s")
    process = ours.get("process", "tasks_per_s")
    cpu = ours.get("process", "worker_cpu_us_per_task")
    p50, p99 = ours.get("latency", "p50_ms"), ours.get("latency", "p99_ms")
    lost = ours.get("latency", "lost")
    if lost is not None and ours.report.get("latency", {}).get("aborted_after_lost"):
        lost = float("inf")
    rows = [
        ["process/s", f">= {TARGET_PROCESS:,}", _fmt(process), at_least(process, TARGET_PROCESS)],
        [
            "worker CPU µs/task",
            f"<= {TARGET_WORKER_CPU_US}",
            _fmt(cpu),
            at_most(cpu, TARGET_WORKER_CPU_US),
        ],
        [
            "enqueue/s single",
            f">= {TARGET_ENQUEUE_SINGLE:,}",
            _fmt(single),
            at_least(single, TARGET_ENQUEUE_SINGLE),
        ],
        [
            "enqueue/s batch",
            f">= {TARGET_ENQUEUE_BATCH:,}",
            _fmt(batch),
            at_least(batch, TARGET_ENQUEUE_BATCH),
        ],
        ["latency p50 ms", f"<= {TARGET_P50_MS}", _ms(p50), at_most(p50, TARGET_P50_MS)],
        ["latency p99 ms", f"<= {TARGET_P99_MS}", _ms(p99), at_most(p99, TARGET_P99_MS)],
        ["lost", "0", _lost(ours) if ours.report else MISSING, at_most(lost, 0)],
    ]
    out = [[metric, target, value, _status(ok)] for metric, target, value, ok in rows]
    return _table(["metric", "target", "flowrra", "status"], ["---", "---", "---:", "---"], out)


def detail_table(systems: list[System]) -> list[str]:
    header = [
        "system",
        "start → 1st result s",
        "steady process/s",
        "steady worker CPU µs/task",
        "Redis CPU µs/task enqueue + process",
        "worker log lines/task",
        "process/s per run",
    ]
    rows = []
    for system in systems:
        if "process" not in system.report:
            continue
        enqueue = system.get("enqueue_single", "redis_cpu_us_per_task")
        process = system.get("process", "redis_cpu_us_per_task")
        per_run = system.report["process"].get("tasks_per_s_runs", [])
        rows.append(
            [
                _label(system),
                _fmt(system.get("process", "first_result_s"), 2),
                _fmt(system.get("process", "steady_tasks_per_s")),
                _fmt(system.get("process", "steady_worker_cpu_us_per_task")),
                f"{_fmt(enqueue)} + {_fmt(process)}",
                _fmt(system.get("process", "worker_log_lines_per_task"), 2),
                ", ".join(f"{v:,.0f}" for v in per_run) or MISSING,
            ]
        )
    return _table(header, ["---", *["---:"] * (len(header) - 1)], rows)


def _settings(system: System) -> str:
    settings = system.report.get("settings") or {}
    parts = [f"{k}: {v}" for k, v in settings.items()]
    parts.append(f"batch enqueue: {system.report.get('batch_api', MISSING)}")
    parts.append(f"hiredis: {system.report.get('hiredis') or 'no'}")
    return "; ".join(parts)


def render(systems: list[System], mode: Mode, facts: list[tuple[str, str]], redis: str) -> str:
    ours = next((s for s in systems if s.name == OURS), None)
    peers = [s for s in systems if s.name != OURS]
    out = [
        "# Flowrra on Redis vs peer task queues",
        "",
        f"Mode: {mode.description}.",
        "",
        *(f"- {name}: {value}" for name, value in facts),
        f"- redis: {redis}",
        "",
        *main_table(systems),
        "",
        "One worker process per system, each with its own worker command and default "
        "concurrency (see Settings). enqueue: one awaited enqueue at a time / the batch API "
        "(n/a: none), no worker running. process: the N queued tasks, from the worker "
        "process's start to the last stored result. worker CPU: user + sys of the worker's "
        "process group over that time, / N. Redis CPU: `INFO cpu` delta over the single "
        "enqueue and the processing, / N. latency: sequential enqueue → result round trips "
        "with the worker running; lost = no result within 5 s. All medians over runs, except "
        "latency (one run).",
    ]
    if ours is not None and ours.report.get("process") and peers:
        out += [
            "",
            "## Ratios",
            "",
            *ratio_table(ours, peers),
            "",
            "flowrra / peer for rates, peer / flowrra for CPU and latency: > 1 means flowrra "
            "is better.",
        ]
    if ours is not None:
        out += ["", "## Targets (this repository's flowrra)", "", *target_table(ours)]
    detail = detail_table(systems)
    if len(detail) > 2:
        out += [
            "",
            "## Processing detail",
            "",
            *detail,
            "",
            "steady: from the first stored result to the last, which leaves out the worker's "
            "interpreter start and imports. Worker log lines: what the worker command writes "
            "per task at its default log level (to a file in bench/results/logs/).",
        ]
    out += ["", "## Settings", ""]
    for system in systems:
        if system.report.get("settings"):
            out.append(f"- {_label(system)}: {_settings(system)}")
        elif system.unavailable is not None:
            out.append(f"- {system.label}: not available: {system.unavailable}")
    problems = [p for s in systems for p in s.problems]
    if problems:
        out += ["", "## Problems (workloads not run)", "", *(f"- {p}" for p in problems)]
    return "\n".join(out) + "\n"


# -- the latency matrix ------------------------------------------------------------------------


@dataclass
class LatencyCell:
    system: System
    loop: str
    concurrency: int
    report: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    def get(self, key: str) -> float | None:
        value = self.report.get("latency", {}).get(key)
        return float(value) if isinstance(value, int | float) else None

    @property
    def headline(self) -> bool:
        return self.system.name == OURS and (self.loop, self.concurrency) == HEADLINE

    def runs(self, key: str) -> list[float]:
        return [float(v) for v in self.report.get("latency", {}).get(f"{key}_runs", [])]


def measure_latency(
    systems: list[System], mode: Mode, upgrade: bool, redis_url: str
) -> list[LatencyCell]:
    """Every system at every loop and concurrency; configuration by configuration, the
    systems side by side, so that drift on a shared machine hits them alike."""
    env = _clean_env(redis_url)
    ready = []
    for system in systems:
        if system.venv is not None:
            system.requirements = [*system.requirements, "uvloop"]
        system.modules = [*system.modules, "uvloop"]
        if prepare(system, upgrade, env):
            ready.append(system)
    cells: list[LatencyCell] = []
    workload_args = [
        "--latency-only",
        *("--runs", str(mode.runs), "--latency-n", str(mode.latency_n)),
        *("--warmup", str(mode.warmup)),
    ]
    for loop in LATENCY_LOOPS:
        for concurrency in LATENCY_CONCURRENCY:
            for system in ready:
                cell = LatencyCell(system, loop, concurrency)
                cells.append(cell)
                cell_env = {**env, "BENCH_LOOP": loop, "BENCH_CONCURRENCY": str(concurrency)}
                log(f"{system.name}: {loop}, concurrency {concurrency}")
                try:
                    cell.report = run_workload(system, workload_args, cell_env, mode.timeout())
                    if not system.report:  # version and settings, for the labels
                        system.report = {
                            k: v for k, v in cell.report.items() if not k.startswith("latency")
                        }
                except BenchError as exc:
                    cell.problem = str(exc)
                    system.problems.append(str(exc))
                finally:
                    flush_dbs(redis_url)
    return cells


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f} to {max(values):.2f}" if values else MISSING


def latency_table(cells: list[LatencyCell]) -> list[str]:
    header = ["system", "loop", "-c", "p50 ms", "p95 ms", "p99 ms", "max ms"]
    header += ["p50 over runs", "p99 over runs", "lost"]
    rows = []
    for cell in cells:
        name = _label(cell.system)
        if cell.headline:
            name = f"**{name}**"
        row = [name, cell.loop, str(cell.concurrency)]
        if cell.problem is not None:
            rows.append([*row, "could not run (see Problems)"] + [""] * 6)
            continue
        row += [_ms(cell.get(k)) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")]
        row += [_spread(cell.runs("p50_ms")), _spread(cell.runs("p99_ms"))]
        lost, n = cell.get("lost"), cell.get("n")
        row.append(f"{lost:.0f} / {n:.0f}" if lost is not None and n is not None else MISSING)
        rows.append(row)
    return _table(header, ["---", "---", "---:", *["---:"] * (len(header) - 3)], rows)


def latency_targets(cells: list[LatencyCell]) -> list[str]:
    def cell(system: str, loop: str, concurrency: int) -> LatencyCell | None:
        return next(
            (
                c
                for c in cells
                if c.system.name == system and c.loop == loop and c.concurrency == concurrency
            ),
            None,
        )

    loop, concurrency = HEADLINE
    ours = cell(OURS, loop, concurrency)
    p50 = ours.get("p50_ms") if ours else None
    p99 = ours.get("p99_ms") if ours else None
    peer_p99 = [
        v
        for c in cells
        if c.system.name != OURS and (c.loop, c.concurrency) == HEADLINE
        for v in [c.get("p99_ms")]
        if v is not None
    ]
    best_peer = min(peer_p99) if peer_p99 else None
    rows = [
        [
            f"p50 ms, -c {concurrency} {loop}",
            f"<= {TARGET_P50_MS}",
            _ms(p50),
            _status(None if p50 is None else p50 <= TARGET_P50_MS),
        ],
        [
            f"p99 ms, -c {concurrency} {loop}",
            f"<= {TARGET_P99_MS}",
            _ms(p99),
            _status(None if p99 is None else p99 <= TARGET_P99_MS),
        ],
        [
            f"p99, -c {concurrency} {loop}, vs the best peer's",
            f"<= {_ms(best_peer / 2) if best_peer else MISSING} (half of {_ms(best_peer)})",
            _ms(p99),
            _status(None if p99 is None or best_peer is None else p99 <= best_peer / 2),
        ],
    ]
    for each in LATENCY_LOOPS:
        low, high = cell(OURS, each, 4), cell(OURS, each, 100)
        a = low.get("p50_ms") if low else None
        b = high.get("p50_ms") if high else None
        gap = None if a is None or b is None else abs(b - a) / min(a, b)
        rows.append(
            [
                f"p50 -c 4 vs -c 100, {each}",
                f"within {TARGET_LATENCY_SPREAD:.0%}",
                MISSING if gap is None else f"{_ms(a)} vs {_ms(b)} ({gap:.0%})",
                _status(None if gap is None else gap <= TARGET_LATENCY_SPREAD),
            ]
        )
    return _table(["metric", "target", "flowrra", "status"], ["---", "---", "---:", "---"], rows)


def render_latency(
    cells: list[LatencyCell], mode: Mode, facts: list[tuple[str, str]], redis: str
) -> str:
    systems = list({id(c.system): c.system for c in cells}.values())
    out = [
        "# Round-trip latency on Redis: concurrency x event loop",
        "",
        f"Mode: {mode.runs} run(s) per configuration, each a fresh worker process serving "
        f"{mode.latency_n:,} sequential enqueue → result round trips of a no-op after "
        f"{mode.warmup} warm-up ones, 5 s timeout.",
        "",
        *(f"- {name}: {value}" for name, value in facts),
        f"- redis: {redis}",
        "",
        *latency_table(cells),
        "",
        "One worker process per system at the given concurrency (flowrra `-c`, arq "
        "`max_jobs`, saq `concurrency`) and event loop (the worker and the client alike); "
        "p50 / p95 / p99 / max: nearest-rank, medians over the runs; over runs: the lowest "
        "and highest of the runs. In bold the README's headline figure "
        f"(`-c {HEADLINE[1]}`, {HEADLINE[0]}).",
        "",
        "## Targets (this repository's flowrra)",
        "",
        *latency_targets(cells),
        "",
        "## Settings",
        "",
    ]
    for system in systems:
        if system.report.get("settings"):
            out.append(f"- {_label(system)}: {_settings(system)}")
    problems = [p for s in systems for p in s.problems]
    if problems:
        out += ["", "## Problems (workloads not run)", "", *(f"- {p}" for p in problems)]
    return "\n".join(out) + "\n"


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = [s.name for s in make_systems()]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="N=2,000 x 1 run, 100 round trips (a fast check)"
    )
    parser.add_argument("--runs", type=int, help="runs per system (medians); default 3, quick 1")
    parser.add_argument(
        "--only", help=f"comma-separated subset of: {', '.join(names)} (default: all)"
    )
    parser.add_argument(
        "--upgrade", action="store_true", help="reinstall the peers' latest releases first"
    )
    parser.add_argument(
        "--latency",
        action="store_true",
        help=f"only the round trips, at concurrency {', '.join(map(str, LATENCY_CONCURRENCY))} "
        f"on {' and '.join(LATENCY_LOOPS)}, for {', '.join(LATENCY_DEFAULT)} (with --only: "
        f"any of {', '.join(LATENCY_SYSTEMS)})",
    )
    parser.add_argument(
        "--redis", default=DEFAULT_REDIS, help=f"Redis server (default {DEFAULT_REDIS})"
    )
    parser.add_argument(
        "--flowrra-one-db",
        action="store_true",
        help=f"this repository's flowrra with its broker and backend both on database "
        f"{DBS[0]} (one script per submit); the peers unchanged",
    )
    args = parser.parse_args(argv)
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(names)}")
        args.only = wanted
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.latency:
        output = RESULTS / ("redis-latency-quick.md" if args.quick else "redis-latency.md")
        latency_n, warmup = (100, 20) if args.quick else (500, 50)
        mode = Mode("latency", 0, args.runs or (1 if args.quick else 3), latency_n, warmup, output)
    elif args.quick:
        mode = Mode("quick", 2_000, args.runs or 1, 100, 20, RESULTS / "redis-quick.md")
    else:
        mode = Mode("full", 20_000, args.runs or 3, 500, 50, RESULTS / "redis.md")
    facts = machine_facts()
    redis_url = args.redis.rstrip("/")
    try:
        redis_text = redis_facts(redis_url)
        flush_dbs(redis_url)
    except (OSError, BenchError) as exc:
        log(f"cannot reach Redis at {redis_url}: {exc}")
        return 1

    systems = make_systems()
    if args.only:
        systems = [s for s in systems if s.name in args.only]
    if args.latency:
        eligible = LATENCY_SYSTEMS if args.only else LATENCY_DEFAULT
        systems = [s for s in systems if s.name in eligible]
    LOGS.mkdir(parents=True, exist_ok=True)
    if args.latency:
        return main_latency(systems, mode, args.upgrade, redis_url, facts, redis_text)
    for system in systems:
        try:
            measure(system, mode, args.upgrade, redis_url, args.flowrra_one_db)
        finally:
            flush_dbs(redis_url)

    text = render(systems, mode, facts, redis_text)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    mode.output.write_text(text, encoding="utf-8")
    raw = {
        "mode": mode.name,
        "machine": dict(facts),
        "redis": redis_text,
        "systems": {
            s.name: {"unavailable": s.unavailable, "problems": s.problems, **s.report}
            for s in systems
        },
    }
    mode.output.with_suffix(".json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {mode.output.relative_to(ROOT)} and its .json")
    return 1 if any(s.problems for s in systems) else 0


def main_latency(
    systems: list[System],
    mode: Mode,
    upgrade: bool,
    redis_url: str,
    facts: list[tuple[str, str]],
    redis_text: str,
) -> int:
    try:
        cells = measure_latency(systems, mode, upgrade, redis_url)
    finally:
        flush_dbs(redis_url)
    text = render_latency(cells, mode, facts, redis_text)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    mode.output.write_text(text, encoding="utf-8")
    raw = {
        "mode": mode.name,
        "machine": dict(facts),
        "redis": redis_text,
        "cells": [
            {"system": c.system.name, "loop": c.loop, "concurrency": c.concurrency}
            | {"problem": c.problem, **c.report}
            for c in cells
        ],
    }
    mode.output.with_suffix(".json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {mode.output.relative_to(ROOT)} and its .json")
    return 1 if any(s.problems for s in systems) else 0


if __name__ == "__main__":
    sys.exit(main())
