"""The sync API on Redis (``app.submit_sync``, ``task.delay``, ``app.wait_for_result_sync``,
``app.get_result_sync``) with real worker processes: from a script, from 32 threads at
once, after a fork, beside an event loop that uses the same app, and refused inside one.

Each scenario that could hang runs under a timeout (a subprocess's, or pytest-timeout's).
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis
from conftest import Workers
from test_loops import producer_app, run_script

from flowrra import SyncCallInLoopError, TaskStatus


def test_sync_api_from_a_script_then_exit(workers: Workers) -> None:
    """submit_sync / delay / wait_for_result_sync / get_result_sync from plain code, then
    the interpreter exits: the sync API's thread closes its connections, silently."""
    workers.start("-c", "4")
    out = run_script(
        workers,
        """
        from redis_app import app, record

        first = app.submit_sync(record, 1)
        second = record.delay(2)
        third = record.with_options(priority=-1).delay(3)
        print(*(app.wait_for_result_sync(i, timeout=20).result for i in (first, second, third)))
        print(app.get_result_sync(first).status.value, app.get_result_sync("nope"))
        """,
    )
    assert out.split("\n")[:2] == ["1 2 3", "success None"]


def test_32_threads_submit_1000_tasks_each_and_a_worker_runs_every_one(
    redis_url: str, prefix: str, workers: Workers, sync_redis: redis.Redis
) -> None:
    app, record = producer_app(redis_url, prefix)
    workers.start("-c", "32")
    ids: list[list[str]] = [[] for _ in range(32)]
    last: list[object] = [None] * 32
    errors: list[BaseException] = []

    def submit(thread: int) -> None:
        try:
            for i in range(1000):
                n = thread * 1000 + i
                if thread % 2:
                    ids[thread].append(record.delay(n))
                else:
                    ids[thread].append(app.submit_sync(record, n))
            last[thread] = app.wait_for_result_sync(ids[thread][-1], timeout=120).result
        except BaseException as exc:  # pragma: no cover  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(t,)) for t in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    assert not errors, errors
    assert last == [t * 1000 + 999 for t in range(32)]
    every = [task_id for chunk in ids for task_id in chunk]
    assert len(set(every)) == 32_000
    # Every task ran and has its result (counted in Redis, not trusted to the waits).
    deadline = time.monotonic() + 120
    while sync_redis.hlen(f"{prefix}:ran") < 32_000 and time.monotonic() < deadline:
        time.sleep(0.2)
    ran = sync_redis.hgetall(f"{prefix}:ran")
    assert len(ran) == 32_000 and {int(v) for v in ran.values()} == {1}
    results = [app.get_result_sync(task_id) for task_id in every[::97]]
    assert all(r is not None and r.status is TaskStatus.SUCCESS for r in results)
    asyncio.run(app.close())
    assert not [t for t in threading.enumerate() if t.name == "flowrra-sync"]


def test_fork_after_use(workers: Workers) -> None:
    """A gunicorn preload: the parent used the sync API (its thread and connections
    exist), then forks; the child gets a thread and connections of its own, and the
    parent's keep working."""
    workers.start("-c", "4")
    out = run_script(
        workers,
        """
        import os
        import warnings

        from redis_app import app, record

        print(app.wait_for_result_sync(record.delay(1), timeout=20).result)
        with warnings.catch_warnings():  # Python 3.12+ warns of any fork with threads up
            warnings.filterwarnings("ignore", "This process .* is multi-threaded")
            pid = os.fork()
        if pid == 0:
            try:
                ok = app.wait_for_result_sync(app.submit_sync(record, 2), timeout=20).result == 2
            finally:
                os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        print(app.wait_for_result_sync(record.delay(3), timeout=20).result)
        """,
    )
    assert out.split("\n")[:3] == ["1", "child 0", "3"]


async def test_sync_calls_from_a_loop_are_refused(redis_url: str, prefix: str) -> None:
    app, record = producer_app(redis_url, prefix)
    with pytest.raises(SyncCallInLoopError, match=r"await app\.submit\("):
        app.submit_sync(record, 1)
    with pytest.raises(SyncCallInLoopError, match=r"await task\.submit\("):
        record.delay(1)
    with pytest.raises(SyncCallInLoopError, match=r"await app\.wait_for_result\("):
        app.wait_for_result_sync("x")
    await app.close()


async def test_a_loop_and_the_sync_api_loop_at_once(
    redis_url: str, prefix: str, workers: Workers
) -> None:
    """The same app object used from this loop and, at the same time, from threads
    through the sync API's loop: each loop has its own connections."""
    workers.start("-c", "8")
    app, record = producer_app(redis_url, prefix)

    def sync_side(n: int) -> int:
        return app.wait_for_result_sync(record.delay(n), timeout=20).result  # type: ignore[no-any-return]

    async def async_side(n: int) -> int:
        task_id = await record.submit(n)
        return (await app.wait_for_result(task_id, timeout=20)).result  # type: ignore[no-any-return]

    got = await asyncio.gather(
        *(asyncio.to_thread(sync_side, n) for n in range(50)),
        *(async_side(n) for n in range(50, 100)),
    )
    assert got == list(range(100))
    assert len(app.broker._states) == 2  # type: ignore[attr-defined]  # this loop's, the portal's
    await app.close()
    assert app.broker._states == {}  # type: ignore[attr-defined]
