"""``flowrra_django.tasks.FlowrraBackend`` against what Django's Tasks framework expects of a
backend (``django/tasks/backends/base.py``): sync and async tasks, ``priority``,
``run_after``, results (``get_result``, ``refresh``, ``status``, ``return_value``,
``errors``), ``takes_context``, enqueueing on commit as Django documents it, and
``queue_name``. On an in-memory app running in the test's loop; the
served project runs the same backend on Redis with a real worker (test_served.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial
from typing import Any

import pytest

pytest.importorskip("django.tasks", reason="django.tasks is Django 6.0+")

import backend_tasks
from asgiref.sync import sync_to_async
from django.db import transaction
from django.tasks import (
    TaskResultStatus,
    default_task_backend,
    task,
    task_backends,
)
from django.tasks.exceptions import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultMismatch,
)
from django.tasks.signals import task_enqueued
from django.test import override_settings
from django.utils import timezone
from flowrra_django import get_app
from flowrra_django.tasks import FlowrraBackend
from reports.tasks import count_orders
from shop.models import Order

from flowrra import Flowrra, TaskStatus

BACKEND = "flowrra_django.tasks.FlowrraBackend"


@pytest.fixture
def app() -> Any:
    """The project's app, in memory with one slot and one thread (it is not started)."""
    with override_settings(FLOWRRA={"EXECUTOR": {"num_workers": 1, "threads": 1}}):
        yield get_app()


@pytest.fixture
async def running(app: Flowrra) -> AsyncIterator[Flowrra]:
    async with app:
        yield app


async def finished(result_id: str) -> Any:
    """The Django result once Flowrra has completed the task."""
    await get_app().wait_for_result(result_id, timeout=10)
    return await default_task_backend.aget_result(result_id)


def test_the_project_uses_the_backend() -> None:
    backend = task_backends["default"]
    assert isinstance(backend, FlowrraBackend)
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority


async def test_a_sync_task_enqueued_from_sync_code(running: Flowrra) -> None:
    result = await sync_to_async(backend_tasks.add.enqueue)(2, 3)
    assert result.status == TaskResultStatus.READY
    assert (result.args, result.kwargs, result.backend) == ([2, 3], {}, "default")
    assert result.enqueued_at is not None and not result.is_finished
    await get_app().wait_for_result(result.id, timeout=10)

    await sync_to_async(result.refresh)()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.is_finished
    assert result.return_value == 5
    assert result.errors == [] and result.attempts == 1
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at

    fetched = await sync_to_async(backend_tasks.add.get_result)(result.id)
    assert fetched.id == result.id and fetched.return_value == 5
    assert fetched.task.func is backend_tasks.add.func


async def test_an_async_task_enqueued_from_async_code(running: Flowrra) -> None:
    result = await backend_tasks.echo.aenqueue({"a": (1, 2)})
    await get_app().wait_for_result(result.id, timeout=10)
    await result.arefresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"a": [1, 2]}  # JSON, as Django normalizes it
    assert (await backend_tasks.echo.aget_result(result.id)).return_value == {"a": [1, 2]}


async def test_a_failure_is_in_errors(running: Flowrra) -> None:
    result = await backend_tasks.fail.aenqueue("no such order")
    failed = await finished(result.id)
    assert failed.status == TaskResultStatus.FAILED
    (error,) = failed.errors
    assert error.exception_class_path == "builtins.LookupError"
    assert error.exception_class is LookupError
    assert "LookupError: no such order" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        failed.return_value  # noqa: B018


async def test_higher_priority_runs_first(app: Flowrra) -> None:
    backend_tasks.ran.clear()
    remember = backend_tasks.remember
    for label, priority in [("low", -5), ("default", 0), ("high", 50), ("highest", 100)]:
        await remember.using(priority=priority).aenqueue(label)
    async with app:  # one slot: they run one at a time, in priority order
        records = await app.backend.list(task_name=remember.module_path)
        for record in records:
            await app.wait_for_result(record.task_id, timeout=10)
    assert backend_tasks.ran == ["highest", "high", "default", "low"]
    result = await default_task_backend.aget_result(records[0].task_id)
    assert result.task.priority in {-5, 0, 50, 100}
    assert result.task.priority == -records[0].priority


async def test_run_after_defers(running: Flowrra) -> None:
    run_after = timezone.now() + timedelta(seconds=1)
    result = await backend_tasks.add.using(run_after=run_after).aenqueue(1, 1)
    await asyncio.sleep(0.3)
    await result.arefresh()
    assert result.status == TaskResultStatus.READY
    done = await finished(result.id)
    assert done.return_value == 2
    assert done.started_at >= run_after


