"""In-memory Flowrra workloads; prints ONE JSON line with the measurements.

Runs under whichever interpreter starts it and benchmarks the ``flowrra`` that interpreter
imports: this repository's (the project venv) or the 0.1.8 release (its own venv, made by
``run_core.py``). Which one it is comes from ``flowrra.__version__``.

Workloads (the broker and the result store are the in-memory defaults of each version):

* throughput: submit ``--n`` no-op tasks, one ``await app.submit`` at a time, then
  ``await app.wait_for_result`` each; tasks/s from the first submit to the last result,
  median of ``--runs`` runs, each on a fresh app.
* latency: ``--latency-n`` sequential submit → wait_for_result round trips after
  ``--warmup`` warm-up ones; p50 and p99 in microseconds; a round trip that does not
  return within ``--timeout`` seconds is counted as lost.
* memory (only with ``--rss``, and then only it): ``--rss-n`` no-op tasks submitted in
  windows of ``--window``, each window's results awaited before the next, with the default
  store bounds; peak RSS of this process (``ru_maxrss``, Linux: KiB) in MB.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import platform
import resource
import statistics
import sys
import time
from typing import Any

import flowrra

VERSION = str(flowrra.__version__)
LEGACY_VERSION = "0.1.8"
IS_LEGACY = VERSION == LEGACY_VERSION

#: Per-result wait bound (seconds) in the throughput and memory workloads: a stall shows up
#: as a counted loss instead of a hung benchmark.
BULK_TIMEOUT = 60.0


def _version_tuple(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


if _version_tuple(VERSION) < (0, 2) and not IS_LEGACY:
    sys.exit(f"core_workload.py knows this repository's flowrra and 0.1.8, not {VERSION}")


def make_app(max_entries: int | None) -> tuple[Any, Any, dict[str, Any]]:
    """A fresh app with a registered no-op task: ``(app, task, settings)``.

    ``max_entries``: the in-memory result store's bound for this repository's flowrra
    (``None``: keep its default). 0.1.8's store has no bound and ignores it.
    """

    async def noop() -> None:
        return None

    if IS_LEGACY:
        app: Any = flowrra.Flowrra.from_urls()
        task = app.task()(noop)
        executor = app._config.executor
        settings = {
            "app": "Flowrra.from_urls()",
            "io_workers": executor.io_workers,
            "max_queue_size": executor.max_queue_size,
            "result_store": "InMemoryBackend (unbounded)",
        }
        return app, task, settings

    from flowrra import BackendConfig, Config

    if max_entries is None:
        config, spelled = Config(), "Flowrra(Config())"
    else:
        config = Config(backend=BackendConfig(max_entries=max_entries))
        spelled = f"Flowrra(Config(backend=BackendConfig(max_entries={max_entries})))"
    app = flowrra.Flowrra(config)
    task = app.task()(noop)
    backend = config.backend or BackendConfig()
    settings = {
        "app": spelled,
        "num_workers": config.executor.num_workers,
        "max_queue_size": config.executor.max_queue_size,
        "result_store": f"MemoryBackend(max_entries={backend.max_entries}, ttl={backend.ttl})",
    }
    return app, task, settings


def _succeeded(result: Any) -> bool:
    return str(result.status.value) == "success"


async def _collect(app: Any, task_ids: list[str], timeout: float) -> tuple[int, int]:
    """Wait for each id in turn: ``(lost, failed)``."""
    lost = failed = 0
    for task_id in task_ids:
        try:
            result = await app.wait_for_result(task_id, timeout=timeout)
        except TimeoutError:
            lost += 1
            continue
        if not _succeeded(result):
            failed += 1
    return lost, failed


async def throughput_once(n: int) -> dict[str, Any]:
    app, task, settings = make_app(max_entries=n)
    async with app:
        started = time.perf_counter()
        task_ids: list[str] = []
        for _ in range(n):
            task_ids.append(await app.submit(task))
        submitted = time.perf_counter()
        lost, failed = await _collect(app, task_ids, BULK_TIMEOUT)
        finished = time.perf_counter()
    elapsed = finished - started
    return {
        "tasks_per_s": n / elapsed,
        "elapsed_s": elapsed,
        "submit_s": submitted - started,
        "lost": lost,
        "failed": failed,
        "settings": settings,
    }


async def throughput(n: int, runs: int) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for _ in range(runs):
        gc.collect()
        results.append(await throughput_once(n))
    rates = [r["tasks_per_s"] for r in results]
    return {
        "n": n,
        "runs": runs,
        "tasks_per_s": statistics.median(rates),
        "tasks_per_s_runs": rates,
        "elapsed_s_runs": [r["elapsed_s"] for r in results],
        "submit_s_runs": [r["submit_s"] for r in results],
        "lost": sum(r["lost"] for r in results),
        "failed": sum(r["failed"] for r in results),
        "settings": results[0]["settings"],
    }


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (``q`` in 0..100)."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def latency(n: int, warmup: int, timeout: float) -> dict[str, Any]:
    app, task, settings = make_app(max_entries=None)
    samples: list[float] = []
    lost = failed = warmup_lost = 0
    gc.collect()
    async with app:
        for i in range(warmup + n):
            measured = i >= warmup
            started = time.perf_counter()
            task_id = await app.submit(task)
            try:
                result = await app.wait_for_result(task_id, timeout=timeout)
            except TimeoutError:
                if measured:
                    lost += 1
                else:
                    warmup_lost += 1
                continue
            elapsed_us = (time.perf_counter() - started) * 1e6
            if measured:
                samples.append(elapsed_us)
                if not _succeeded(result):
                    failed += 1
    ordered = sorted(samples)
    return {
        "n": n,
        "warmup": warmup,
        "timeout_s": timeout,
        "p50_us": _percentile(ordered, 50) if ordered else None,
        "p99_us": _percentile(ordered, 99) if ordered else None,
        "mean_us": statistics.fmean(ordered) if ordered else None,
        "max_us": ordered[-1] if ordered else None,
        "lost": lost,
        "warmup_lost": warmup_lost,
        "failed": failed,
        "settings": settings,
    }


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def memory(total: int, window: int) -> dict[str, Any]:
    app, task, settings = make_app(max_entries=None)
    gc.collect()
    baseline = _max_rss_mb()
    lost = failed = 0
    started = time.perf_counter()
    async with app:
        for first in range(0, total, window):
            task_ids: list[str] = []
            for _ in range(min(window, total - first)):
                task_ids.append(await app.submit(task))
            window_lost, window_failed = await _collect(app, task_ids, BULK_TIMEOUT)
            lost += window_lost
            failed += window_failed
    elapsed = time.perf_counter() - started
    return {
        "n": total,
        "window": window,
        "peak_rss_mb": _max_rss_mb(),
        "rss_before_mb": baseline,
        "elapsed_s": elapsed,
        "lost": lost,
        "failed": failed,
        "settings": settings,
    }


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=_positive, default=100_000, help="tasks per throughput run")
    parser.add_argument("--runs", type=_positive, default=3, help="throughput runs (median)")
    parser.add_argument("--latency-n", type=_positive, default=2_000, help="measured round trips")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up round trips")
    parser.add_argument("--timeout", type=float, default=5.0, help="round-trip timeout, seconds")
    parser.add_argument(
        "--rss", action="store_true", help="run only the memory workload and report peak RSS"
    )
    parser.add_argument("--rss-n", type=_positive, default=1_000_000, help="tasks for --rss")
    parser.add_argument("--window", type=_positive, default=1_000, help="window size for --rss")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.rss:
        return {"memory": await memory(args.rss_n, args.window)}
    return {
        "throughput": await throughput(args.n, args.runs),
        "latency": await latency(args.latency_n, args.warmup, args.timeout),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report: dict[str, Any] = {
        "flowrra_version": VERSION,
        "flowrra": "0.1.8 (PyPI)" if IS_LEGACY else "this repository",
        "python": platform.python_version(),
        "executable": sys.executable,
    }
    report.update(asyncio.run(run(args)))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
