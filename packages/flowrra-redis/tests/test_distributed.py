"""Real worker processes (``flowrra worker redis_app:app``) on a real Redis server: sharing
work, surviving SIGKILL and SIGTERM, a Redis restart, delayed retries across restarts,
CPU tasks, heartbeats and ``flowrra status``."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from apps import redis_app
from conftest import APPS, Workers
from flowrra_redis import RedisBackend, RedisBroker

from flowrra import Flowrra, TaskStatus
from flowrra.monitor import Monitor


def ran_counts(sync_redis: redis.Redis, prefix: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in sync_redis.hgetall(f"{prefix}:ran").items()}


async def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_two_workers_share_2000_tasks_each_result_delivered_once(
    producer: Flowrra, workers: Workers, sync_redis: redis.Redis, prefix: str
) -> None:
    first, second = workers.start("-c", "8"), workers.start("-c", "8")
    ids = await producer.submit_many(redis_app.record, [(n,) for n in range(2000)])
    assert len(set(ids)) == 2000
    results = await asyncio.gather(*(producer.wait_for_result(i, timeout=120) for i in ids))
    assert [r.result for r in results] == list(range(2000))
    assert all(r.status is TaskStatus.SUCCESS for r in results)
    counts = ran_counts(sync_redis, prefix)
    assert len(counts) == 2000 and set(counts.values()) == {1}  # nothing lost, nothing twice
    workers.stop_all()
    logs = [workers.output(first), workers.output(second)]
    assert all("worker stopped after " in log for log in logs), [log[-3000:] for log in logs]
    done = [int(log.rsplit("worker stopped after ", 1)[1].split()[0]) for log in logs]
    assert sum(done) == 2000 and min(done) > 0, done  # both took part


async def test_sigkilled_worker_loses_nothing(
    producer: Flowrra, workers: Workers, sync_redis: redis.Redis, prefix: str
) -> None:
    victim = workers.start("-c", "8", lease=2.0)
    ids = await producer.submit_many(redis_app.record, [(n, 0.02) for n in range(500)])
    await wait_until(lambda: len(ran_counts(sync_redis, prefix)) >= 100, 60, "100 tasks")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    survivor = workers.start("-c", "8", lease=2.0)
    results = await asyncio.gather(*(producer.wait_for_result(i, timeout=120) for i in ids))
    assert sorted(r.result for r in results) == list(range(500))
    counts = ran_counts(sync_redis, prefix)
    assert set(counts) == {str(n) for n in range(500)}  # every task ran, none lost
    assert survivor.poll() is None


async def test_sigterm_finishes_running_tasks_and_releases_the_rest(
    producer: Flowrra, workers: Workers, sync_redis: redis.Redis, prefix: str
) -> None:
    draining = workers.start("-c", "2", "--grace", "10")
    ids = await producer.submit_many(redis_app.record, [(n, 1.0) for n in range(6)])
    await wait_until(
        lambda: _leased(sync_redis, producer) == 2,
        20,
        "two tasks running",
    )
    started = time.monotonic()
    draining.send_signal(signal.SIGTERM)
    assert draining.wait(15) == 0
    assert time.monotonic() - started < 5  # it did not wait for the queued ones
    counts = ran_counts(sync_redis, prefix)
    assert len(counts) == 2  # the two in flight finished
    depths = await producer.broker.queue_depths()  # type: ignore[attr-defined]
    assert depths["leased"] == 0 and depths["queued"] == 4  # released at once, not leased
    workers.start("-c", "4")
    results = await asyncio.gather(*(producer.wait_for_result(i, timeout=30) for i in ids))
    assert sorted(r.result for r in results) == list(range(6))


def _leased(sync_redis: redis.Redis, app: Flowrra) -> int:
    assert isinstance(app.broker, RedisBroker)
    return int(sync_redis.zcard(app.broker.keys.leased))


async def test_priority_order_across_processes(
    producer: Flowrra, workers: Workers, sync_redis: redis.Redis, prefix: str
) -> None:
    priorities = [3, -5, 10**20, 0, -5, 3, 0, -(10**20)]
    ids = [
        await producer.submit(redis_app.stamp, f"{n}:{p}", priority=p)
        for n, p in enumerate(priorities)
    ]
    workers.start("-c", "1")
    results = await asyncio.gather(*(producer.wait_for_result(i, timeout=30) for i in ids))
    ran_order = [label for _, label in sorted(zip((r.result for r in results), ids, strict=True))]
    expected = sorted(range(len(priorities)), key=lambda n: (priorities[n], n))
    assert ran_order == [ids[n] for n in expected]


async def test_retry_due_time_survives_a_worker_restart(
    producer: Flowrra, workers: Workers, sync_redis: redis.Redis, prefix: str
) -> None:
    first = workers.start("-c", "2")
    task_id = await producer.submit(redis_app.fails_once, "r1")
    await wait_until(lambda: ran_counts(sync_redis, prefix).get("r1") == 1, 20, "first attempt")
    first.send_signal(signal.SIGTERM)
    first.wait(15)
    record = await producer.get_result(task_id)
    assert record is not None and record.status is TaskStatus.RETRYING
    assert (await producer.broker.queue_depths())["delayed"] == 1  # type: ignore[attr-defined]
    workers.start("-c", "2")
    result = await producer.wait_for_result(task_id, timeout=30)
    assert result.status is TaskStatus.SUCCESS and result.retries == 1
    assert result.result == "r1 ok after 2 runs"


async def test_cpu_tasks_run_in_the_workers_pool(producer: Flowrra, workers: Workers) -> None:
    worker = workers.start("-c", "2", "--cpu-workers", "2")
    ids = [await producer.submit(redis_app.square_in_pool, n) for n in range(6)]
    results = [await producer.wait_for_result(i, timeout=60) for i in ids]
    assert [r.result[0] for r in results] == [n * n for n in range(6)]
    pids = {r.result[1] for r in results}
    assert worker.pid not in pids and os.getpid() not in pids


async def test_heartbeats_and_flowrra_status(
    producer: Flowrra, workers: Workers, redis_url: str, prefix: str
) -> None:
    worker = workers.start("-c", "3")
    broker = producer.broker
    assert isinstance(broker, RedisBroker)

    async def alive() -> list[dict[str, object]]:
        deadline = time.monotonic() + 20
        while not (found := await broker.workers()):
            assert time.monotonic() < deadline, "no heartbeat"
            await asyncio.sleep(0.1)
        return found

    [info] = await alive()
    assert info["pid"] == worker.pid and info["concurrency"] == 3
    assert info["host"] == socket.gethostname() and "record" in info["tasks"]  # type: ignore[operator]
    status = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "flowrra", "status", "redis_app:app", "--json"],
        cwd=APPS,
        env=workers.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert [w["pid"] for w in shown["workers"]] == [worker.pid]
    assert set(shown["queues"]) == {"queued", "delayed", "leased", "dead"}
    shown_text = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "flowrra", "status", "redis_app:app"],
        cwd=APPS,
        env=workers.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    text = shown_text.stdout
    assert "workers alive: 1" in text and f"pid={worker.pid}" in text

    # The read model the web UI uses, from this process that runs nothing itself.
    monitor = Monitor(producer)
    ids = [await producer.submit("record", n) for n in range(5)]
    for task_id in ids:
        await producer.wait_for_result(task_id, timeout=30)
    stats = await monitor.stats()
    assert stats["totals"]["success"] == 5 and stats["workers"] == 1
    assert sum(b["completed"] for b in stats["throughput"]) == 5
    assert set(stats["queues"]) == {"queued", "delayed", "leased", "dead"}
    assert [w["pid"] for w in await monitor.workers()] == [worker.pid]
    listed = await monitor.executions(task_name="record", limit=2, offset=1)
    assert [e["task_id"] for e in listed] == ids[::-1][1:3]
    workers.stop_all()
    assert await broker.workers() == []  # a clean stop retires the heartbeat


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, callable]]:  # type: ignore[valid-type]
    """A redis-server of this test's own (append-only file on), so it can be restarted."""
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1":
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [
        server,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        str(tmp_path),
    ]
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=port).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "private redis did not start"
                time.sleep(0.05)

    def stop() -> None:
        procs[-1].terminate()
        procs[-1].wait(10)

    start()
    yield f"redis://127.0.0.1:{port}/0", (start, stop)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_worker_survives_a_redis_restart(
    private_redis: tuple[str, tuple],
    workers: Workers,
    prefix: str,  # type: ignore[type-arg]
) -> None:
    url, (start, stop) = private_redis
    app = Flowrra(broker=RedisBroker(url, prefix=prefix), backend=RedisBackend(url, prefix=prefix))
    for handle in redis_app.app.registry:
        app.registry.register(handle)
    worker = workers.start("-c", "4", url=url)
    first = await app.submit(redis_app.stamp, "before")
    assert (await app.wait_for_result(first, timeout=30)).status is TaskStatus.SUCCESS
    stop()
    await asyncio.sleep(1.5)  # the worker sees the server gone and backs off
    start()
    second = await app.submit(redis_app.stamp, "after")
    result = await app.wait_for_result(second, timeout=60)
    assert result.status is TaskStatus.SUCCESS
    assert worker.poll() is None  # it carried on
    await app.broker.close()
    await app.backend.close()


