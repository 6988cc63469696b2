"""Fault injection against a Redis of the script's own: what is lost, run twice, overwritten.

Reruns issue 17's experiments with real ``flowrra worker`` processes (``fault_apps/``) on a
``redis-server`` it starts on a free port (``appendonly yes``, ``appendfsync everysec``, in
a temporary directory), never on a shared one:

* ``worker-sigkill``: 3 workers, one SIGKILLed (and replaced) every 2 s while tasks are
  submitted and run;
* ``redis-sigterm``, ``redis-sigkill``: Redis stopped that way mid-run, restarted on the
  same port from its append-only file;
* ``redis-sigstop``: Redis paused (SIGSTOP) for 10 s mid-run, then resumed, under leases
  of 30 s; ``redis-sigstop-lease5`` the same under leases of 5 s (the other experiments'),
  which the stall outlasts: those tasks are delivered again;
* ``evict-allkeys-lru`` and ``evict-noeviction``: tasks queued with no worker running into
  a Redis with ``maxmemory 8mb``, then run (for ``noeviction``, once the limit is lifted,
  as its operator would: submits past it were refused).

For each it prints one line: tasks ``submitted`` (submit returned an id), ``refused``
(submit raised: the caller knows), ``acknowledged`` (a SUCCESS record), ``lost``
(submitted, and not acknowledged by the end), ``still queued`` (messages queued,
delayed or leased at the end), ``duplicated`` (run more
than once: counted from the task's own note of each execution), and ``overwritten`` (a
SUCCESS record that later changed). ``--quick`` runs smaller batches.

    python bench/faults.py            # about 3 minutes
    python bench/faults.py --only worker-sigkill redis-sigstop

Run it with the project's venv; set PYTHONPATH to a worktree's ``src`` directories to test
that tree (the workers inherit it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

BENCH = Path(__file__).resolve().parent
APPS = BENCH / "fault_apps"


class Server:
    """One redis-server of the script's own, restartable on its port from its AOF."""

    def __init__(self, directory: Path, *options: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.directory = directory
        self.options = options
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.directory),
             *self.options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def send(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signum)
            self.proc.wait()
        self.proc = None


