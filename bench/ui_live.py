"""The UI's live updates at scale (issue 15): 1,000 WebSockets on one FastAPI process
(uvicorn), receiving task events while a worker runs tasks, on Redis.

It starts ``uvicorn live_app:api`` and ``flowrra worker live_app:flowrra`` (bench/ui_apps)
on a key prefix of its own, submits ``--rate`` tasks a second for ``--seconds``, first with
no page open (the baseline), then with ``--sockets`` WebSockets open, and prints a
Markdown table:

- Redis connections of the web process (TCP connections to the Redis port, from
  ``/proc``) and subscribers of the event channel (``PUBSUB NUMSUB``);
- event latency: from the event's ``at`` (set where it happened, in the worker) to its
  arrival at a client, median and p99 over every client's every event;
- the web process's loop lag (how late a 10 ms sleep wakes there), median / p99 / max;
- ``/ping`` (the host's own endpoint) and ``/flowrra/api/executions`` answer times,
  median / p99, from a probe every 0.2 s;
- frames received (a frame carries one event, or several that waited for a client);
- CPU used by the web process and by the bench itself (its WebSocket clients, on the
  same cores), in % of one core over the phase.

    python bench/ui_live.py [--sockets 1000] [--rate 10] [--seconds 20] [--no-deflate]

Not a test: a shared 2-core machine moves every figure; compare the two rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis.asyncio as aioredis
import websockets

from flowrra import Flowrra

APPS = Path(__file__).parent / "ui_apps"


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def redis_connections(pid: int, redis_port: int) -> int:
    """Established TCP connections of ``pid`` to ``redis_port`` (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if fields[3] == "01" and remote_port == redis_port and fields[9] in inodes:
                count += 1
    return count


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"the web process exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the web process does not listen")


