"""``app.join()`` on Redis: it reads the queue depths (queued, delayed, leased) from the
server, so a producer waits for what ``flowrra worker`` processes run."""

from __future__ import annotations

import pytest
from apps import redis_app
from conftest import Workers

from flowrra import Flowrra, TaskStatus


async def test_join_waits_for_the_workers_processes(producer: Flowrra, workers: Workers) -> None:
    first = await producer.submit(redis_app.record, -1)
    with pytest.raises(TimeoutError):  # queued, and no worker runs yet
        await producer.join(timeout=0.2)
    workers.start("-c", "4")
    ids = await producer.submit_many(redis_app.record, [(n, 0.01) for n in range(50)])
    ids += [first, await producer.submit(redis_app.stamp, "late", delay=0.3)]
    await producer.join(timeout=60)
    for task_id in ids:
        result = await producer.get_result(task_id)
        assert result is not None and result.status is TaskStatus.SUCCESS, (
            result,
            ids.index(task_id),
        )