async def test_unknown_ids_and_other_tasks_results(running: Flowrra) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        await default_task_backend.aget_result("0" * 32)
    with pytest.raises(TaskResultDoesNotExist):
        await sync_to_async(default_task_backend.get_result)("0" * 32)

    native = running.task(name="native")(backend_tasks.plain)
    native_id = await native.submit()
    with pytest.raises(TaskResultDoesNotExist, match="not enqueued through Django"):
        await default_task_backend.aget_result(native_id)

    added = await backend_tasks.add.aenqueue(1, 2)
    with pytest.raises(TaskResultMismatch):
        await backend_tasks.echo.aget_result(added.id)


async def test_task_enqueued_is_sent(running: Flowrra) -> None:
    sent: list[Any] = []

    def receive(sender: Any, task_result: Any, **kwargs: Any) -> None:
        sent.append((sender, task_result.id))

    task_enqueued.connect(receive)
    try:
        result = await backend_tasks.add.aenqueue(1, 1)
    finally:
        task_enqueued.disconnect(receive)
    assert sent == [(FlowrraBackend, result.id)]


def order_then_count(*, fail: bool) -> None:
    """A view's transaction that enqueues a task when it commits, as Django documents."""
    try:
        with transaction.atomic():
            Order.objects.create(item="book")
            transaction.on_commit(partial(count_orders.enqueue, "new"))
            if fail:
                raise RuntimeError("rolled back")
    except RuntimeError:
        pass


@pytest.mark.usefixtures("database")
async def test_enqueue_on_commit_as_django_documents_it(running: Flowrra) -> None:
    name = count_orders.module_path
    await sync_to_async(order_then_count)(fail=True)
    assert await running.backend.list(task_name=name) == []
    await sync_to_async(order_then_count)(fail=False)
    (record,) = await running.backend.list(task_name=name)
    count = await sync_to_async(Order.objects.filter(status="new").count)()
    assert (await finished(record.task_id)).return_value == count


async def test_queue_name_is_the_flowrra_queue(app: Flowrra) -> None:
    queues = {"default": {"BACKEND": BACKEND, "QUEUES": ["default", "emails"]}}
    with override_settings(TASKS=queues):
        result = await backend_tasks.add.using(queue_name="emails").aenqueue(2, 3)
        stats = await app.broker.queue_stats()  # type: ignore[attr-defined]
        assert stats["emails"]["queued"] == 1 and stats["default"]["queued"] == 0
        async with app:  # a worker started without -Q takes every queue
            assert (await finished(result.id)).return_value == 5


def test_queue_names_flowrra_cannot_use_are_refused_clearly() -> None:
    queues = {"default": {"BACKEND": BACKEND, "QUEUES": ["default", "two words"]}}
    with override_settings(TASKS=queues), pytest.raises(InvalidTask, match="not a queue name"):
        task(queue_name="two words")(backend_tasks.plain)
    with pytest.raises(InvalidTask, match="is not valid for backend"):  # Django's QUEUES check
        backend_tasks.add.using(queue_name="emails")


async def test_takes_context_gets_djangos_task_context(running: Flowrra) -> None:
    result = await backend_tasks.whoami.aenqueue("first")
    done = await finished(result.id)
    assert done.return_value == {"id": result.id, "attempt": 1, "label": "first", "args": ["first"]}
    assert done.args == ["first"]  # the context is not an argument the record keeps
    asynced = await backend_tasks.awhoami.aenqueue()
    assert (await finished(asynced.id)).return_value == {
        "id": asynced.id,
        "status": str(TaskResultStatus.RUNNING),
    }


def test_django_checks_still_apply() -> None:
    with pytest.raises(InvalidTask, match="priority must be a whole number"):
        backend_tasks.add.using(priority=101)
    with pytest.raises(InvalidTask, match="aware"):
        backend_tasks.add.using(run_after=timezone.now().replace(tzinfo=None))


def test_queue_names_in_settings_are_checked() -> None:
    queues = {"default": {"BACKEND": BACKEND, "QUEUES": ["default", "emails", "bad name"]}}
    with override_settings(TASKS=queues):
        (error,) = task_backends["default"].check()
    assert error.id == "flowrra_django.E010" and "'bad name'" in error.msg


def test_results_map_every_flowrra_status() -> None:
    from flowrra_django.tasks import _STATUS

    assert set(_STATUS) == set(TaskStatus)
    assert _STATUS[TaskStatus.RETRYING] == TaskResultStatus.READY
    assert _STATUS[TaskStatus.CANCELLED] == TaskResultStatus.FAILED


async def test_a_cancelled_task_is_failed_to_django_and_says_why(running: Flowrra) -> None:
    later = await backend_tasks.add.using(run_after=timezone.now() + timedelta(hours=1)).aenqueue(
        1, 2
    )
    await running.cancel(later.id, "not needed any more")
    result = await default_task_backend.aget_result(later.id)
    assert result.status == TaskResultStatus.FAILED
    assert "TaskCancelled: not needed any more" in result.errors[0].traceback