class Phase:
    """What one phase measured."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.ping: list[float] = []
        self.listing: list[float] = []
        self.received = 0
        self.frames = 0


async def read(ws: Any, phase: list[Phase]) -> None:
    async for raw in ws:
        now = time.time()
        message = json.loads(raw)
        phase[0].frames += 1
        # One task event, or several in one frame ({"type": "events", "events": [...]}).
        for event in message.get("events", [message]):
            at = event.get("at")
            if at is not None:
                phase[0].latencies.append(now - datetime.fromisoformat(at).timestamp())
                phase[0].received += 1


async def probe(http: httpx.AsyncClient, phase: list[Phase], until: float) -> None:
    while time.monotonic() < until:
        started = time.perf_counter()
        assert (await http.get("/ping")).status_code == 200
        phase[0].ping.append(time.perf_counter() - started)
        started = time.perf_counter()
        answer = await http.get("/flowrra/api/executions?limit=25")
        assert answer.status_code == 200, answer.text
        phase[0].listing.append(time.perf_counter() - started)
        await asyncio.sleep(0.2)


async def submit(producer: Flowrra, rate: float, until: float) -> int:
    sent = 0
    started = time.monotonic()
    while time.monotonic() < until:
        await producer.submit("work", sent)
        sent += 1
        await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
    return sent


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.sockets * 2 + 256)), hard))
    prefix = f"bench-ui-live-{uuid.uuid4().hex[:8]}"
    url = f"{args.redis}{'&' if '?' in args.redis else '?'}prefix={prefix}"
    redis_port = urlsplit(args.redis).port or 6379
    port = free_port()
    env = {
        **os.environ,
        "BENCH_UI_REDIS_URL": url,
        "PYTHONPATH": os.pathsep.join([str(APPS), os.environ.get("PYTHONPATH", "")]),
    }
    flowrra_cli = str(Path(sys.executable).with_name("flowrra"))
    web_command = [
        sys.executable,
        "-m",
        "uvicorn",
        "live_app:api",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--ws-max-queue",
        "32",
        "--ws-per-message-deflate",
        str(args.deflate).lower(),
    ]
    # Started once, before anything is measured: blocking the loop here costs nothing.
    web = subprocess.Popen(web_command, cwd=APPS, env=env, preexec_fn=_raise_fd_limit)  # noqa: ASYNC220
    worker_command = [flowrra_cli, "worker", "live_app:flowrra"]
    worker = subprocess.Popen(worker_command, cwd=APPS, env=env)  # noqa: ASYNC220
    producer = Flowrra.from_urls(broker=url, backend=url)

    @producer.task()
    async def work(n: int) -> int:
        return n

    rows: list[dict[str, Any]] = []
    watcher = aioredis.Redis.from_url(args.redis)
    try:
        await wait_for(port, web)
        async with (
            producer.producer(),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
        ):
            for sockets in (0, args.sockets):
                phase = [Phase()]
                async with contextlib.AsyncExitStack() as stack:
                    opened = []
                    target = f"ws://127.0.0.1:{port}/flowrra/ws"
                    for start in range(0, sockets, 100):
                        batch = await asyncio.gather(
                            *(
                                stack.enter_async_context(
                                    websockets.connect(target, max_queue=None)
                                )
                                for _ in range(start, min(sockets, start + 100))
                            )
                        )
                        opened.extend(batch)
                    for ws in opened:
                        assert json.loads(await ws.recv()) == {"type": "ready"}
                    readers = [asyncio.create_task(read(ws, phase)) for ws in opened]
                    connections = redis_connections(web.pid, redis_port)
                    [(_, subscribers)] = await watcher.pubsub_numsub(producer.backend.keys.events)  # type: ignore[attr-defined]
                    await http.post("/lag/reset")
                    cpu = (cpu_seconds(web.pid), own_cpu_seconds(), time.monotonic())
                    until = time.monotonic() + args.seconds
                    submitted, _ = await asyncio.gather(
                        submit(producer, args.rate, until), probe(http, phase, until)
                    )
                    await asyncio.sleep(2)  # the last events arrive
                    wall = time.monotonic() - cpu[2]
                    cpu_share = (
                        (cpu_seconds(web.pid) - cpu[0]) / wall * 100,
                        (own_cpu_seconds() - cpu[1]) / wall * 100,
                    )
                    lag = (await http.get("/lag")).json()
                    connections = max(connections, redis_connections(web.pid, redis_port))
                    for reader in readers:
                        reader.cancel()
                rows.append(
                    {
                        "sockets": sockets,
                        "tasks": submitted,
                        "events_received": phase[0].received,
                        "frames": phase[0].frames,
                        "cpu": cpu_share,
                        "redis_connections": connections,
                        "event_subscribers": subscribers,
                        "latency_ms": (
                            percentile(phase[0].latencies, 0.5) * 1000,
                            percentile(phase[0].latencies, 0.99) * 1000,
                        ),
                        "lag_ms": (lag["median_ms"], lag["p99_ms"], lag["max_ms"]),
                        "ping_ms": (
                            percentile(phase[0].ping, 0.5) * 1000,
                            percentile(phase[0].ping, 0.99) * 1000,
                        ),
                        "list_ms": (
                            percentile(phase[0].listing, 0.5) * 1000,
                            percentile(phase[0].listing, 0.99) * 1000,
                        ),
                    }
                )
    finally:
        for process in (web, worker):
            process.send_signal(signal.SIGTERM)
        for process in (web, worker):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        keys = [key async for key in watcher.scan_iter(match=f"*{prefix}*", count=1000)]
        if keys:
            await watcher.delete(*keys)
        await watcher.aclose()
    return rows


def _raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| WebSockets | tasks | events received | frames | Redis connections (web) "
        "| event subscribers "
        "| event latency p50 / p99 (ms) | loop lag p50 / p99 / max (ms) "
        "| /ping p50 / p99 (ms) | /api/executions p50 / p99 (ms) | CPU web / bench (%) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        latency = "—" if not r["events_received"] else "{:.1f} / {:.1f}".format(*r["latency_ms"])
        lines.append(
            f"| {r['sockets']:,} | {r['tasks']:,} | {r['events_received']:,} | {r['frames']:,} "
            f"| {r['redis_connections']} | {r['event_subscribers']} | {latency} "
            "| {:.1f} / {:.1f} / {:.1f} ".format(*r["lag_ms"])
            + "| {:.1f} / {:.1f} ".format(*r["ping_ms"])
            + "| {:.1f} / {:.1f} ".format(*r["list_ms"])
            + "| {:.0f} / {:.0f} |".format(*r["cpu"])
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="tasks a second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--redis", default=os.environ.get("FLOWRRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
    )
    parser.add_argument(
        "--no-deflate",
        dest="deflate",
        action="store_false",
        help="serve WebSockets without per-message compression (uvicorn's"
        " --ws-per-message-deflate false)",
    )
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    print(table(rows))
    print(
        f"\n{os.cpu_count()} CPUs, load average {os.getloadavg()}, Python {sys.version.split()[0]}"
    )


if __name__ == "__main__":
    main()