async def test_live_events_reach_a_monitor_in_another_process(
    producer: Flowrra, workers: Workers
) -> None:
    workers.start()
    async with Monitor(producer).events() as events:
        task_id = await producer.submit("record", 7)
        statuses = []
        async with asyncio.timeout(30):
            async for event in events:
                if event.task_id != task_id:
                    continue
                statuses.append(event.status)
                if event.status is TaskStatus.SUCCESS:
                    break
    # PENDING from this process's submit; RUNNING and SUCCESS from the worker process.
    assert statuses == [TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.SUCCESS]
    assert event.task_name == "record" and event.at is not None


@pytest.mark.parametrize(
    ("args", "met"), [(["-c", "3"], True), (["-c", "3", "--threads", "2"], False)]
)
async def test_a_worker_runs_blocking_tasks_in_threads(
    producer: Flowrra, workers: Workers, prefix: str, args: list[str], met: bool
) -> None:
    """Three blocking tasks that wait for each other: a worker with three slots runs them
    in three threads at once; ``--threads 2`` leaves the third outside, and all three give
    up (so each one's outcome shows how many threads the worker really had)."""
    workers.start(*args)
    group = uuid.uuid4().hex[:8]
    ids = [await producer.submit("meet_in_thread", group, 3, 3.0) for _ in range(3)]
    results = [await producer.wait_for_result(i, timeout=60) for i in ids]
    expected = TaskStatus.SUCCESS if met else TaskStatus.FAILED
    assert [r.status for r in results] == [expected] * 3, [r.error for r in results]


