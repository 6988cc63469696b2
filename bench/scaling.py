"""Scaling measured, not assumed (issue 16 part 5): throughput of ``flowrra worker
--processes N`` on one Redis, and on a local Redis Cluster of three masters with S shards.

    python bench/scaling.py                          # both topologies, both modes
    python bench/scaling.py --quick                  # N=5,000 x 1 run
    python bench/scaling.py --processes 1 2 4 --shards 1,3,6 --n 20000 --runs 3
    python bench/scaling.py --only server            # or: --only cluster
    python bench/scaling.py --modes drain            # or: concurrent

One Redis is a ``redis-server`` of the bench's own on a free port (``submit_trip.py``'s),
so its ``INFO cpu`` counts this bench alone; the cluster is ``local_servers.py``'s
(packages/flowrra-redis/tests/apps): six nodes on free ports, three masters each with a
replica. Broker and backend share one URL (``BENCH_FLOWRRA_URL``, read by
``redis_apps/flowrra_app.py``), the usual setup, so a submit is one script. On the cluster
each S is passed as ``?shards=S`` in that URL; a tree whose Redis plugin rejects the option
runs S=1 without it (today's behaviour, one hash tag: one master) and prints "shards: not
available in this tree" for the others.

The worker is one ``flowrra worker flowrra_app:app --processes N -c C`` (N=1: the plain
worker, no supervisor; N>1: a supervisor and N child processes). Modes, each run on an
emptied server:

* ``drain``: N no-op tasks queued with ``submit_many`` first (no worker running), then the
  worker started and timed from its start to the last result (start-to-last, start-up
  included) and from the first result to the last (steady).
* ``concurrent``: the worker started and warmed up (a batch processed, then a second for the
  children to settle); then this process submits N tasks with ``submit_many`` in chunks of
  ``--batch`` as fast as it can while the worker runs, timed from the first submit to the
  last result. The producer shares the machine's cores with the worker and Redis.

Completion is read from the backend's counts (``backend.counts``: the SUCCESS total, one
round trip) every 5 ms. Per row: tasks/s, worker CPU µs/task (user + sys of the worker
and every descendant, from ``/proc``), Redis CPU µs/task (``INFO cpu`` delta of every
master: enqueue and processing), and how busy Redis and the worker were (CPU seconds per
second: one Redis core saturates at 100%). On the cluster also each master's share of the
Redis CPU, to see whether the load spreads. Medians of ``--runs`` runs. The Markdown goes
to stdout and to ``bench/results/scaling.md`` (``scaling-quick.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
APPS = BENCH / "redis_apps"
TEST_APPS = ROOT / "packages" / "flowrra-redis" / "tests" / "apps"
RESULTS = BENCH / "results"
sys.path[:0] = [str(APPS), str(TEST_APPS)]

from local_servers import LocalCluster  # noqa: E402
from redis_workload import WorkerProcess  # noqa: E402
from run_core import machine_facts  # noqa: E402
from submit_trip import _start_server  # noqa: E402

from flowrra import Flowrra  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROBE_INTERVAL = 0.005
NOT_AVAILABLE = "shards: not available in this tree"


# -- measuring --------------------------------------------------------------------------------


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of ``root`` and every live descendant (``--processes`` children
    run in process groups of their own, so a group sum would miss them)."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                text = fh.read()
        except OSError:
            continue
        fields = text[text.rindex(b")") + 2 :].split()
        # fields[0] is stat's field 3 (state): ppid is 4, utime and stime 14 and 15
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        ticks[pid] = int(fields[11]) + int(fields[12])
    total = 0
    for pid, count in ticks.items():
        walk = pid
        while walk > 1 and walk != root:
            walk = parent.get(walk, 0)
        if walk == root:
            total += count
    return total / CLK_TCK


class Servers:
    """The Redis servers under test: INFO cpu of each master, emptied between runs."""

    def __init__(self, url: str, ports: list[int]) -> None:
        self.url = url
        self.clients = {port: redis.Redis(port=port, socket_timeout=10) for port in ports}
        self.idle: dict[int, float] = {}  # CPU seconds per second with nothing to do

    def measure_idle(self, seconds: float = 2.0) -> None:
        """Each master's CPU with no client working: a cluster's nodes ping each other and
        their replicas, which costs them CPU whatever the load; subtracted per row."""
        before = self.cpu()
        time.sleep(seconds)
        self.idle = {p: (v - before[p]) / seconds for p, v in self.cpu().items()}

    def cpu(self) -> dict[int, float]:
        out = {}
        for port, client in self.clients.items():
            info: dict[str, Any] = client.info("cpu")
            out[port] = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        return out

    def bus_publishes(self) -> dict[int, int]:
        """Each master's count of PUBLISH messages received over the cluster bus (a
        cluster propagates every PUBLISH to every node); empty for a lone server."""
        if len(self.clients) < 2:
            return {}
        out = {}
        for port, client in self.clients.items():
            info = client.execute_command("CLUSTER", "INFO").decode()
            fields = dict(line.split(":", 1) for line in info.split() if ":" in line)
            out[port] = int(fields.get("cluster_stats_messages_publish_received", 0))
        return out

    def empty(self) -> None:
        """FLUSHALL on each master: the bench's own servers, nobody else's."""
        for client in self.clients.values():
            client.flushall()

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


@dataclass
class Mark:
    at: float
    worker_cpu: float
    redis_cpu: dict[int, float]


@dataclass
class Run:
    n: int
    start: Mark  # worker start (drain) or first submit (concurrent)
    first: Mark | None  # first result (drain only)
    last: Mark
    enqueue_s: float  # drain: the submit_many; concurrent: the producer's whole loop
    enqueue_redis: dict[int, float]  # Redis CPU over the enqueue (drain: before start)
    idle: dict[int, float]  # each master's CPU seconds per second when idle
    tasks_run: int = 0  # every task of the run, the concurrent mode's warm-up included
    bus: dict[int, int] = field(default_factory=dict)  # PUBLISH received over the bus

    def _busy_s(self) -> float:
        """Seconds over which Redis CPU is counted: the processing, plus the drain's
        enqueue."""
        return self.last.at - self.start.at + (self.enqueue_s if self.first else 0.0)

    def rate(self) -> float:
        return self.n / (self.last.at - self.start.at)

    def steady_rate(self) -> float | None:
        if self.first is None or self.last.at <= self.first.at:
            return None
        return (self.n - 1) / (self.last.at - self.first.at)

    def worker_us(self) -> float:
        """Worker CPU per task: steady (first to last result) where there is a first mark,
        else over the whole span (the worker was warm already)."""
        if self.first is not None:
            return (self.last.worker_cpu - self.first.worker_cpu) / (self.n - 1) * 1e6
        return (self.last.worker_cpu - self.start.worker_cpu) / self.n * 1e6

    def redis_process(self) -> dict[int, float]:
        return {p: self.last.redis_cpu[p] - self.start.redis_cpu[p] for p in self.last.redis_cpu}

    def redis_net(self) -> dict[int, float]:
        """Each master's CPU seconds for enqueue and processing, less its idle rate."""
        process = self.redis_process()
        return {
            p: max(0.0, v + self.enqueue_redis.get(p, 0.0) - self.idle.get(p, 0.0) * self._busy_s())
            for p, v in process.items()
        }

    def redis_us(self) -> float:
        """Redis CPU per task, enqueue and processing, every master, net of idle."""
        return sum(self.redis_net().values()) / self.n * 1e6

    def redis_enqueue_us(self) -> float | None:
        """The drain's submit_many alone, net of idle (None: concurrent, where enqueue and
        processing overlap)."""
        if self.first is None:
            return None
        net = sum(self.enqueue_redis.values()) - sum(self.idle.values()) * self.enqueue_s
        return max(0.0, net) / self.n * 1e6

    def redis_raw_us(self) -> float:
        """The same with the idle CPU left in."""
        total = sum(self.redis_process().values()) + sum(self.enqueue_redis.values())
        return total / self.n * 1e6

    def redis_busy(self) -> float:
        """The busiest master's CPU seconds per second over the processing (1.0: a core)."""
        return max(self.redis_process().values()) / (self.last.at - self.start.at)

    def worker_cores(self) -> float:
        return (self.last.worker_cpu - self.start.worker_cpu) / (self.last.at - self.start.at)

    def node_share(self) -> dict[int, float]:
        per_node = self.redis_net()
        total = sum(per_node.values()) or 1.0
        return {p: v / total for p, v in per_node.items()}


