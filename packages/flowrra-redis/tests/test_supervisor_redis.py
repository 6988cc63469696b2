"""``flowrra worker --processes 2`` on a real Redis server: both children take tasks from
the one queue, each announces itself (its own pid, its index, the supervisor's pid) in the
heartbeats and ``flowrra status``, a SIGKILLed child is replaced, SIGTERM retires them all."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

from conftest import APPS, Workers
from flowrra_redis import RedisBroker

from flowrra import Flowrra, TaskStatus


async def heartbeats(broker: RedisBroker, count: int, exclude: set[int]) -> list[dict[str, Any]]:
    """The live workers once ``count`` of them (none with a pid in ``exclude``) announce."""
    deadline = time.monotonic() + 30
    while True:
        found = [w for w in await broker.workers() if w["pid"] not in exclude]
        if len(found) == count:
            return sorted(found, key=lambda w: w["process"])
        assert time.monotonic() < deadline, f"{len(found)} of {count} heartbeats: {found}"
        await asyncio.sleep(0.1)


async def test_two_processes_share_the_queue_and_each_announces_itself(
    producer: Flowrra, workers: Workers
) -> None:
    supervisor = workers.start("--processes", "2", "-c", "4")
    broker = producer.broker
    assert isinstance(broker, RedisBroker)
    first, second = await heartbeats(broker, 2, exclude=set())
    assert [first["process"], second["process"]] == [0, 1]
    assert first["supervisor"] == second["supervisor"] == supervisor.pid
    children = {first["pid"], second["pid"]}
    assert len(children) == 2 and supervisor.pid not in children
    assert first["concurrency"] == second["concurrency"] == 4  # -c reached both

    ids = [await producer.submit("pid_of", n, 0.2) for n in range(40)]
    ran_in = {(await producer.wait_for_result(i, timeout=60)).result for i in ids}
    assert ran_in == children, workers.output(supervisor)

    status = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "flowrra", "status", "redis_app:app"],
        cwd=APPS,
        env=workers.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "workers alive: 2" in status.stdout, status.stderr
    for info in (first, second):
        assert (
            f"pid={info['pid']} process={info['process']} supervisor={supervisor.pid}"
            in status.stdout
        )

    # A child killed: replaced by a new process, which announces itself as the same index.
    os.kill(first["pid"], signal.SIGKILL)
    [replacement] = await heartbeats(broker, 1, exclude=children)
    assert replacement["process"] == 0 and replacement["supervisor"] == supervisor.pid
    assert f"(pid {first['pid']}) was killed by SIGKILL" in workers.output(supervisor)
    task_id = await producer.submit("pid_of", 0)
    assert (await producer.wait_for_result(task_id, timeout=30)).status is TaskStatus.SUCCESS

    supervisor.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(supervisor.wait, 60) == 0, workers.output(supervisor)
    # The killed child's heartbeat expires on its own; the two that drained retired theirs.
    alive = {w["pid"] for w in await broker.workers()}
    assert not alive & {second["pid"], replacement["pid"]}