async def test_the_ui_counts_and_indexes_match_the_truth(
    producer: Flowrra, workers: Workers, prefix: str
) -> None:
    """Issue 15: after real tasks (successes, a retry that succeeds, failures after a
    retry) the backend's counts are exact, and pages by cursor from its indexes give each
    record once, filtered by status and task, while more tasks are submitted."""
    backend = producer.backend
    assert isinstance(backend, RedisBackend)
    workers.start("-c", "8")
    ok = await producer.submit_many(redis_app.record, [(n,) for n in range(60)])
    retried = [await producer.submit(redis_app.fails_once, f"once-{n}") for n in range(3)]
    failed = [await producer.submit(redis_app.always_fails, f"fail-{n}") for n in range(4)]
    for task_id in [*ok, *retried, *failed]:
        await producer.wait_for_result(task_id, timeout=60)

    counts = await backend.counts(5)
    assert counts["totals"] == {
        "pending": 0, "running": 0, "retrying": 0,
        "success": 63, "failed": 4, "retries": 3 + 4,
    }  # fmt: skip
    per_minute = counts["per_minute"]
    assert sum(m["success"] for m in per_minute) == 63
    assert sum(m["failed"] for m in per_minute) == 4
    stats = await Monitor(producer).stats(minutes=5)
    assert stats["exact"] and stats["totals"]["success"] == 63 and stats["retries"] == 7
    assert {f["task_id"] for f in stats["recent_failures"]} == set(failed)

    async def walk(**filters: object) -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            page, cursor = await backend.list_page(limit=7, cursor=cursor, **filters)  # type: ignore[arg-type]
            seen += [record.task_id for record in page]
            await producer.submit(redis_app.record, 1000 + len(seen))  # newer ones arrive
            if cursor is None:
                return seen

    everything = await walk()
    assert len(everything) == len(set(everything))
    assert set(everything) >= {*ok, *retried, *failed}
    assert await walk(status=TaskStatus.FAILED) == failed[::-1]
    assert sorted(await walk(task_name="fails_once")) == sorted(retried)
    assert await walk(task_name="always_fails", status=TaskStatus.SUCCESS) == []
    successes = await walk(status=TaskStatus.SUCCESS)
    assert set(successes) >= {*ok, *retried} and not set(successes) & set(failed)
    workers.stop_all()