class Workers:
    def __init__(self, url: str, prefix: str, lease: float) -> None:
        self.env = {
            **os.environ,
            "FAULTS_REDIS_URL": url,
            "FAULTS_PREFIX": prefix,
            "FAULTS_LEASE": str(lease),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(APPS), os.environ.get("PYTHONPATH")])),
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowrra", "worker", "fault_app:app", "-c", "20",
             "--log-level", "ERROR"],
            cwd=APPS,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def live(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def stop_all(self) -> None:
        for proc in self.live():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _app(url: str, prefix: str) -> Any:
    from flowrra_redis import RedisBackend, RedisBroker

    from flowrra import Flowrra

    app = Flowrra(
        broker=RedisBroker(url, prefix=prefix, retries=20, eviction_warning=False),
        backend=RedisBackend(url, prefix=prefix, retries=20, eviction_warning=False),
    )

    @app.task(max_retries=50, retry_delay=0.5)
    async def work(n: int, pad: str = "") -> int:
        return n

    return app


async def _submit(
    app: Any,
    n: int,
    producers: int,
    pad: str,
    ids: dict[int, str],
    refused: list[int],
    rate: float | None = None,
) -> None:
    """Submit tasks 0..n-1 from ``producers`` concurrent producers, one awaited submit at a
    time each, about ``rate`` a second in all (None: as fast as they go); ``ids``: n →
    task id of the accepted ones."""
    numbers = iter(range(n))
    pause = 0.0 if rate is None else producers / rate

    async def producer() -> None:
        for number in numbers:
            try:
                ids[number] = await app.submit("work", number, pad=pad)
            except Exception:
                refused.append(number)
                await asyncio.sleep(0.05)
            if pause:
                await asyncio.sleep(pause)

    await asyncio.gather(*(producer() for _ in range(producers)))


async def _settle(app: Any, ids: dict[int, str], deadline: float) -> tuple[dict[int, Any], int]:
    """Wait until every accepted task has a SUCCESS record or ``deadline`` passes;
    returns n → result record, and how many are still queued or leased."""
    from flowrra import TaskStatus

    done: dict[int, Any] = {}
    while True:
        for number, task_id in ids.items():
            if number in done:
                continue
            try:
                record = await app.get_result(task_id)
            except Exception:
                await asyncio.sleep(0.5)
                break
            if record is not None and record.status is TaskStatus.SUCCESS:
                done[number] = record
        if len(done) == len(ids) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    try:
        depths = await app.broker.queue_depths()
        waiting = depths["queued"] + depths["delayed"] + depths["leased"]
    except Exception:
        waiting = -1
    return done, waiting


async def experiment(name: str, tmp: Path, quick: bool) -> dict[str, Any]:
    from flowrra import TaskStatus

    n = 2000 if quick else 6000
    # Leases of 5 s, so a killed worker's tasks come back soon; but longer than the 10 s
    # stall for redis-sigstop, whose lease5 variant shows what a stall past the lease does.
    lease = 30.0 if name == "redis-sigstop" else 5.0
    options: tuple[str, ...] = ()
    if name.startswith("evict"):
        policy = name.removeprefix("evict-")
        options = ("--maxmemory", "8mb", "--maxmemory-policy", policy)
    directory = tmp / name
    directory.mkdir()
    server = Server(directory, *options)
    prefix = f"faults-{uuid.uuid4().hex[:8]}"
    workers = Workers(server.url, prefix, lease)
    app = _app(server.url, prefix)
    ids: dict[int, str] = {}
    refused: list[int] = []
    pad = "x" * 4000 if name.startswith("evict") else ""
    try:
        await app.broker.connect()
        await app.backend.connect()
        if name.startswith("evict"):
            await _submit(app, n, 20, pad, ids, refused)  # no worker yet: it all queues
            if name == "evict-noeviction":
                # What its operator does about a full Redis: give it room. (Before that,
                # submits past the limit were refused, and workers could not store.)
                admin = redis.Redis(port=server.port)
                admin.config_set("maxmemory", "0")
                admin.close()
            for _ in range(3):
                workers.start()
        else:
            for _ in range(3):
                workers.start()
            # Paced, so the faults hit submits, runs and results in flight.
            rate = n / (8.0 if quick else 15.0)
            submitting = asyncio.ensure_future(_submit(app, n, 20, pad, ids, refused, rate))
            await asyncio.sleep(1.0)
            if name == "worker-sigkill":
                while not submitting.done():
                    victim = workers.live()[0]
                    victim.kill()
                    workers.start()
                    await asyncio.sleep(2.0)
            elif name == "redis-sigterm":
                server.stop(signal.SIGTERM)
                await asyncio.sleep(1.0)
                server.start()
            elif name == "redis-sigkill":
                server.stop(signal.SIGKILL)
                await asyncio.sleep(1.0)
                server.start()
            elif name.startswith("redis-sigstop"):
                server.send(signal.SIGSTOP)
                await asyncio.sleep(10.0)
                server.send(signal.SIGCONT)
            await submitting
        done, _ = await _settle(app, ids, time.monotonic() + 60 + 2 * lease)
        # Let leases that might still expire do so (a killed worker's, of tasks it had
        # finished but not acked yet), then read the queue and every record again.
        await asyncio.sleep(lease + 2)
        _, waiting = await _settle(app, {}, 0)
        overwritten = 0
        for number, record in done.items():
            again = await app.get_result(record.task_id)
            if again is None or again.status is not TaskStatus.SUCCESS or again.result != number:
                overwritten += 1
        notes = redis.Redis(port=server.port)
        ran: dict[int, int] = {}
        for token in notes.smembers(f"{prefix}:ran"):
            number = int(token.split(b":")[0])
            ran[number] = ran.get(number, 0) + 1
        notes.close()
        duplicated = sum(1 for number in ids if ran.get(number, 0) > 1)
        lost = len(ids) - len(done)
        return {
            "experiment": name,
            "submitted": len(ids),
            "refused": len(refused),
            "acknowledged": len(done),
            "still queued": waiting,
            "lost": lost,
            "duplicated": duplicated,
            "extra runs": sum(max(ran.get(number, 0) - 1, 0) for number in ids),
            "overwritten": overwritten,
        }
    finally:
        workers.stop_all()
        with contextlib.suppress(Exception):
            await app.close()
        server.stop()


EXPERIMENTS = (
    "worker-sigkill",
    "redis-sigterm",
    "redis-sigkill",
    "redis-sigstop",
    "redis-sigstop-lease5",
    "evict-allkeys-lru",
    "evict-noeviction",
)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=EXPERIMENTS, default=list(EXPERIMENTS))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flowrra-faults-") as tmp:
        for name in args.only:
            row = await experiment(name, Path(tmp), args.quick)
            print("  ".join(f"{key}={value}" for key, value in row.items()), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