async def _wait_success(app: Flowrra, count: int, worker: WorkerProcess, deadline: float) -> None:
    """Until the backend counts ``count`` SUCCESS records (checked every 5 ms)."""
    backend: Any = app.backend
    while True:
        totals = (await backend.counts(1))["totals"]
        if totals["success"] >= count:
            return
        if totals["failed"]:
            raise RuntimeError(f"{totals['failed']} tasks failed; worker log: {worker.log_path}")
        if not worker.alive():
            raise RuntimeError(f"the worker exited; its log ends:\n{worker.log_tail()}")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{totals['success']} of {count} results after the deadline")
        await asyncio.sleep(PROBE_INTERVAL)


async def one_run(
    servers: Servers, url: str, mode: str, processes: int, options: argparse.Namespace
) -> Run:
    servers.empty()
    os.environ["BENCH_FLOWRRA_URL"] = url  # the workers' app reads it (bench_urls.py)
    app = Flowrra.from_urls(broker=url, backend=url)

    @app.task(name="noop")  # flowrra_app.py's task
    async def noop() -> None:
        return None

    bus0 = servers.bus_publishes()
    command = [sys.executable, "-m", "flowrra", "--log-level", "WARNING", "worker"]
    command += ["flowrra_app:app", "--processes", str(processes), "-c", str(options.concurrency)]
    worker = WorkerProcess(command, RESULTS / "logs" / "scaling-worker.log", None)
    deadline = time.perf_counter() + max(120.0, options.n / 50)
    measure = _drain if mode == "drain" else _concurrent
    async with app.producer():
        try:
            run = await measure(app, noop, servers, worker, options, deadline)
        finally:
            worker.stop()
    run.bus = {p: v - bus0[p] for p, v in servers.bus_publishes().items()}
    return run


