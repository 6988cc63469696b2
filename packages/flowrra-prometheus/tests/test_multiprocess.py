"""prometheus-client's multi-process mode: two ``flowrra worker`` processes sharing
``PROMETHEUS_MULTIPROC_DIR``; one scrape shows the sum of both."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from conftest import Workers, free_port, value, wait_for
from test_worker import started, task

from flowrra import Flowrra, TaskStatus

pytestmark = pytest.mark.timeout(120)


async def test_one_scrape_aggregates_two_worker_processes(
    workers: Workers, producer: Flowrra, sync_redis: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    port_a, port_b = free_port(), free_port()
    a = workers.start(
        "--metrics-port", str(port_a), "--metrics-host", "127.0.0.1", "-c", "1", env=env
    )
    b = workers.start(
        "--metrics-port", str(port_b), "--metrics-host", "127.0.0.1", "-c", "1", env=env
    )
    started(workers, a, port_a)
    started(workers, b, port_b)

    # Two tasks that hold their worker's only slot until the gate opens: each worker runs
    # one, and either worker's scrape shows both in flight.
    hold = task(producer, "hold")
    ids = [await producer.submit(hold, "gate"), await producer.submit(hold, "gate")]
    wait_for(port_a, lambda s: value(s, "flowrra_tasks_in_flight", task_name="hold") == 2)
    wait_for(port_b, lambda s: value(s, "flowrra_tasks_in_flight", task_name="hold") == 2)
    sync_redis.set(f"{prefix}:gate", 1)
    pids = set()
    for task_id in ids:
        result = await producer.wait_for_result(task_id, timeout=60)
        assert result.status is TaskStatus.SUCCESS
        pids.add(result.result)
    assert pids == {a.pid, b.pid}  # one each

    for i in range(6):
        await producer.submit(task(producer, "ok"), i)
    await producer.submit(task(producer, "ok"), 99, delay=600)

    def done(samples: dict) -> bool:  # type: ignore[type-arg]
        return (
            value(samples, "flowrra_tasks_succeeded_total", task_name="ok") == 6
            and value(samples, "flowrra_tasks_succeeded_total", task_name="hold") == 2
            and value(samples, "flowrra_queue_depth", state="delayed") == 1
        )

    samples = wait_for(port_a, done)
    assert value(samples, "flowrra_tasks_in_flight", task_name="hold") == 0
    assert value(samples, "flowrra_task_duration_seconds_count", task_name="hold") == 2
    assert value(samples, "flowrra_task_queue_wait_seconds_count", task_name="ok") == 6
    # One queue depth, not one per process (the most recent sample of any of them).
    assert [k for k in samples if k[0] == "flowrra_queue_depth" and k[1] == (("state", "delayed"),)]

    # A worker that stops: its counts stay (counters of a process that exited still
    # count), its live gauges go.
    assert workers.stop(b) == 0, workers.output(b)
    samples = wait_for(port_a, lambda s: True)
    assert value(samples, "flowrra_tasks_succeeded_total", task_name="hold") == 2
    assert value(samples, "flowrra_tasks_succeeded_total", task_name="ok") == 6
    assert value(samples, "flowrra_tasks_in_flight", task_name="hold") == 0
    assert not list(tmp_path.glob(f"gauge_live*_{b.pid}.db"))
    assert list(tmp_path.glob(f"gauge_live*_{a.pid}.db"))
