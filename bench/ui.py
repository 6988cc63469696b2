"""The web UI's data path on Redis at volume: what one API call costs, and what it does to
the host's event loop (issue 15, "cost proportional to the page"). Not a test.

    python bench/ui.py                      # 100,000 records; about a minute
    python bench/ui.py --records 1000000    # the issue's target volume
    python bench/ui.py --write-cost         # the per-task cost of storing records
    python bench/ui.py --gc-freeze          # gc.freeze() before the loop-lag phases

It fills Redis (``--redis``, default the local server, database 0) under a fresh key
prefix with ``--records`` complete records (1% FAILED, four task names; stored as workers
store them: the backend's ``store_many``, so whatever indexes the tree keeps are built),
calls the UI's API through :func:`flowrra_ui.service.dispatch` (no HTTP: the data path
alone) and prints medians and p99 in milliseconds of:

- ``first page``: ``/api/executions?limit=50``;
- ``deep page``: the page half way down the history (by ``cursor`` where the tree pages by
  cursor, by ``offset`` where it pages by offset);
- ``failed 1%``: ``/api/executions?status=failed&limit=50`` (the failed records' index);
- ``task 25%``: ``/api/executions?task=<one of the four names>&limit=50`` (that task's
  index);
- ``success 99%``: ``/api/executions?status=success&limit=50`` (no index of its own: read
  from the index of every record, skipping the others);
- ``pending 0%``: ``/api/executions?status=pending&limit=50`` with no pending record (the
  worst case of a status without an index: one call looks at 1,000 ids, finds none and
  answers an empty page with a ``next_cursor``);
- ``stats``: ``/api/stats``;
- ``loop lag``: while 8 clients request deep pages back to back (``--lag-seconds``, and
  each at least once), how late a 1 ms timer on the same loop fires (median, p99, max):
  what the host app's own endpoints wait; and ``idle lag``, the same timer with no
  client (what the machine's load alone costs); with each, the full (generation 2)
  garbage collections that ran meanwhile and the longest of them: a full collection
  walks every object of the process, and its pause lands on whatever timer waits.
  ``--gc-freeze`` calls :func:`gc.freeze` first (what a host app may do once started:
  the objects it holds then are left out of later collections).

The prefix's keys are deleted at the end. It runs against whatever ``flowrra``,
``flowrra_redis`` and ``flowrra_ui`` are importable, so ``PYTHONPATH`` pointing at another
tree's ``src`` folders measures that tree (main before, a branch after).

``--write-cost`` measures the store path instead: N tasks' PENDING (one burst per 100
tasks, as ``submit_many`` sends them) then RUNNING and SUCCESS (one burst per 100 tasks,
as a busy worker sends them), µs per task, median of ``--runs``: the client's wall time,
and the server's time in the scripts (``INFO commandstats``: every client's, so give it a
Redis of its own, e.g. ``redis-server --port 6393 --save ""`` and
``--redis redis://127.0.0.1:6393/0``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from flowrra_redis import RedisBackend
from flowrra_ui.service import UIService, dispatch

from flowrra import Flowrra
from flowrra.task import TaskResult, TaskStatus, new_task_id

NAMES = ("send_email", "resize_image", "charge_card", "sync_account")


def _record(task_id: str, status: TaskStatus, n: int, at: float) -> TaskResult:
    complete = status in (TaskStatus.SUCCESS, TaskStatus.FAILED)
    return TaskResult(
        task_id,
        status,
        task_name=NAMES[n % len(NAMES)],
        result={"ok": True, "n": n} if status is TaskStatus.SUCCESS else None,
        error="RuntimeError: card declined" if status is TaskStatus.FAILED else None,
        args=(n, f"customer-{n:06d}"),
        kwargs={"retry": False},
        submitted_at=at,
        started_at=at + 0.001 if complete else None,
        finished_at=at + 0.01 if complete else None,
    )


async def fill(backend: RedisBackend, records: int) -> None:
    start = time.time() - records * 0.01  # one record each 10 ms, the newest now
    batch: list[TaskResult] = []
    for n in range(records):
        status = TaskStatus.FAILED if n % 100 == 37 else TaskStatus.SUCCESS
        batch.append(_record(new_task_id(), status, n, start + n * 0.01))
        if len(batch) == 5000:
            await backend.store_many(batch)
            batch = []
    if batch:
        await backend.store_many(batch)


async def delete_prefix(backend: RedisBackend) -> None:
    client = backend.client
    base = backend.keys.base
    doomed: list[Any] = []
    async for key in client.scan_iter(match=f"{base}*", count=5000):
        doomed.append(key)
        if len(doomed) >= 5000:
            await client.unlink(*doomed)
            doomed = []
    if doomed:
        await client.unlink(*doomed)


async def _script_usec(backend: RedisBackend) -> float:
    """Microseconds the server spent in EVAL and EVALSHA so far (every client's)."""
    stats = await backend.client.info("commandstats")
    return float(
        sum(stats.get(f"cmdstat_{name}", {}).get("usec", 0) for name in ("evalsha", "eval"))
    )


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{statistics.median(ordered) * 1000:8.1f} {p99 * 1000:8.1f}"


async def timed(call: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - began)
    return samples


async def api(ui: UIService, path: str, **query: str) -> Any:
    status, body = await dispatch(ui, "GET", path, query)
    if status != 200:
        raise RuntimeError(f"{path} {query}: {status} {body}")
    return body


async def deep_query(ui: UIService, depth: int) -> dict[str, str]:
    """The query of the page ``depth`` records down: by cursor when the tree has one."""
    first = await api(ui, "/api/executions", limit="50")
    if "next_cursor" not in first:
        return {"limit": "50", "offset": str(depth)}
    walked, query = 0, {"limit": "500"}
    while walked < depth:
        page = await api(ui, "/api/executions", **query)
        walked += len(page["items"])
        if page["next_cursor"] is None:
            break
        query = {"limit": "500", "cursor": page["next_cursor"]}
    return {"limit": "50", "cursor": query.get("cursor", "")}


class FullCollections:
    """The full (generation 2) garbage collections while it is entered, and their pauses
    in seconds."""

    def __enter__(self) -> list[float]:
        self.pauses: list[float] = []
        self._began = 0.0
        gc.callbacks.append(self._note)
        return self.pauses

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._began)


