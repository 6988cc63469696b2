"""Database connections around each task, on the real PostgreSQL, for a plain ``def`` task
(a worker thread) and an ``async def`` one (the ORM through ``sync_to_async``). With
persistent connections (``CONN_MAX_AGE`` and ``CONN_HEALTH_CHECKS``, the project's) the
connection a task used is killed from another connection (``pg_terminate_backend``)
before the next task, which still succeeds; with ``CONN_MAX_AGE = 0`` the task's
connection is gone once it ends. Without :class:`DjangoIOExecutor` the same steps fail:
the test bites."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from conftest import backend_gone, terminate_backend
from django.db import connections
from flowrra_django.executor import DjangoIOExecutor, has_connection_handling, prepare_app
from shop.tasks import _backend_pid

from flowrra import Config, ExecutorConfig, Flowrra, IOExecutor, TaskStatus

pytestmark = pytest.mark.usefixtures("database")


async def _backend_pid_async() -> int:
    return await sync_to_async(_backend_pid)()


def make_app(*, handled: bool) -> Flowrra:
    """An in-memory app with one thread for plain def tasks (so both tasks of a test use
    the same thread, hence the same connection), with or without connection handling."""
    app = Flowrra(Config(executor=ExecutorConfig(num_workers=2, threads=1, max_retries=0)))
    if handled:
        prepare_app(app)
    app.task(name="pid")(_backend_pid)
    app.task(name="pid_async")(_backend_pid_async)
    return app


@pytest.fixture(params=["persistent", "per-task"])
def max_age(request: pytest.FixtureRequest) -> Iterator[str]:
    """The project's persistent connections (CONN_MAX_AGE=600 with health checks), or
    Django's default CONN_MAX_AGE=0."""
    settings: dict[str, Any] = connections.settings["default"]
    saved = settings["CONN_MAX_AGE"], settings["CONN_HEALTH_CHECKS"]
    if request.param == "per-task":
        settings["CONN_MAX_AGE"], settings["CONN_HEALTH_CHECKS"] = 0, False
    yield request.param
    settings["CONN_MAX_AGE"], settings["CONN_HEALTH_CHECKS"] = saved


async def _run(app: Flowrra, name: str) -> Any:
    task_id = await app.submit(name)
    return await app.wait_for_result(task_id, timeout=10)


@pytest.fixture(autouse=True)
async def _fresh_async_connections() -> None:
    """Each test starts with no connection in asgiref's thread (where async tasks' ORM
    calls run), whatever the test before left there."""
    await sync_to_async(connections.close_all)()


@pytest.mark.parametrize("name", ["pid", "pid_async"])
async def test_a_killed_connection_does_not_fail_the_next_task(max_age: str, name: str) -> None:
    app = make_app(handled=True)
    async with app:
        first = await _run(app, name)
        assert first.status is TaskStatus.SUCCESS, first.error
        if max_age == "persistent":
            # The worker kept the connection between tasks: it is killed.
            assert terminate_backend(first.result)
        else:
            # It was closed when the task ended: nothing is left to kill.
            assert backend_gone(first.result)
        second = await _run(app, name)
    assert second.status is TaskStatus.SUCCESS, (second.error, second.traceback)
    assert second.result != first.result


@pytest.mark.parametrize("name", ["pid", "pid_async"])
async def test_without_the_handling_the_next_task_fails(max_age: str, name: str) -> None:
    app = make_app(handled=False)
    async with app:
        first = await _run(app, name)
        assert terminate_backend(first.result)  # never closed, even with CONN_MAX_AGE=0
        second = await _run(app, name)
    assert second.status is TaskStatus.FAILED
    assert second.error is not None and second.error.startswith(
        ("OperationalError", "InterfaceError")
    )


def test_prepare_app_keeps_concurrency_and_threads() -> None:
    app = Flowrra(Config(executor=ExecutorConfig(num_workers=6, threads=3)))
    prepare_app(app)
    executor = app.worker.io_executor
    assert isinstance(executor, DjangoIOExecutor)
    assert (executor.concurrency, executor.threads) == (6, 3)
    prepare_app(app)
    assert app.worker.io_executor is executor


def test_an_executor_of_the_apps_own_is_kept_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Mine(IOExecutor):
        pass

    app = Flowrra(io_executor=Mine())
    prepare_app(app)
    assert type(app.worker.io_executor) is Mine
    assert not has_connection_handling(app)
    assert "database connections are not closed" in caplog.text