async def _drain(
    app: Flowrra,
    noop: Any,
    servers: Servers,
    worker: WorkerProcess,
    options: argparse.Namespace,
    deadline: float,
) -> Run:
    """N tasks queued with submit_many, then the worker started on them."""
    n = options.n
    cpu0 = servers.cpu()
    started = time.perf_counter()
    await app.submit_many(noop, [()] * n)
    enqueue_s = time.perf_counter() - started
    enqueue_redis = {p: v - cpu0[p] for p, v in servers.cpu().items()}
    start = Mark(time.perf_counter(), 0.0, servers.cpu())
    worker.start()
    await _wait_success(app, 1, worker, deadline)
    first = Mark(time.perf_counter(), tree_cpu_seconds(worker.pid), servers.cpu())
    await _wait_success(app, n, worker, deadline)
    last = Mark(time.perf_counter(), tree_cpu_seconds(worker.pid), servers.cpu())
    return Run(n, start, first, last, enqueue_s, enqueue_redis, servers.idle, n)


async def _concurrent(
    app: Flowrra,
    noop: Any,
    servers: Servers,
    worker: WorkerProcess,
    options: argparse.Namespace,
    deadline: float,
) -> Run:
    """The worker started and warmed up, then N tasks submitted in chunks while it runs."""
    n, batch = options.n, options.batch
    worker.start()
    warm = batch * 4
    await app.submit_many(noop, [()] * warm)
    await _wait_success(app, warm, worker, deadline)
    await asyncio.sleep(1.0)  # every child up: imports done, fetching
    await app.submit_many(noop, [()] * warm)
    await _wait_success(app, 2 * warm, worker, deadline)
    start = Mark(time.perf_counter(), tree_cpu_seconds(worker.pid), servers.cpu())
    for first in range(0, n, batch):
        await app.submit_many(noop, [()] * min(batch, n - first))
    enqueue_s = time.perf_counter() - start.at
    await _wait_success(app, 2 * warm + n, worker, deadline)
    last = Mark(time.perf_counter(), tree_cpu_seconds(worker.pid), servers.cpu())
    return Run(n, start, None, last, enqueue_s, {}, servers.idle, 2 * warm + n)