def _collections(pauses: list[float]) -> str:
    longest = f", longest {max(pauses) * 1000:.1f} ms" if pauses else ""
    return f"{len(pauses)} full gc{longest}"


async def loop_lag(
    ui: UIService, query: dict[str, str], clients: int, seconds: float
) -> tuple[list[float], list[float]]:
    """How late a 1 ms timer fires while ``clients`` request ``query`` back to back, each
    at least once and until ``seconds`` have passed; and the full garbage collections'
    pauses meanwhile."""
    with FullCollections() as pauses:
        return await _loop_lag(ui, query, clients, seconds), pauses


async def _loop_lag(
    ui: UIService, query: dict[str, str], clients: int, seconds: float
) -> list[float]:
    lags: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        loop = asyncio.get_running_loop()
        while not done.is_set():
            began = loop.time()
            await asyncio.sleep(0.001)
            lags.append(max(0.0, loop.time() - began - 0.001))

    async def client() -> None:
        until = time.perf_counter() + seconds
        await api(ui, "/api/executions", **query)
        while time.perf_counter() < until:
            await api(ui, "/api/executions", **query)

    prober = asyncio.create_task(probe())
    if clients:
        await asyncio.gather(*(client() for _ in range(clients)))
    else:
        await asyncio.sleep(seconds)
    done.set()
    await prober
    return lags


