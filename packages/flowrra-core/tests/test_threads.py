"""Plain ``def`` tasks (not ``cpu_bound``) run in the I/O executor's thread pool: blocking
calls side by side, off the event loop, with retries, timeouts and context variables."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading

import pytest

from flowrra import TaskStatus
from flowrra.exceptions import ConfigError


async def test_a_plain_def_task_runs_in_a_thread(make_app) -> None:
    app = make_app()
    loop_thread = threading.get_ident()

    @app.task()
    def where(x: int) -> list[object]:
        return [x * 2, threading.get_ident() != loop_thread, threading.current_thread().name]

    assert where.in_thread and "thread" in repr(where)
    async with app:
        result = await app.wait_for_result(await where.submit(21), timeout=10)
    assert result.status is TaskStatus.SUCCESS
    doubled, off_loop, name = result.result
    assert doubled == 42 and off_loop and name.startswith("flowrra-task")


async def test_blocking_tasks_run_side_by_side_one_per_slot(make_app) -> None:
    """Eight tasks that each block until all eight are inside: only possible if eight
    threads run them at once (a barrier breaks after its timeout otherwise)."""
    app = make_app(num_workers=8)
    barrier = threading.Barrier(8, timeout=10)
    loop_alive: list[bool] = []

    @app.task(max_retries=0)
    def meet() -> int:
        return barrier.wait()  # blocks this thread, not the loop

    async def ticker() -> None:
        await asyncio.sleep(0)
        loop_alive.append(True)

    async with app:
        ids = [await meet.submit() for _ in range(8)]
        await ticker()  # the loop turns while the threads block
        results = [await app.wait_for_result(i, timeout=20) for i in ids]
    assert [r.status for r in results] == [TaskStatus.SUCCESS] * 8
    assert sorted(r.result for r in results) == list(range(8))
    assert loop_alive == [True]


@pytest.mark.parametrize(("threads", "meets"), [(2, False), (3, True)])
async def test_thread_pool_size_comes_from_threads(make_app, threads: int, meets: bool) -> None:
    """Three tasks that each wait until all three are inside, with 4 slots: only a pool of
    three threads or more lets them meet; with two, the barrier breaks and all fail."""
    app = make_app(num_workers=4, threads=threads)
    barrier = threading.Barrier(3, timeout=2)

    @app.task(max_retries=0)
    def meet() -> int:
        return barrier.wait()

    async with app:
        ids = [await meet.submit() for _ in range(3)]
        results = [await app.wait_for_result(i, timeout=20) for i in ids]
    expected = TaskStatus.SUCCESS if meets else TaskStatus.FAILED
    assert [r.status for r in results] == [expected] * 3
    if not meets:
        assert all("BrokenBarrierError" in (r.error or "") for r in results)


async def test_thread_tasks_are_retried(make_app) -> None:
    app = make_app()
    calls: list[int] = []

    @app.task(max_retries=2, retry_delay=0)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("database went away")
        return "ok"

    async with app:
        result = await app.wait_for_result(await flaky.submit(), timeout=10)
    assert (result.status, result.result, result.retries, len(calls)) == (
        TaskStatus.SUCCESS,
        "ok",
        2,
        3,
    )


async def test_a_thread_task_past_its_timeout_fails_and_its_thread_finishes(make_app) -> None:
    app = make_app()
    release = threading.Event()
    finished = threading.Event()

    @app.task(max_retries=0, timeout=0.2)
    def stuck() -> str:
        release.wait(10)
        finished.set()
        return "late"

    async with app:
        result = await app.wait_for_result(await stuck.submit(), timeout=10)
        assert result.status is TaskStatus.FAILED
        assert "timed out" in (result.error or "").lower() or "timeout" in (result.error or "")
        release.set()  # the thread was not interrupted: it runs on to the end
        assert await asyncio.to_thread(finished.wait, 10)


async def test_a_thread_task_sees_the_workers_context_variables(make_app) -> None:
    """The thread runs in a copy of the slot's context (run_in_executor alone would run it
    in the thread's empty one): what was set before the app started is seen."""
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
    app = make_app()

    @app.task()
    def read() -> str:
        return request_id.get()

    request_id.set("set-before-start")
    async with app:
        result = await app.wait_for_result(await read.submit(), timeout=10)
    assert (result.status, result.result) == (TaskStatus.SUCCESS, "set-before-start")


async def test_cpu_bound_still_means_the_process_pool(make_app) -> None:
    app = make_app(cpu_workers=1)
    pid = app.task(cpu_bound=True)(os.getpid)

    async with app:
        result = await app.wait_for_result(await pid.submit(), timeout=60)
    assert result.status is TaskStatus.SUCCESS and result.result != os.getpid()


def test_threads_must_be_positive() -> None:
    from flowrra import ExecutorConfig

    with pytest.raises(ConfigError, match="threads must be >= 1"):
        ExecutorConfig(threads=0)
    assert ExecutorConfig(threads=3).threads == 3
