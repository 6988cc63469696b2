"""``flowrra worker --metrics-port``: a real worker process on real Redis, scraped over
HTTP while and after it runs tasks that succeed, fail, retry and are dead-lettered."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import redis
from conftest import Workers, free_port, scrape, value, wait_for

from flowrra import Flowrra, TaskStatus
from flowrra.registry import TaskHandle

pytestmark = pytest.mark.timeout(120)


def task(app: Flowrra, name: str) -> TaskHandle[..., Any]:
    handle = app.registry.get(name)
    assert handle is not None, name
    return handle


def started(workers: Workers, proc: subprocess.Popen[str], port: int) -> None:
    """Wait until ``proc`` serves its metrics (or fail with its output if it died)."""
    try:
        wait_for(port, lambda samples: True, timeout=30)
    except AssertionError:
        raise AssertionError(
            f"no metrics on {port}; worker said:\n{workers.output(proc)}"
        ) from None
    assert proc.poll() is None, workers.output(proc)


async def test_a_scraped_worker_counts_what_it_ran(
    workers: Workers, producer: Flowrra, sync_redis: redis.Redis, prefix: str
) -> None:
    port = free_port()
    proc = workers.start("--metrics-port", str(port), "--metrics-host", "127.0.0.1", "-c", "4")
    started(workers, proc, port)

    # Tasks that are due in ten minutes: the worker does not consume them, the queue
    # depth gauge shows them (sampled every 5 s).
    for i in range(3):
        await producer.submit(task(producer, "ok"), i, delay=600)
    wait_for(port, lambda s: value(s, "flowrra_queue_depth", state="delayed") == 3)

    ids = [await producer.submit(task(producer, "ok"), i) for i in range(5)]
    ids.append(await producer.submit(task(producer, "boom")))
    ids.append(await producer.submit(task(producer, "flaky"), "a"))
    ids.append(await producer.submit(task(producer, "flaky"), "b"))
    ids.append(await producer.submit(task(producer, "spawn"), 2))
    statuses = [(await producer.wait_for_result(i, timeout=60)).status for i in ids]
    assert statuses.count(TaskStatus.FAILED) == 1  # boom

    # spawn's two ok tasks may run after spawn's own result is stored
    samples = wait_for(
        port, lambda s: value(s, "flowrra_tasks_succeeded_total", task_name="ok") == 7
    )

    def count(metric: str, name: str) -> float:
        return value(samples, metric, task_name=name)

    assert count("flowrra_tasks_succeeded_total", "ok") == 7
    assert count("flowrra_tasks_succeeded_total", "flaky") == 2
    assert count("flowrra_tasks_succeeded_total", "spawn") == 1
    assert count("flowrra_tasks_failed_total", "boom") == 1
    assert count("flowrra_tasks_retried_total", "flaky") == 2
    assert count("flowrra_tasks_retried_total", "ok") == 0
    assert count("flowrra_tasks_failed_total", "ok") == 0
    # Submitted where it was submitted: the worker counts what its tasks submitted.
    assert count("flowrra_tasks_submitted_total", "ok") == 2
    # A histogram observation per attempt: flaky ran twice for each label.
    for name, attempts in (("ok", 7), ("boom", 1), ("flaky", 4), ("spawn", 1)):
        assert count("flowrra_task_duration_seconds_count", name) == attempts, name
        assert count("flowrra_task_queue_wait_seconds_count", name) == attempts, name
        assert count("flowrra_tasks_in_flight", name) == 0, name
    assert count("flowrra_task_duration_seconds_sum", "ok") >= 0
    assert value(samples, "flowrra_queue_depth", state="delayed") == 3
    assert value(samples, "flowrra_queue_depth", state="queued") >= 0

    assert workers.stop(proc) == 0, workers.output(proc)


async def test_in_flight_while_a_task_runs_and_back_to_zero(
    workers: Workers, producer: Flowrra, sync_redis: redis.Redis, prefix: str
) -> None:
    port = free_port()
    proc = workers.start("--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    started(workers, proc, port)
    hold = task(producer, "hold")
    ids = [await producer.submit(hold, "gate"), await producer.submit(hold, "gate")]
    name = "hold"
    wait_for(port, lambda s: value(s, "flowrra_tasks_in_flight", task_name=name) == 2)
    sync_redis.set(f"{prefix}:gate", 1)
    for task_id in ids:
        assert (await producer.wait_for_result(task_id, timeout=60)).status is TaskStatus.SUCCESS
    samples = wait_for(
        port, lambda s: value(s, "flowrra_tasks_succeeded_total", task_name=name) == 2
    )
    assert value(samples, "flowrra_tasks_in_flight", task_name=name) == 0


async def test_a_dead_lettered_message_is_counted(
    workers: Workers, producer: Flowrra, redis_url: str, prefix: str
) -> None:
    port = free_port()
    proc = workers.start("--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    started(workers, proc, port)

    @producer.task(name="not_in_the_worker")
    async def ghost() -> None: ...

    task_id = await ghost.submit()
    result = await producer.wait_for_result(task_id, timeout=60)
    assert result.status is TaskStatus.FAILED
    samples = wait_for(
        port,
        lambda s: value(s, "flowrra_tasks_dead_lettered_total", task_name="not_in_the_worker") == 1,
    )
    assert value(samples, "flowrra_tasks_failed_total", task_name="not_in_the_worker") == 0
    assert scrape(port)  # still serving