async def supported(url: str) -> str | None:
    """None when a producer on ``url`` can submit a task; else why not (a URL option this
    tree's Redis plugin rejects)."""
    try:
        app = Flowrra.from_urls(broker=url, backend=url)

        @app.task(name="noop")  # flowrra_app.py's task
        async def noop() -> None:
            return None

        async with app.producer():
            await app.submit(noop)
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


# -- the rows ---------------------------------------------------------------------------------


@dataclass
class Row:
    topology: str
    mode: str
    processes: int
    runs: list[Run] = field(default_factory=list)
    load: str = ""
    note: str | None = None  # instead of figures (shards not available)
    ports: list[int] = field(default_factory=list)

    def median(self, what: str) -> float | None:
        values = [v for r in self.runs for v in [getattr(r, what)()] if v is not None]
        return statistics.median(values) if values else None


def _fmt(value: float | None, decimals: int = 0) -> str:
    return "—" if value is None else f"{value:,.{decimals}f}"


def main_table(rows: list[Row]) -> Iterator[str]:
    yield (
        "| Redis | mode | processes | tasks/s steady | tasks/s start-to-last | "
        "worker CPU µs/task | Redis CPU µs/task (raw) | of which enqueue | "
        "busiest Redis core | worker cores | "
        "submit_many tasks/s | load avg |"
    )
    yield "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for row in rows:
        head = f"| {row.topology} | {row.mode} | {row.processes} |"
        if row.note is not None:
            yield f"{head} {row.note} ||||||||{row.load} |"
            continue
        enqueue = statistics.median(r.n / r.enqueue_s for r in row.runs)
        busy, cores = row.median("redis_busy"), row.median("worker_cores")
        yield (
            f"{head} {_fmt(row.median('steady_rate'))} | {_fmt(row.median('rate'))} | "
            f"{_fmt(row.median('worker_us'), 1)} | {_fmt(row.median('redis_us'), 1)} "
            f"({_fmt(row.median('redis_raw_us'), 1)}) | "
            f"{_fmt(row.median('redis_enqueue_us'), 1)} | "
            f"{_fmt(None if busy is None else busy * 100)}% | {_fmt(cores, 2)} | "
            f"{_fmt(enqueue)} | {row.load} |"
        )


def node_table(rows: list[Row]) -> Iterator[str]:
    cluster = [r for r in rows if r.runs and len(r.ports) > 1]
    if not cluster:
        return
    yield (
        "| Redis | mode | processes | share of Redis CPU per master (net of idle) | "
        "PUBLISH received over the cluster bus per task, per master |"
    )
    yield "|---|---|---:|---|---|"
    for row in cluster:
        shares = {p: statistics.median(r.node_share()[p] for r in row.runs) for p in row.ports}
        bus = {
            p: statistics.median(r.bus.get(p, 0) / r.tasks_run for r in row.runs) for p in row.ports
        }
        text = ", ".join(f"{port}: {share:.0%}" for port, share in shares.items())
        per_task = ", ".join(f"{port}: {count:.2f}" for port, count in bus.items())
        yield f"| {row.topology} | {row.mode} | {row.processes} | {text} | {per_task} |"


# -- main -------------------------------------------------------------------------------------


async def measure(
    servers: Servers, topology: str, url: str, options: argparse.Namespace, rows: list[Row]
) -> None:
    for mode in options.modes:
        for processes in options.processes:
            row = Row(topology, mode, processes, ports=list(servers.clients))
            for _ in range(options.runs):
                row.runs.append(await one_run(servers, url, mode, processes, options))
            row.load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            rows.append(row)
            print(
                f"[scaling] {topology}, {mode}, --processes {processes}: "
                f"{_fmt(row.median('rate'))} tasks/s (load {row.load})",
                file=sys.stderr,
                flush=True,
            )


