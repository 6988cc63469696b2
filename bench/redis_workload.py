"""Redis workloads for one task queue; prints ONE JSON line with the measurements.

Runs under the interpreter of the system's own virtualenv (``run_redis.py`` makes them) and
benchmarks one of: ``flowrra`` (this repository, with flowrra-redis), ``flowrra-0.1.8``,
``arq``, ``saq``, ``taskiq`` (with taskiq-redis) and ``dramatiq``. Queue on Redis database
12, results on 13 (``bench_urls.py``); both are flushed before each phase and at the end.
The apps and the no-op task live in ``redis_apps/``; each system's worker is its own command
line, started here as a subprocess in a process group of its own.

Each of ``--runs`` runs (medians are reported):

* enqueue, batch: ``--n`` tasks in one call of the batch API, where there is one; then the
  databases are flushed.
* enqueue, single: ``--n`` tasks, one awaited enqueue at a time, no worker running.
* process: one worker process starts on those ``--n`` queued tasks; tasks/s from the
  worker's start to the moment the last result is stored. Completion is watched without
  touching the worker (see ``Adapter.exact_counter``): an O(1) counter where the system keeps
  one, else the last task's result and then one pass over all of them. The worker's CPU
  time (user + sys of every process in its group, from ``/proc``) and Redis's (``INFO cpu``)
  are read at the first and at the last result.

After the last run, with the same worker: ``--latency-n`` sequential enqueue → result round
trips after ``--warmup`` warm-up ones; one that does not return within ``--timeout``
seconds is lost.

With ``--latency-only`` each run is just that: a fresh worker, the warm-up, the measured
round trips, the worker stopped (so the spread over runs includes worker starts). The
environment chooses the settings, for this process and the worker alike (``bench_urls.py``):
``BENCH_LOOP`` (``asyncio`` or ``uvloop``) and ``BENCH_CONCURRENCY`` (the worker's concurrent
tasks: flowrra's ``-c``, arq's ``max_jobs``, saq's ``concurrency``, taskiq's
``--max-async-tasks``; unset, each system's default).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

BENCH = Path(__file__).resolve().parent
APPS = BENCH / "redis_apps"
sys.path.insert(0, str(APPS))

from bench_urls import BACKEND_URL, BROKER_URL, CONCURRENCY, LOOP  # noqa: E402

SYSTEMS = ("flowrra", "flowrra-0.1.8", "arq", "saq", "taskiq", "dramatiq")

#: Interval of this process's completion probes while a worker processes the batch.
PROBE_INTERVAL = 0.005
#: Poll interval handed to result-wait APIs that poll (arq, taskiq); their defaults are
#: 0.5 s and 0.2 s, which would measure the poll, not the system.
CLIENT_POLL = 0.001
#: Ids checked at once when looking for the results that are still missing.
CHUNK = 500
CLK_TCK = os.sysconf("SC_CLK_TCK")
BIN = Path(sys.executable).parent  # this virtualenv's scripts (not resolved: keep the venv)


class WorkloadError(RuntimeError):
    """The workload cannot go on (the worker died, an API is missing, ...)."""


def _dist_version(*names: str) -> str:
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            return version(name)
    return "?"


def _installed(name: str) -> bool:
    try:
        version(name)
    except PackageNotFoundError:
        return False
    return True


def _default(func: Any, name: str) -> Any:
    """The default of parameter ``name`` of ``func`` (to state settings, not assume them)."""
    import inspect

    try:
        return inspect.signature(func).parameters[name].default
    except (KeyError, TypeError, ValueError):
        return "?"


# -- the worker process ----------------------------------------------------------------------


class WorkerProcess:
    """A system's worker command in a process group of its own; CPU from ``/proc``."""

    def __init__(self, command: list[str], log_path: Path, pidfile: Path | None) -> None:
        self.command = command
        self.log_path = log_path
        self.pidfile = pidfile
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ)
        # The apps first; then the caller's PYTHONPATH, if any (another tree's src folders).
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APPS), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n===== {' '.join(self.command)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command,
                cwd=APPS,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.pidfile is not None:
            with self.pidfile.open("a") as fh:
                fh.write(f"{self.proc.pid}\n")

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise WorkloadError("worker not started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in the worker's group, plus the reaped
        children of its leader."""
        ticks = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    text = fh.read()
            except OSError:
                continue
            fields = text[text.rindex(b")") + 2 :].split()
            # fields[0] is stat's field 3 (state): pgrp is 5, utime..cstime are 14..17
            if int(fields[2]) != self.pid:
                continue
            ticks += int(fields[11]) + int(fields[12])
            if int(entry.name) == self.pid:
                ticks += int(fields[13]) + int(fields[14])
        return ticks / CLK_TCK

    def log_lines(self) -> int:
        try:
            with self.log_path.open("rb") as fh:
                return sum(1 for _ in fh)
        except OSError:
            return 0

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the group, SIGKILL it after ``grace`` seconds; the leader's exit code."""
        if self.proc is None:
            return None
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):  # stragglers of the group
            os.killpg(self.pid, signal.SIGKILL)
        return self.proc.returncode


# -- adapters ----------------------------------------------------------------------------------


class Adapter:
    """One system's producer side. Handles are whatever its enqueue returns."""

    name = ""
    #: ``pending()`` is exact and O(1) (a Redis counter the system keeps anyway). If not,
    #: completion is watched through ``done()`` on one handle at a time, then ``missing()``.
    exact_counter = False
    batch_api = "n/a"

    def __init__(self, broker_db: Any, backend_db: Any) -> None:
        self.broker_db = broker_db  # redis.asyncio clients of this process, for probes
        self.backend_db = backend_db
        self.version = "?"
        self.settings: dict[str, Any] = {}

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def enqueue(self) -> Any:
        raise NotImplementedError

    async def enqueue_batch(self, n: int) -> list[Any] | None:
        """``n`` tasks through the batch API; ``None`` when the system has none."""
        return None

    async def wait(self, handle: Any, timeout: float) -> bool:
        """Wait for the task's result: True when it came, False after ``timeout``."""
        raise NotImplementedError

    async def done(self, handle: Any) -> bool:
        raise NotImplementedError

    async def pending(self, n: int) -> int:
        """Tasks of the ``n`` queued ones without a stored result (``exact_counter`` only)."""
        raise NotImplementedError

    async def missing(self, handles: list[Any]) -> list[Any]:
        """The handles whose result is not stored yet."""
        out: list[Any] = []
        for first in range(0, len(handles), CHUNK):
            chunk = handles[first : first + CHUNK]
            done = await asyncio.gather(*(self.done(h) for h in chunk))
            out += [h for h, ok in zip(chunk, done, strict=True) if not ok]
        return out

    def worker_command(self) -> list[str]:
        raise NotImplementedError


class FlowrraAdapter(Adapter):
    """This repository's flowrra. What it relies on (see bench/README.md):

    - ``flowrra_app`` builds ``Flowrra.from_urls(broker=..., backend=...)`` at import; that
      raises when no Redis plugin is installed, which makes the row "not available".
    - A producer uses ``async with app.producer():`` when the app has it; otherwise it just
      calls ``submit`` (which connects without starting workers) and closes
      ``app.broker`` / ``app.backend`` at the end.
    - ``await app.submit(noop)`` returns a task id; ``await app.submit_many(noop, [() ...])``
      a list of ids (batch column "n/a" without it).
    - ``await app.wait_for_result(id, timeout=s)`` returns, or raises ``TimeoutError``
      (``ResultTimeoutError`` is one) when the time is up.
    - ``await app.get_result(id)`` is ``None`` or has ``.is_complete``.
    - The worker is ``flowrra worker flowrra_app:app`` (``-c`` concurrency, not passed).
    """

    name = "flowrra"

    def __init__(self, broker_db: Any, backend_db: Any) -> None:
        super().__init__(broker_db, backend_db)
        module = importlib.import_module("flowrra_app")
        self.app = module.app
        self.task = module.noop
        self.version = _dist_version("flowrra-core", "flowrra")
        redis_plugin = _dist_version("flowrra-redis")
        self._stack = contextlib.AsyncExitStack()
        self.batch_api = "app.submit_many" if hasattr(self.app, "submit_many") else "n/a"
        worker = getattr(self.app, "worker", None)
        executor = getattr(worker, "io_executor", None)
        self.settings = {
            "flowrra-redis": redis_plugin,
            "worker": "flowrra worker flowrra_app:app (1 process)",
            "concurrency": getattr(executor, "concurrency", "?"),
            "producer": "app.producer()" if hasattr(self.app, "producer") else "plain submit",
            # One script per submit when broker and backend share a database (issue 16).
            "submit": "one script (broker and backend on one database)"
            if getattr(self.app, "_recorded_enqueue", None) is not None
            else "two writes (broker and backend on databases 12 and 13)",
            "result wait": "app.wait_for_result",
        }

    async def open(self) -> None:
        if hasattr(self.app, "producer"):
            await self._stack.enter_async_context(self.app.producer())

    async def close(self) -> None:
        if hasattr(self.app, "producer"):
            await self._stack.aclose()
            return
        for part in (getattr(self.app, "broker", None), getattr(self.app, "backend", None)):
            close = getattr(part, "close", None)
            if close is not None:
                await close()

    async def enqueue(self) -> Any:
        return await self.app.submit(self.task)

    async def enqueue_batch(self, n: int) -> list[Any] | None:
        if not hasattr(self.app, "submit_many"):
            return None
        return list(await self.app.submit_many(self.task, [() for _ in range(n)]))

    async def wait(self, handle: Any, timeout: float) -> bool:
        try:
            await self.app.wait_for_result(handle, timeout=timeout)
        except TimeoutError:
            return False
        return True

    async def done(self, handle: Any) -> bool:
        result = await self.app.get_result(handle)
        return result is not None and bool(result.is_complete)

    def worker_command(self) -> list[str]:
        cli = BIN / "flowrra"
        base = [str(cli)] if cli.exists() else [sys.executable, "-m", "flowrra"]
        concurrency = ["-c", str(CONCURRENCY)] if CONCURRENCY is not None else []
        return [*base, "worker", "flowrra_app:app", *concurrency]


class Flowrra018Adapter(Adapter):
    """flowrra 0.1.8: ``RedisBroker`` (LPUSH / BRPOP) and ``RedisBackend`` (a JSON string
    per task, PUBLISH on completion). It has no producer mode: ``submit`` and
    ``wait_for_result`` need a started app, and starting one starts its workers. The producer
    therefore only marks its I/O executor running (``_running = True``) without starting
    worker coroutines, so every task runs in the worker process."""

    name = "flowrra-0.1.8"

    def __init__(self, broker_db: Any, backend_db: Any) -> None:
        super().__init__(broker_db, backend_db)
        module = importlib.import_module("flowrra018_app")
        self.app = module.app
        self.task = module.noop
        self.version = _dist_version("flowrra")
        executor = self.app._io_executor
        self.settings = {
            "worker": "redis_apps/flowrra018_app.py: app.start() until SIGTERM (1 process)",
            "io_workers": self.app._config.executor.io_workers,
            "producer": "IOExecutor._running = True, no worker coroutines",
            "result wait": "app.wait_for_result (pub/sub)",
            "queue": getattr(executor.broker, "_queue_key", "?"),
        }

    async def open(self) -> None:
        self.app._io_executor._running = True

    async def close(self) -> None:
        executor = self.app._io_executor
        executor._running = False
        await executor.broker.close()
        await executor.results.close()

    async def enqueue(self) -> Any:
        return await self.app.submit(self.task)

    async def wait(self, handle: Any, timeout: float) -> bool:
        try:
            await self.app.wait_for_result(handle, timeout=timeout)
        except TimeoutError:
            return False
        return True

    async def done(self, handle: Any) -> bool:
        result = await self.app.get_result(handle)
        return result is not None and bool(result.is_complete)

    async def missing(self, handles: list[Any]) -> list[Any]:
        out: list[Any] = []
        for first in range(0, len(handles), CHUNK):
            chunk = handles[first : first + CHUNK]
            raw = await self.backend_db.mget([f"flowrra:task:{h}" for h in chunk])
            for handle, data in zip(chunk, raw, strict=True):
                status = json.loads(data).get("status") if data else None
                if status not in ("success", "failed"):
                    out.append(handle)
        return out

    def worker_command(self) -> list[str]:
        return [sys.executable, str(APPS / "flowrra018_app.py")]


class ArqAdapter(Adapter):
    name = "arq"
    exact_counter = True  # the queue zset loses a job in the transaction that stores its result

    def __init__(self, broker_db: Any, backend_db: Any) -> None:
        super().__init__(broker_db, backend_db)
        from arq.constants import default_queue_name, result_key_prefix
        from arq.worker import Worker

        self.module = importlib.import_module("arq_app")
        self.queue_name = default_queue_name
        self.result_prefix = result_key_prefix
        self.version = _dist_version("arq")
        self.pool: Any = None
        self.settings = {
            "worker": "arq arq_app.WorkerSettings (1 process)",
            "max_jobs": _default(Worker.__init__, "max_jobs"),
            "worker poll_delay s": _default(Worker.__init__, "poll_delay"),
            "keep_result s": _default(Worker.__init__, "keep_result"),
            "result wait": f"job.result(poll_delay={CLIENT_POLL})",
            "results": "same database as the queue (12)",
        }

    async def open(self) -> None:
        from arq import create_pool

        self.pool = await create_pool(self.module.WorkerSettings.redis_settings)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()

    async def enqueue(self) -> Any:
        return await self.pool.enqueue_job("noop")

    async def wait(self, handle: Any, timeout: float) -> bool:
        try:
            await handle.result(timeout=timeout, poll_delay=CLIENT_POLL)
        except TimeoutError:
            return False
        return True

    async def done(self, handle: Any) -> bool:
        return bool(await self.broker_db.exists(self.result_prefix + handle.job_id))

    async def pending(self, n: int) -> int:
        return int(await self.broker_db.zcard(self.queue_name))

    def worker_command(self) -> list[str]:
        return [str(BIN / "arq"), "arq_app.WorkerSettings"]


class SaqAdapter(Adapter):
    name = "saq"
    exact_counter = True  # "incomplete" zset: ZREM in the transaction that stores the job

    def __init__(self, broker_db: Any, backend_db: Any) -> None:
        super().__init__(broker_db, backend_db)
        from saq.job import TERMINAL_STATUSES
        from saq.worker import Worker

        self.terminal = TERMINAL_STATUSES
        self.module = importlib.import_module("saq_app")
        self.queue = self.module.queue
        self.version = _dist_version("saq")
        self.settings = {
            "worker": "saq saq_app.settings (1 process)",
            "concurrency": _default(Worker.__init__, "concurrency"),
            "result wait": "job.refresh(until_complete=...) (pub/sub)",
            "results": "job records in the queue's database (12)",
        }

    async def open(self) -> None:
        await self.queue.connect()

    async def close(self) -> None:
        await self.queue.disconnect()

    async def enqueue(self) -> Any:
        return await self.queue.enqueue("noop")

    async def wait(self, handle: Any, timeout: float) -> bool:
        try:
            await handle.refresh(until_complete=timeout)
        except TimeoutError:
            return False
        return handle.status in self.terminal

    async def done(self, handle: Any) -> bool:
        return await self.broker_db.zscore(self.queue.namespace("incomplete"), handle.id) is None

    async def pending(self, n: int) -> int:
        return int(await self.broker_db.zcard(self.queue.namespace("incomplete")))

    def worker_command(self) -> list[str]:
        return [str(BIN / "saq"), "saq_app.settings"]


class TaskiqAdapter(Adapter):
    name = "taskiq"
    exact_counter = True  # database 13 holds one key per stored result and nothing else

    def __init__(self, broker_db: Any, backend_db: Any) -> None:
        super().__init__(broker_db, backend_db)
        from taskiq.cli.worker.args import WorkerArgs

        self.module = importlib.import_module("taskiq_app")
        self.version = f"{_dist_version('taskiq')} + taskiq-redis {_dist_version('taskiq-redis')}"
        self.settings = {
            "worker": "taskiq worker taskiq_app:broker --workers 1",
            "max_async_tasks": _default(WorkerArgs, "max_async_tasks"),
            "broker": "ListQueueBroker",
            "results": "RedisAsyncResultBackend (database 13)",
            "result wait": f"task.wait_result(check_interval={CLIENT_POLL})",
        }

    async def open(self) -> None:
        await self.module.broker.startup()

    async def close(self) -> None:
        await self.module.broker.shutdown()

    async def enqueue(self) -> Any:
        return await self.module.noop.kiq()

    async def wait(self, handle: Any, timeout: float) -> bool:
        from taskiq.exceptions import TaskiqResultTimeoutError

        try:
            await handle.wait_result(check_interval=CLIENT_POLL, timeout=timeout)
        except TaskiqResultTimeoutError:
            return False
        return True

    async def done(self, handle: Any) -> bool:
        return bool(await self.backend_db.exists(handle.task_id))

    async def pending(self, n: int) -> int:
        return n - int(await self.backend_db.dbsize())

    def worker_command(self) -> list[str]:
        concurrency = ["--max-async-tasks", str(CONCURRENCY)] if CONCURRENCY is not None else []
        return [str(BIN / "taskiq"), "worker", "taskiq_app:broker", "--workers", "1", *concurrency]


class DramatiqAdapter(Adapter):
    """dramatiq's client is synchronous: its calls block this event loop, which is fine
    because nothing else runs in it."""

    name = "dramatiq"
    exact_counter = True  # database 13 holds one key per stored result and nothing else

    def __init__(self, broker_db: Any, backend_db: Any) -> None:
        super().__init__(broker_db, backend_db)
        from dramatiq.worker import Worker

        self.module = importlib.import_module("dramatiq_app")
        self.version = _dist_version("dramatiq")
        self.settings = {
            "worker": "dramatiq dramatiq_app --processes 1",
            "threads": "8 (CLI default)",
            "worker_timeout ms": _default(Worker.__init__, "worker_timeout"),
            "task": "sync def noop(), actor(store_results=True)",
            "results": "Results middleware, RedisBackend (database 13)",
            "result wait": "message.get_result(block=True) (BRPOPLPUSH)",
        }

    async def close(self) -> None:
        self.module.broker.close()

    async def enqueue(self) -> Any:
        return self.module.noop.send()

    async def wait(self, handle: Any, timeout: float) -> bool:
        from dramatiq.results import ResultTimeout

        try:
            handle.get_result(
                backend=self.module.result_backend, block=True, timeout=int(timeout * 1000)
            )
        except ResultTimeout:
            return False
        return True

    async def done(self, handle: Any) -> bool:
        key = self.module.result_backend.build_message_key(handle)
        return bool(await self.backend_db.exists(key))

    async def pending(self, n: int) -> int:
        return n - int(await self.backend_db.dbsize())

    def worker_command(self) -> list[str]:
        return [str(BIN / "dramatiq"), "dramatiq_app", "--processes", "1"]


ADAPTERS: dict[str, type[Adapter]] = {
    cls.name: cls
    for cls in (
        FlowrraAdapter,
        Flowrra018Adapter,
        ArqAdapter,
        SaqAdapter,
        TaskiqAdapter,
        DramatiqAdapter,
    )
}


# -- measurements ------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.broker_db: Any = aioredis.Redis.from_url(BROKER_URL)
        self.backend_db: Any = aioredis.Redis.from_url(BACKEND_URL)
        self.adapter = ADAPTERS[args.system](self.broker_db, self.backend_db)
        self.log_path = Path(args.log_dir) / f"{args.system}-worker.log"
        self.pidfile = Path(args.pidfile) if args.pidfile else None

    async def check(self) -> None:
        """Connect and disconnect the producer side, nothing else."""
        try:
            await self.adapter.open()
            await self.adapter.close()
        finally:
            await self.broker_db.aclose()
            await self.backend_db.aclose()

    async def flush(self) -> None:
        await self.broker_db.flushdb()
        await self.backend_db.flushdb()

    async def redis_cpu(self) -> float:
        info = await self.broker_db.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    async def enqueue_single(self, n: int) -> tuple[dict[str, Any], list[Any]]:
        cpu0 = await self.redis_cpu()
        started = time.perf_counter()
        handles = [await self.adapter.enqueue() for _ in range(n)]
        elapsed = time.perf_counter() - started
        cpu = await self.redis_cpu() - cpu0
        return {"tasks_per_s": n / elapsed, "elapsed_s": elapsed, "redis_cpu_s": cpu}, handles

    async def enqueue_batch(self, n: int) -> dict[str, Any] | None:
        cpu0 = await self.redis_cpu()
        started = time.perf_counter()
        handles = await self.adapter.enqueue_batch(n)
        elapsed = time.perf_counter() - started
        if handles is None:
            return None
        if len(handles) != n:
            raise WorkloadError(f"batch enqueue returned {len(handles)} handles for {n} tasks")
        cpu = await self.redis_cpu() - cpu0
        return {"tasks_per_s": n / elapsed, "elapsed_s": elapsed, "redis_cpu_s": cpu}

    def _check_alive(self, worker: WorkerProcess) -> None:
        if not worker.alive():
            raise WorkloadError(
                f"{self.adapter.name} worker exited with {worker.proc and worker.proc.returncode}"
                f"; its log ({self.log_path}) ends:\n{worker.log_tail()}"
            )

    def _check_deadline(self, worker: WorkerProcess, started: float, deadline_s: float) -> None:
        self._check_alive(worker)
        if time.perf_counter() - started > deadline_s:
            raise TimeoutError

    async def _finished(self, handles: list[Any], first: bool) -> bool:
        """Whether the first result (``first``) / every result is stored."""
        adapter, n = self.adapter, len(handles)
        if adapter.exact_counter:
            pending = await adapter.pending(n)
            return pending < n if first else pending <= 0
        return await adapter.done(handles[0] if first else handles[-1])

    async def process(self, handles: list[Any]) -> tuple[dict[str, Any], WorkerProcess]:
        n = len(handles)
        deadline_s = max(60.0, n / 50)  # below 50 tasks/s something is broken
        redis0 = await self.redis_cpu()
        worker = WorkerProcess(self.adapter.worker_command(), self.log_path, self.pidfile)
        lines0 = worker.log_lines()
        started = time.perf_counter()
        worker.start()
        try:
            marks: dict[str, tuple[float, float, float]] = {}
            for phase in ("first", "last"):
                while not await self._finished(handles, first=phase == "first"):
                    self._check_deadline(worker, started, deadline_s)
                    await asyncio.sleep(PROBE_INTERVAL)
                marks[phase] = (time.perf_counter(), worker.cpu_seconds(), await self.redis_cpu())
            if not self.adapter.exact_counter:
                # The last task's result is there; check every other one once (this pass is
                # not timed: the mark above stands unless some result is still missing).
                left = await self.adapter.missing(handles)
                while left:
                    self._check_deadline(worker, started, deadline_s)
                    await asyncio.sleep(PROBE_INTERVAL)
                    left = await self.adapter.missing(left)
                    if not left:
                        marks["last"] = (
                            time.perf_counter(),
                            worker.cpu_seconds(),
                            await self.redis_cpu(),
                        )
        except TimeoutError:
            unfinished = (
                await self.adapter.pending(n)
                if self.adapter.exact_counter
                else len(await self.adapter.missing(handles))
            )
            worker.stop()
            raise WorkloadError(
                f"{unfinished} of {n} tasks unfinished after {deadline_s:.0f} s; "
                f"worker log ends:\n{worker.log_tail()}"
            ) from None
        except BaseException:
            worker.stop()
            raise
        (t_first, cpu_first, _), (t_last, cpu_last, redis_last) = marks["first"], marks["last"]
        elapsed = t_last - started
        steady = t_last - t_first
        lines = worker.log_lines() - lines0 - 1  # minus the "=====" header line
        return {
            "tasks_per_s": n / elapsed,
            "elapsed_s": elapsed,
            "first_result_s": t_first - started,
            "steady_tasks_per_s": (n - 1) / steady if steady > 0 else None,
            "worker_cpu_s": cpu_last,
            "worker_cpu_us_per_task": cpu_last / n * 1e6,
            "steady_worker_cpu_us_per_task": (cpu_last - cpu_first) / (n - 1) * 1e6
            if n > 1
            else None,
            "worker_startup_cpu_s": cpu_first,
            "redis_cpu_s": redis_last - redis0,
            "worker_log_lines_per_task": lines / n,
        }, worker

    async def latency(self, worker: WorkerProcess) -> dict[str, Any]:
        args, adapter = self.args, self.adapter
        samples: list[float] = []
        lost = warmup_lost = failed = 0
        first_error = None
        aborted = False
        for i in range(args.warmup + args.latency_n):
            measured = i >= args.warmup
            started = time.perf_counter()
            try:
                handle = await adapter.enqueue()
                ok = await adapter.wait(handle, args.timeout)
            except Exception as exc:
                failed += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"
                continue
            elapsed_ms = (time.perf_counter() - started) * 1e3
            if not ok:
                if measured:
                    lost += 1
                else:
                    warmup_lost += 1
                self._check_alive(worker)
                if lost + warmup_lost >= args.max_lost:
                    aborted = True
                    break
                continue
            if measured:
                samples.append(elapsed_ms)
        ordered = sorted(samples)
        return {
            "n": args.latency_n,
            "warmup": args.warmup,
            "timeout_s": args.timeout,
            "measured": len(ordered),
            "p50_ms": _percentile(ordered, 50) if ordered else None,
            "p95_ms": _percentile(ordered, 95) if ordered else None,
            "p99_ms": _percentile(ordered, 99) if ordered else None,
            "mean_ms": statistics.fmean(ordered) if ordered else None,
            "max_ms": ordered[-1] if ordered else None,
            "lost": lost,
            "warmup_lost": warmup_lost,
            "failed": failed,
            "first_error": first_error,
            "aborted_after_lost": aborted,
        }

    async def latency_only(self) -> dict[str, Any]:
        """``--runs`` runs of a fresh worker serving the round trips; medians and spreads."""
        runs: list[dict[str, Any]] = []
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(b"")
        await self.flush()
        await self.adapter.open()
        try:
            for _ in range(self.args.runs):
                await self.flush()
                worker = WorkerProcess(self.adapter.worker_command(), self.log_path, self.pidfile)
                worker.start()
                try:
                    runs.append(await self.latency(worker))
                finally:
                    worker.stop()
        finally:
            with contextlib.suppress(Exception):
                await self.adapter.close()
            await self.flush()
            await self.broker_db.aclose()
            await self.backend_db.aclose()
        return {"latency": _latency_summary(runs), "latency_runs": runs}

    async def run(self) -> dict[str, Any]:
        args, adapter = self.args, self.adapter
        runs: list[dict[str, Any]] = []
        latency: dict[str, Any] | None = None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(b"")  # the worker log holds this run's workers only
        await self.flush()
        await adapter.open()
        try:
            for run in range(args.runs):
                record: dict[str, Any] = {}
                await self.flush()
                record["enqueue_batch"] = await self.enqueue_batch(args.n)
                await self.flush()
                record["enqueue_single"], handles = await self.enqueue_single(args.n)
                record["process"], worker = await self.process(handles)
                try:
                    if run == args.runs - 1 and args.latency_n:
                        latency = await self.latency(worker)
                finally:
                    record["worker_exit"] = worker.stop()
                record["redis_cpu_us_per_task"] = (
                    (record["enqueue_single"]["redis_cpu_s"] + record["process"]["redis_cpu_s"])
                    / args.n
                    * 1e6
                )
                runs.append(record)
        finally:
            with contextlib.suppress(Exception):
                await adapter.close()
            await self.flush()
            await self.broker_db.aclose()
            await self.backend_db.aclose()
        return {
            "runs": runs,
            "enqueue_single": _summary([r["enqueue_single"] for r in runs], args.n),
            "enqueue_batch": _summary([r["enqueue_batch"] for r in runs], args.n),
            "process": _summary([r["process"] for r in runs], args.n),
            "redis_cpu_us_per_task": statistics.median(r["redis_cpu_us_per_task"] for r in runs),
            "latency": latency,
        }


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (``q`` in 0..100)."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _summary(records: list[dict[str, Any] | None], n: int) -> dict[str, Any] | None:
    """Medians over runs of every numeric field; ``redis_cpu_s`` also per task."""
    present = [r for r in records if r is not None]
    if not present:
        return None
    out: dict[str, Any] = {"n": n, "runs": len(present)}
    for key in present[0]:
        values = [r[key] for r in present if isinstance(r.get(key), int | float)]
        if values:
            out[key] = statistics.median(values)
            out[f"{key}_runs"] = values
    if "redis_cpu_s" in out:
        out["redis_cpu_us_per_task"] = out["redis_cpu_s"] / n * 1e6
    return out


def _latency_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each percentile's median over the runs, with its lowest and highest (the spread);
    lost and failed round trips summed."""
    out: dict[str, Any] = {
        key: sum(r[key] for r in runs) for key in ("n", "measured", "lost", "failed")
    }
    out["runs"] = len(runs)
    out["aborted_after_lost"] = any(r["aborted_after_lost"] for r in runs)
    out["first_error"] = next((r["first_error"] for r in runs if r["first_error"]), None)
    for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
            out[f"{key}_runs"] = values
    return out


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--system", choices=SYSTEMS, required=True)
    parser.add_argument("--n", type=_positive, default=20_000, help="tasks per run")
    parser.add_argument("--runs", type=_positive, default=3, help="runs (medians)")
    parser.add_argument("--latency-n", type=int, default=500, help="measured round trips")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up round trips")
    parser.add_argument("--timeout", type=float, default=5.0, help="round-trip timeout, s")
    parser.add_argument(
        "--max-lost", type=_positive, default=100, help="stop the latency loop after this many"
    )
    parser.add_argument(
        "--check", action="store_true", help="only import and connect; print version, settings"
    )
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="each run: a fresh worker, then only the round trips (no enqueue or process)",
    )
    parser.add_argument("--log-dir", default=str(BENCH / "results" / "logs"))
    parser.add_argument("--pidfile", help="append each worker's process-group id here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # A SIGTERM from the driver unwinds through the finally blocks (workers stopped, dbs
    # flushed) instead of killing this process outright.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Bench(args)
    report: dict[str, Any] = {
        "system": args.system,
        "version": bench.adapter.version,
        "settings": bench.adapter.settings,
        "batch_api": bench.adapter.batch_api,
        "hiredis": _dist_version("hiredis") if _installed("hiredis") else None,
        "python": platform.python_version(),
        "executable": sys.executable,
    }
    report["loop"] = LOOP
    report["concurrency"] = CONCURRENCY
    if CONCURRENCY is not None:  # the settings list the defaults; this run sets its own
        for key in ("concurrency", "max_jobs", "max_async_tasks"):
            bench.adapter.settings.pop(key, None)
    if args.check:
        asyncio.run(bench.check())
    elif args.latency_only:
        report.update(asyncio.run(bench.latency_only()))
    else:
        report.update(asyncio.run(bench.run()))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    try:
        main()
    except WorkloadError as exc:
        sys.exit(f"redis_workload.py: {exc}")
