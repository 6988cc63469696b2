"""Eager mode (``Flowrra(eager=True)``, ``with app.eager():``), ``app.join()`` and the
pytest plugin's registration. The plugin's fixtures in use: ``user_suite/``."""

from __future__ import annotations

import asyncio
import importlib.metadata
import threading
from typing import Any

import pytest

from flowrra import Flowrra, NotRunningError, SerializationError, TaskStatus
from flowrra.clock import ManualClock


async def test_eager_from_the_constructor_runs_at_once_without_broker_or_worker() -> None:
    app = Flowrra(eager=True)

    @app.task()
    async def double(x: int) -> int:
        return x * 2

    task_id = await double.submit(21)
    assert app.is_eager
    assert not app.is_running
    assert app.pending_count() == 0  # nothing went through the broker
    record = await app.get_result(task_id)
    assert record is not None and record.status is TaskStatus.SUCCESS and record.result == 42


async def test_the_context_manager_restores_the_mode() -> None:
    app = Flowrra()
    with app.eager() as same:
        assert same is app and app.is_eager
        with app.eager(False):
            assert not app.is_eager
        assert app.is_eager
    assert not app.is_eager


async def test_retries_run_at_once_and_are_recorded() -> None:
    clock = ManualClock(start=1_000_000.0)  # not the wall clock: a second may tick meanwhile
    app = Flowrra(eager=True, clock=clock)
    attempts: list[int] = []

    @app.task(max_retries=2, retry_delay=100)
    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("down")
        return "up"

    result = await app.wait_for_result(await flaky.submit(), timeout=1)
    assert result.status is TaskStatus.SUCCESS and result.result == "up"
    assert len(attempts) == 3
    assert clock.time() == 1_000_000.0  # nothing waited on the clock


async def test_a_failing_task_is_a_failed_result_not_an_exception() -> None:
    app = Flowrra(eager=True)

    @app.task(max_retries=1, retry_delay=60)
    async def broken() -> None:
        raise ValueError("nope")

    result = await app.wait_for_result(await broken.submit())
    assert result.status is TaskStatus.FAILED
    assert result.error == "ValueError: nope"
    assert result.traceback is not None and "ValueError: nope" in result.traceback


async def test_arguments_are_checked_as_a_broker_would() -> None:
    app = Flowrra(eager=True)

    @app.task()
    async def take(x: Any) -> None:
        return None

    with pytest.raises(SerializationError):
        await take.submit(object())


async def test_submit_many_and_with_options_run_eagerly() -> None:
    app = Flowrra(eager=True)

    @app.task()
    def add(a: int, b: int) -> int:  # a plain def runs in the caller too
        return a + b

    ids = await app.submit_many(add, [(1, 2), {"a": 3, "b": 4}])
    ids.append(await add.with_options(delay=3600).submit(5, 6))  # the delay is not waited
    results = [await app.wait_for_result(i) for i in ids]
    assert [r.result for r in results] == [3, 7, 11]


def test_the_sync_api_works_in_eager_mode() -> None:
    app = Flowrra()

    @app.task()
    async def hello(name: str) -> str:
        return f"hello {name}"

    with app.eager():
        task_id = hello.delay("sync")
        other = app.submit_sync(hello, "again")
        assert app.wait_for_result_sync(task_id).result == "hello sync"
        assert app.wait_for_result_sync(other).result == "hello again"
    with pytest.raises(NotRunningError):  # eager off again: nothing would run it
        hello.delay("lost")
    asyncio.run(app.close())


async def test_join_waits_for_queued_delayed_and_retried_tasks() -> None:
    app = Flowrra()
    done: list[int] = []
    failures = threading.Semaphore(1)

    @app.task(max_retries=1, retry_delay=0.05)
    async def work(n: int) -> None:
        if n == 0 and failures.acquire(blocking=False):
            raise RuntimeError("first attempt fails")
        await asyncio.sleep(0.01)
        done.append(n)

    async with app:
        for n in range(5):
            await work.submit(n)
        await work.with_options(delay=0.05).submit(5)
        await app.join(timeout=10)
        assert sorted(done) == [0, 1, 2, 3, 4, 5]
        assert app.pending_count() == 0


async def test_join_on_an_app_not_running_with_tasks_waiting_raises() -> None:
    app = Flowrra()

    @app.task()
    async def noop() -> None:
        return None

    await app.join()  # nothing submitted: returns at once
    await noop.submit()
    with pytest.raises(NotRunningError):
        await app.join(timeout=1)


async def test_join_times_out() -> None:
    app = Flowrra()
    release = asyncio.Event()

    @app.task()
    async def blocked() -> None:
        await release.wait()

    async with app:
        await blocked.submit()
        with pytest.raises(TimeoutError):
            await app.join(timeout=0.05)
        release.set()
        await app.join(timeout=10)


def test_the_pytest_plugin_is_registered() -> None:
    points = importlib.metadata.entry_points(group="pytest11")
    assert [p.value for p in points if p.name == "flowrra"] == ["flowrra.pytest_plugin"]


def test_the_default_fixtures(request: pytest.FixtureRequest) -> None:
    app = request.getfixturevalue("flowrra_eager")
    assert isinstance(app, Flowrra) and app.is_eager
    assert app is request.getfixturevalue("flowrra_app")