def _idle_note(topology: str, servers: Servers) -> str:
    rates = ", ".join(f"{1e3 * v:.1f}" for v in servers.idle.values())
    return f"{topology}: idle Redis CPU {rates} ms/s per master (subtracted)"


async def run_server(options: argparse.Namespace, rows: list[Row], notes: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="flowrra-scaling-") as directory:
        proc, url = _start_server(directory)
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        servers = Servers(url, [port])
        servers.measure_idle()
        notes.append(_idle_note("one server", servers))
        try:
            await measure(servers, "one server", url, options, rows)
        finally:
            servers.close()
            proc.kill()
            proc.wait()


async def run_cluster(options: argparse.Namespace, rows: list[Row], notes: list[str]) -> None:
    cluster = LocalCluster()
    servers = Servers(cluster.url, cluster.masters())
    try:
        servers.measure_idle()
        notes.append(_idle_note("cluster", servers))
        for shards in options.shards:
            url = f"{cluster.url}?shards={shards}"
            topology = f"cluster, S={shards}"
            why = await supported(url)
            if why is not None and shards == 1:
                url, topology = cluster.url, "cluster, S=1 (no option)"
                why = await supported(url)
            if why is not None:
                print(f"[scaling] S={shards}: {NOT_AVAILABLE} ({why})", file=sys.stderr)
                load = " ".join(f"{x:.2f}" for x in os.getloadavg())
                for mode in options.modes:
                    rows.append(Row(topology, mode, 0, note=NOT_AVAILABLE, load=load))
                continue
            await measure(servers, topology, url, options, rows)
    finally:
        servers.close()
        cluster.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="N=5,000 x 1 run")
    parser.add_argument("--n", type=int, help="tasks per run (default 20,000; quick 5,000)")
    parser.add_argument("--runs", type=int, help="runs per row, medians (default 3; quick 1)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("-c", "--concurrency", type=int, default=32, help="per process")
    parser.add_argument("--shards", default="1,3,6", help="cluster shard counts, e.g. 1,3,6")
    parser.add_argument("--modes", default="drain,concurrent", help="drain, concurrent")
    parser.add_argument("--only", choices=("server", "cluster"), help="one topology")
    parser.add_argument(
        "--batch", type=int, default=1000, help="concurrent mode: tasks per submit_many"
    )
    options = parser.parse_args(argv)
    options.n = options.n or (5_000 if options.quick else 20_000)
    options.runs = options.runs or (1 if options.quick else 3)
    options.shards = [int(s) for s in options.shards.split(",") if s.strip()]
    options.modes = [m.strip() for m in options.modes.split(",") if m.strip()]
    if set(options.modes) - {"drain", "concurrent"}:
        parser.error("--modes: drain, concurrent")
    return options


async def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    facts = machine_facts()
    rows: list[Row] = []
    notes: list[str] = []
    with contextlib.suppress(KeyboardInterrupt):
        if options.only != "cluster":
            await run_server(options, rows, notes)
        if options.only != "server":
            await run_cluster(options, rows, notes)
    out = [
        "# Scaling: worker processes on one Redis, and shards on a 3-master cluster",
        "",
        *(f"- {name}: {value}" for name, value in facts),
        f"- N={options.n:,} no-op tasks x {options.runs} run(s) per row (medians); "
        f"`flowrra worker flowrra_app:app --processes N -c {options.concurrency}`; "
        f"concurrent mode submits in submit_many chunks of {options.batch:,}",
        *(f"- {note}" for note in notes),
        "",
        *main_table(rows),
        "",
        *node_table(rows),
    ]
    text = "\n".join(out) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("scaling-quick.md" if options.quick else "scaling.md")).write_text(text)


if __name__ == "__main__":
    asyncio.run(main())