async def read_bench(args: argparse.Namespace) -> None:
    prefix = f"bench-ui-{uuid.uuid4().hex[:10]}"
    app = Flowrra.from_urls(backend=f"{args.redis}?prefix={prefix}")
    backend = app.backend
    assert isinstance(backend, RedisBackend)
    await backend.connect()
    try:
        began = time.perf_counter()
        await fill(backend, args.records)
        print(
            f"# {args.records:,} records stored in {time.perf_counter() - began:.1f} s "
            f"(prefix {prefix}); runs: {args.runs}"
        )
        ui = UIService(app, guarded=True)
        deep = await deep_query(ui, args.records // 2)
        cases: list[tuple[str, str, dict[str, str]]] = [
            ("first page", "/api/executions", {"limit": "50"}),
            ("deep page", "/api/executions", deep),
            ("failed 1%", "/api/executions", {"status": "failed", "limit": "50"}),
            ("task 25%", "/api/executions", {"task": NAMES[1], "limit": "50"}),
            ("success 99%", "/api/executions", {"status": "success", "limit": "50"}),
            ("pending 0%", "/api/executions", {"status": "pending", "limit": "50"}),
            ("stats", "/api/stats", {}),
        ]
        print(f"{'call':<12} {'median':>8} {'p99':>8}   (ms)")
        for name, path, query in cases:
            await api(ui, path, **query)  # warm
            samples = await timed(lambda p=path, q=query: api(ui, p, **q), args.runs)
            print(f"{name:<12} {_ms(samples)}")
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
        idle, pauses = await loop_lag(ui, deep, clients=0, seconds=args.lag_seconds)
        print(
            f"{'idle lag':<12} {_ms(idle)}   max {max(idle) * 1000:.1f} ms "
            f"(no clients: the machine's noise floor, {len(idle)} probes; "
            f"{_collections(pauses)})"
        )
        lags, pauses = await loop_lag(ui, deep, clients=8, seconds=args.lag_seconds)
        print(
            f"{'loop lag':<12} {_ms(lags)}   max {max(lags) * 1000:.1f} ms "
            f"(8 clients on deep pages, {len(lags)} probes; {_collections(pauses)})"
        )
    finally:
        await delete_prefix(backend)
        await backend.close()


async def write_cost(args: argparse.Namespace) -> None:
    prefix = f"bench-ui-w-{uuid.uuid4().hex[:10]}"
    backend = RedisBackend(args.redis, prefix=prefix)
    await backend.connect()
    per_task: list[float] = []
    server: list[float] = []
    try:
        for _ in range(args.runs):
            scripts_before = await _script_usec(backend)
            now = time.time()
            ids = [new_task_id() for _ in range(args.n)]
            began = time.perf_counter()
            for i in range(0, args.n, 100):
                chunk = ids[i : i + 100]
                await backend.store_many(
                    [_record(t, TaskStatus.PENDING, n, now) for n, t in enumerate(chunk)]
                )
            for i in range(0, args.n, 100):
                chunk = ids[i : i + 100]
                for n, t in enumerate(chunk):
                    backend.store(t, _record(t, TaskStatus.RUNNING, n, now))
                await asyncio.sleep(0)  # a worker's RUNNING records go out on their own
                await asyncio.gather(
                    *(
                        backend.store(t, _record(t, TaskStatus.SUCCESS, n, now))
                        for n, t in enumerate(chunk)
                    )
                )
            per_task.append((time.perf_counter() - began) / args.n)
            server.append((await _script_usec(backend) - scripts_before) / args.n)
            await delete_prefix(backend)
        print(
            f"store PENDING, RUNNING, SUCCESS: {statistics.median(per_task) * 1e6:.1f} µs per "
            f"task (median of {args.runs} x {args.n:,}; runs: "
            f"{', '.join(f'{x * 1e6:.1f}' for x in per_task)})"
        )
        print(
            f"Redis running the scripts: {statistics.median(server):.2f} µs per task (runs: "
            f"{', '.join(f'{x:.2f}' for x in server)}; INFO commandstats, so on a server of "
            "its own only)"
        )
    finally:
        await delete_prefix(backend)
        await backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=50, help="calls per case")
    parser.add_argument("--lag-seconds", type=float, default=3.0, help="loop-lag phase, s")
    parser.add_argument("--write-cost", action="store_true")
    parser.add_argument(
        "--gc-freeze", action="store_true", help="gc.freeze() before the loop-lag phases"
    )
    parser.add_argument("--n", type=int, default=20_000, help="tasks per write-cost run")
    args = parser.parse_args()
    print(f"# {Path(__file__).name} against {__import__('flowrra_ui').__file__}")
    asyncio.run(write_cost(args) if args.write_cost else read_bench(args))


if __name__ == "__main__":
    main()
