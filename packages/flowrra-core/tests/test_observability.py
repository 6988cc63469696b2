"""Issue 12 in one process: middleware hooks, the task context (``current_task()``,
``Retry``, ``set_progress``) and task logging, with the in-memory broker and a worker
started in the test (or eager mode where the worker adds nothing). The same through Redis
and ``flowrra worker`` processes: packages/flowrra-redis/tests/test_observability_redis.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import threading
from typing import Any

import pytest

from flowrra import (
    Config,
    ExecutorConfig,
    Flowrra,
    Middleware,
    NoTaskContextError,
    Retry,
    SerializationError,
    TaskContext,
    TaskMessage,
    TaskResult,
    TaskStatus,
    current_task,
)
from flowrra import middleware as middleware_module
from flowrra.context import MAX_PROGRESS_MESSAGE
from flowrra.logs import JSONFormatter
from flowrra.task import MAX_HEADERS_SIZE, Progress, new_task_id

WAIT = 30  # seconds: a hang guard, never a timing assertion


def _fields(task: TaskContext) -> dict[str, Any]:
    return {
        "id": task.id,
        "name": task.name,
        "attempt": task.attempt,
        "retries": task.retries,
        "max_retries": task.max_retries,
        "priority": task.priority,
        "headers": dict(task.headers),
        "eta": task.eta,
    }


# A CPU task lives at module level: the pool's child imports it by name.
CPU_APP = Flowrra(Config(executor=ExecutorConfig(num_workers=2, cpu_workers=1)))


@CPU_APP.task(cpu_bound=True, max_retries=4, name="obs.cpu_context")
def cpu_context() -> dict[str, Any]:
    task = current_task()
    try:
        task.set_progress(0.5)
    except RuntimeError as exc:
        progress_error = str(exc)
    else:
        progress_error = ""
    return {**_fields(task), "app_is_its_app": task.app is CPU_APP, "progress": progress_error}


@CPU_APP.task(cpu_bound=True, max_retries=1, name="obs.cpu_retry")
def cpu_retry() -> int:
    if current_task().attempt == 1:
        raise Retry(delay=0.01, reason="again")
    return current_task().attempt


class Recorder(Middleware):
    """Notes each hook it hears, with the arguments that matter, in ``calls``."""

    def __init__(self, label: str, calls: list[tuple[Any, ...]]) -> None:
        self.label = label
        self.calls = calls

    def before_submit(self, message: TaskMessage) -> None:
        self.calls.append((self.label, "before_submit", message.name))

    def after_submit(self, message: TaskMessage, exception: BaseException | None) -> None:
        self.calls.append((self.label, "after_submit", message.name, exception))

    def before_attempt(self, task: TaskContext) -> None:
        self.calls.append((self.label, "before_attempt", task.name, task.attempt))

    def after_attempt(
        self, task: TaskContext, result: TaskResult, exception: BaseException | None
    ) -> None:
        self.calls.append(
            (self.label, "after_attempt", task.attempt, result.status, type(exception).__name__)
        )

    def on_retry(self, task: TaskContext, exception: BaseException, delay: float) -> None:
        self.calls.append((self.label, "on_retry", task.attempt, type(exception).__name__, delay))

    def on_failure(self, task: TaskContext, exception: BaseException) -> None:
        self.calls.append((self.label, "on_failure", task.attempt, type(exception).__name__))

    def on_dead_letter(self, message: TaskMessage, reason: str) -> None:
        self.calls.append((self.label, "on_dead_letter", message.name, reason))

    def on_worker_start(self, app: Any) -> None:
        self.calls.append((self.label, "on_worker_start", app))

    def on_worker_stop(self, app: Any) -> None:
        self.calls.append((self.label, "on_worker_stop", app))


class AsyncRecorder:
    """The same hooks as ``async def``, without the base class (found by name)."""

    def __init__(self, label: str, calls: list[tuple[Any, ...]]) -> None:
        self.sync = Recorder(label, calls)

    async def before_submit(self, message: TaskMessage) -> None:
        await asyncio.sleep(0)
        self.sync.before_submit(message)

    async def after_submit(self, message: TaskMessage, exception: BaseException | None) -> None:
        await asyncio.sleep(0)
        self.sync.after_submit(message, exception)

    async def before_attempt(self, task: TaskContext) -> None:
        await asyncio.sleep(0)
        self.sync.before_attempt(task)

    async def after_attempt(
        self, task: TaskContext, result: TaskResult, exception: BaseException | None
    ) -> None:
        await asyncio.sleep(0)
        self.sync.after_attempt(task, result, exception)

    async def on_retry(self, task: TaskContext, exception: BaseException, delay: float) -> None:
        await asyncio.sleep(0)
        self.sync.on_retry(task, exception, delay)

    async def on_failure(self, task: TaskContext, exception: BaseException) -> None:
        await asyncio.sleep(0)
        self.sync.on_failure(task, exception)

    async def on_dead_letter(self, message: TaskMessage, reason: str) -> None:
        await asyncio.sleep(0)
        self.sync.on_dead_letter(message, reason)

    async def on_worker_start(self, app: Any) -> None:
        await asyncio.sleep(0)
        self.sync.on_worker_start(app)

    async def on_worker_stop(self, app: Any) -> None:
        await asyncio.sleep(0)
        self.sync.on_worker_stop(app)


def _of(calls: list[tuple[Any, ...]], hook: str) -> list[tuple[Any, ...]]:
    return [c for c in calls if len(c) > 1 and c[1] == hook]


# -- middleware ---------------------------------------------------------------------------


async def test_hooks_of_a_success_in_order_async_and_sync() -> None:
    calls: list[tuple[Any, ...]] = []
    app = Flowrra(middleware=[AsyncRecorder("A", calls)])
    app.add_middleware(Recorder("B", calls))

    @app.task(name="obs.ok")
    async def ok() -> str:
        calls.append(("task", "ran"))
        return "fine"

    async with app:
        task_id = await ok.submit()
        result = await app.wait_for_result(task_id, timeout=WAIT)
    assert result.status is TaskStatus.SUCCESS
    # before_* in the order added, after_* reversed; the task between the attempt hooks.
    assert calls == [
        ("A", "on_worker_start", app),
        ("B", "on_worker_start", app),
        ("A", "before_submit", "obs.ok"),
        ("B", "before_submit", "obs.ok"),
        ("B", "after_submit", "obs.ok", None),
        ("A", "after_submit", "obs.ok", None),
        ("A", "before_attempt", "obs.ok", 1),
        ("B", "before_attempt", "obs.ok", 1),
        ("task", "ran"),
        ("B", "after_attempt", 1, TaskStatus.SUCCESS, "NoneType"),
        ("A", "after_attempt", 1, TaskStatus.SUCCESS, "NoneType"),
        ("B", "on_worker_stop", app),
        ("A", "on_worker_stop", app),
    ]


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "worker"])
async def test_hooks_of_a_retry_then_a_final_failure(eager: bool) -> None:
    calls: list[tuple[Any, ...]] = []
    app = Flowrra(eager=eager, middleware=[Recorder("A", calls), AsyncRecorder("B", calls)])

    @app.task(name="obs.broken", max_retries=1, retry_delay=0.01)
    async def broken() -> None:
        raise ValueError("nope")

    if eager:
        task_id = await broken.submit()
        result = await app.wait_for_result(task_id, timeout=WAIT)
    else:
        async with app:
            task_id = await broken.submit()
            result = await app.wait_for_result(task_id, timeout=WAIT)
    assert result.status is TaskStatus.FAILED and result.error == "ValueError: nope"
    # (Eager, the attempts run inside submit: between before_submit and after_submit.)
    attempts = [c for c in calls if "submit" not in c[1] and "worker" not in c[1]]
    assert attempts == [
        ("A", "before_attempt", "obs.broken", 1),
        ("B", "before_attempt", "obs.broken", 1),
        ("A", "on_retry", 1, "ValueError", 0.01),
        ("B", "on_retry", 1, "ValueError", 0.01),
        ("B", "after_attempt", 1, TaskStatus.RETRYING, "ValueError"),
        ("A", "after_attempt", 1, TaskStatus.RETRYING, "ValueError"),
        ("A", "before_attempt", "obs.broken", 2),
        ("B", "before_attempt", "obs.broken", 2),
        ("A", "on_failure", 2, "ValueError"),
        ("B", "on_failure", 2, "ValueError"),
        ("B", "after_attempt", 2, TaskStatus.FAILED, "ValueError"),
        ("A", "after_attempt", 2, TaskStatus.FAILED, "ValueError"),
    ]


async def test_an_attempt_the_worker_stop_interrupts_still_gets_after_attempt() -> None:
    """What a middleware opened in before_attempt (a session, a span) is closed when the
    worker stops mid-attempt: after_attempt hears of it, with the RUNNING record."""
    calls: list[tuple[Any, ...]] = []
    app = Flowrra(middleware=[Recorder("A", calls)])
    started = asyncio.Event()

    @app.task(name="obs.forever")
    async def forever() -> None:
        started.set()
        await asyncio.sleep(WAIT)

    await app.start()
    try:
        await forever.submit()
        await asyncio.wait_for(started.wait(), WAIT)
    finally:
        await app.stop(wait=True, timeout=0.1)
    assert _of(calls, "after_attempt") == [
        ("A", "after_attempt", 1, TaskStatus.RUNNING, "CancelledError")
    ]


async def test_a_message_naming_an_unregistered_task_is_dead_lettered_to_the_hooks() -> None:
    calls: list[tuple[Any, ...]] = []
    heard = asyncio.Event()

    class Waiter(Middleware):
        async def on_dead_letter(self, message: TaskMessage, reason: str) -> None:
            heard.set()

    app = Flowrra(middleware=[Recorder("A", calls), Waiter()])
    app.add_middleware(AsyncRecorder("B", calls))
    async with app:
        message = TaskMessage(new_task_id(), "obs.nobody_has_it")
        await app.broker.enqueue(message)
        await asyncio.wait_for(heard.wait(), WAIT)
        record = await app.wait_for_result(message.id, timeout=WAIT)
    dead = _of(calls, "on_dead_letter")
    assert [c[0] for c in dead] == ["A", "B"]
    assert all(c[2] == "obs.nobody_has_it" and "not registered" in c[3] for c in dead)
    assert record.status is TaskStatus.FAILED
    assert not _of(calls, "before_attempt")  # it never ran


async def test_a_raising_hook_is_logged_and_the_task_still_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Middleware):
        def before_submit(self, message: TaskMessage) -> None:
            raise RuntimeError("before_submit broke")

        async def before_attempt(self, task: TaskContext) -> None:
            raise RuntimeError("before_attempt broke")

        def after_attempt(self, task: TaskContext, result: TaskResult, exc: Any) -> None:
            raise RuntimeError("after_attempt broke")

    calls: list[tuple[Any, ...]] = []
    app = Flowrra(middleware=[Broken(), Recorder("after", calls)])

    @app.task(name="obs.survives")
    async def survives() -> int:
        return 7

    caplog.set_level(logging.ERROR, logger="flowrra.middleware")
    async with app:
        result = await app.wait_for_result(await survives.submit(), timeout=WAIT)
    assert result.status is TaskStatus.SUCCESS and result.result == 7
    failures = [r for r in caplog.records if r.name == "flowrra.middleware"]
    assert {str(r.exc_info[1]) for r in failures if r.exc_info} == {
        "before_submit broke",
        "before_attempt broke",
        "after_attempt broke",
    }
    assert all(r.levelno == logging.ERROR for r in failures)
    # The middleware after the broken one still ran every hook.
    assert [c[1] for c in calls if "worker" not in c[1]] == [
        "before_submit",
        "after_submit",
        "before_attempt",
        "after_attempt",
    ]


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "worker"])
async def test_headers_added_before_submit_reach_the_task_and_the_record(eager: bool) -> None:
    class Tenant(Middleware):
        def before_submit(self, message: TaskMessage) -> None:
            message.headers["tenant"] = "acme"  # type: ignore[index]

    app = Flowrra(eager=eager, middleware=[Tenant()])

    @app.task(name="obs.headers")
    async def headers_seen() -> dict[str, str]:
        return dict(current_task().headers)

    async def run() -> TaskResult:
        task_id = await headers_seen.with_options(headers={"trace": "t-1"}).submit()
        return await app.wait_for_result(task_id, timeout=WAIT)

    if eager:
        result = await run()
    else:
        async with app:
            result = await run()
    assert result.status is TaskStatus.SUCCESS
    assert result.result == {"trace": "t-1", "tenant": "acme"}
    assert dict(result.headers) == {"trace": "t-1", "tenant": "acme"}


async def test_submit_many_and_a_refused_submit_go_through_the_submit_hooks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[tuple[Any, ...]] = []

    class Numbered(Recorder):
        def before_submit(self, message: TaskMessage) -> None:
            super().before_submit(message)
            message.headers["n"] = 5  # type: ignore[index]  (not text: sent as "5", logged)

    app = Flowrra(eager=True, middleware=[Numbered("A", calls)])

    @app.task(name="obs.many")
    async def many(x: Any) -> dict[str, str]:
        return dict(current_task().headers)

    caplog.set_level(logging.ERROR, logger="flowrra.app")
    ids = await app.submit_many(many, [(1,), (2,)])
    results = [await app.wait_for_result(i, timeout=WAIT) for i in ids]
    assert [r.result for r in results] == [{"n": "5"}, {"n": "5"}]
    assert [dict(r.headers) for r in results] == [{"n": "5"}, {"n": "5"}]
    assert any("not str to str" in r.getMessage() for r in caplog.records)
    calls.clear()
    with pytest.raises(SerializationError):
        await app.submit(many, object())
    assert [(c[1], type(c[3]).__name__) for c in _of(calls, "after_submit")] == [
        ("after_submit", "SerializationError")
    ]
    assert not _of(calls, "before_attempt")


async def test_installed_middleware_applies_to_every_app_until_uninstalled() -> None:
    calls: list[tuple[Any, ...]] = []
    own: list[tuple[Any, ...]] = []
    before = Flowrra(eager=True, middleware=[Recorder("own", own)])
    everywhere = Recorder("installed", calls)
    middleware_module.install(everywhere)
    try:
        middleware_module.install(everywhere)  # twice: once
        assert middleware_module.installed() == [everywhere]
        after = Flowrra(eager=True)
        for app in (before, after):

            @app.task(name="obs.anywhere")
            async def anywhere() -> None:
                own.append(("task",))

            await app.wait_for_result(await anywhere.submit(), timeout=WAIT)
        assert len(_of(calls, "before_attempt")) == 2
        # Installed middleware runs ahead of the app's own.
        assert before.middleware.middleware[0] is everywhere
    finally:
        middleware_module.uninstall(everywhere)
    assert middleware_module.installed() == []
    calls.clear()
    await before.wait_for_result(await before.submit("obs.anywhere"), timeout=WAIT)
    assert calls == []
    assert _of(own, "before_attempt")  # the app's own still runs


def test_a_class_or_an_object_without_hooks_is_refused() -> None:
    with pytest.raises(TypeError, match="an instance"):
        Flowrra(middleware=[Recorder])
    with pytest.raises(TypeError, match="none of the middleware hooks"):
        Flowrra().add_middleware(object())


# -- the task context ---------------------------------------------------------------------


async def test_current_task_in_an_async_task_and_a_thread_task() -> None:
    app = Flowrra(Config(executor=ExecutorConfig(num_workers=2, threads=2)))

    @app.task(name="obs.async_context", max_retries=2)
    async def async_context() -> dict[str, Any]:
        task = current_task()
        return {**_fields(task), "app_is_its_app": task.app is app}

    @app.task(name="obs.thread_context", max_retries=5)
    def thread_context() -> dict[str, Any]:
        task = current_task()
        return {
            **_fields(task),
            "app_is_its_app": task.app is app,
            "thread": threading.current_thread().name,
        }

    async with app:
        first = await async_context.with_options(priority=3, headers={"k": "v"}).submit()
        later = await async_context.with_options(delay=0.05).submit()
        in_thread = await thread_context.with_options(headers={"x": "y"}).submit()
        results = [await app.wait_for_result(i, timeout=WAIT) for i in (first, later, in_thread)]
    values = [r.result for r in results]
    assert values[0] == {
        "id": first,
        "name": "obs.async_context",
        "attempt": 1,
        "retries": 0,
        "max_retries": 2,
        "priority": 3,
        "headers": {"k": "v"},
        "eta": None,
        "app_is_its_app": True,
    }
    assert values[1]["eta"] is not None and values[1]["id"] == later
    assert values[1]["headers"] == {} and values[1]["priority"] == 0
    assert values[2]["id"] == in_thread and values[2]["max_retries"] == 5
    assert values[2]["headers"] == {"x": "y"} and values[2]["attempt"] == 1
    assert values[2]["app_is_its_app"] is True
    assert values[2]["thread"].startswith("flowrra-task")


async def test_current_task_in_a_cpu_task_in_the_process_pool() -> None:
    async with CPU_APP:
        task_id = await cpu_context.with_options(priority=1, headers={"h": "1"}).submit()
        result = await CPU_APP.wait_for_result(task_id, timeout=60)
    assert result.status is TaskStatus.SUCCESS, result.error
    value = result.result
    assert {k: value[k] for k in ("id", "name", "attempt", "max_retries", "priority")} == {
        "id": task_id,
        "name": "obs.cpu_context",
        "attempt": 1,
        "max_retries": 4,
        "priority": 1,
    }
    assert value["headers"] == {"h": "1"} and value["eta"] is None
    assert value["app_is_its_app"] is True  # the app of the module, imported in the child
    assert "cpu_bound" in value["progress"]  # no progress from the pool: a clear error


async def test_retry_from_a_cpu_task_crosses_back_from_the_pool() -> None:
    """Retry is pickled back from the pool's process by its own arguments (it used to fail
    to unpickle, which broke the pool for every CPU task after it)."""
    async with CPU_APP:
        retried = await CPU_APP.wait_for_result(await cpu_retry.submit(), timeout=60)
        after = await CPU_APP.wait_for_result(await cpu_context.submit(), timeout=60)
    assert retried.status is TaskStatus.SUCCESS and retried.result == 2, retried.error
    assert retried.retries == 1
    assert after.status is TaskStatus.SUCCESS, after.error  # the pool still works


def test_current_task_outside_a_task_raises_a_clear_error() -> None:
    with pytest.raises(NoTaskContextError):
        current_task()
    assert issubclass(NoTaskContextError, Exception)


async def test_current_task_outside_a_task_in_async_code() -> None:
    with pytest.raises(NoTaskContextError):
        current_task()


async def test_current_task_from_an_asyncio_task_a_task_started_raises_a_clear_error() -> None:
    app = Flowrra()

    @app.task(name="obs.starts_a_task")
    async def starts_a_task() -> list[str]:
        mine = current_task()

        async def helper() -> str:
            try:
                current_task()
            except NoTaskContextError as exc:
                return str(exc)
            return "no error"

        told = await asyncio.create_task(helper())

        def in_thread() -> str:
            try:
                current_task()
            except NoTaskContextError as exc:
                return str(exc)
            return "no error"

        told_in_thread = await asyncio.to_thread(in_thread)
        return [told, told_in_thread, mine.id]

    async with app:
        task_id = await starts_a_task.submit()
        result = await app.wait_for_result(task_id, timeout=WAIT)
    told, told_in_thread, seen_id = result.result
    assert seen_id == task_id
    for message in (told, told_in_thread):
        assert "an asyncio task or a thread that a task started" in message
        assert "pass the context" in message


async def test_retry_with_a_delay_is_honoured_within_max_retries_then_fails() -> None:
    calls: list[tuple[Any, ...]] = []
    app = Flowrra(middleware=[Recorder("m", calls)])
    attempts: list[int] = []

    # retry_on excludes Retry: it retries anyway, at the delay it asks for.
    @app.task(name="obs.polls", max_retries=2, retry_delay=60, retry_on=(KeyError,))
    async def polls(until: int) -> int:
        attempt = current_task().attempt
        attempts.append(attempt)
        if attempt < until:
            raise Retry(delay=0.02, reason="not ready")
        return attempt

    events: list[Any] = []
    remove = app.events.add_listener(events.append)
    async with app:
        ready = await app.wait_for_result(await polls.submit(3), timeout=WAIT)
        never = await app.wait_for_result(await polls.submit(10), timeout=WAIT)
    remove()
    assert ready.status is TaskStatus.SUCCESS and ready.result == 3
    assert never.status is TaskStatus.FAILED
    assert never.error == "Retry: not ready"
    assert attempts == [1, 2, 3, 1, 2, 3]  # within the budget of 2 retries, no more
    assert [c[4] for c in _of(calls, "on_retry")] == [0.02] * 4
    retry_ins = [e.retry_in for e in events if e.status is TaskStatus.RETRYING]
    assert retry_ins == [0.02] * 4
    assert [c[2] for c in _of(calls, "on_failure")] == [3]


def test_retry_checks_its_delay() -> None:
    assert Retry().delay is None
    assert Retry(delay=2).delay == 2.0
    for bad in (-1, math.inf, math.nan):
        with pytest.raises(ValueError, match="finite"):
            Retry(delay=bad)
    with pytest.raises(TypeError):
        Retry(delay="5")  # type: ignore[arg-type]


# -- progress -----------------------------------------------------------------------------


async def _progress_seen(app: Flowrra, task_id: str) -> TaskResult:
    while True:  # the hang guard is the caller's wait_for
        record = await app.get_result(task_id)
        if record is not None and record.progress is not None:
            return record
        await asyncio.sleep(0.01)


async def test_progress_is_stored_while_the_task_waits_and_sent_as_an_event() -> None:
    app = Flowrra()
    go_on = asyncio.Event()

    @app.task(name="obs.parses")
    async def parses() -> str:
        current_task().set_progress(0.4, "parsed 4,000 rows")
        await go_on.wait()
        return "done"

    events: list[Any] = []
    remove = app.events.add_listener(events.append)
    async with app:
        task_id = await parses.submit()
        record = await asyncio.wait_for(_progress_seen(app, task_id), WAIT)
        assert record.status is TaskStatus.RUNNING
        assert record.progress == Progress(0.4, "parsed 4,000 rows")
        assert record.to_dict()["progress"] is not None
        go_on.set()
        result = await app.wait_for_result(task_id, timeout=WAIT)
    remove()
    assert result.status is TaskStatus.SUCCESS and result.result == "done"
    progress = [e for e in events if e.task_id == task_id and e.progress is not None]
    assert [(e.status, e.progress) for e in progress] == [
        (TaskStatus.RUNNING, Progress(0.4, "parsed 4,000 rows"))
    ]


async def test_progress_from_a_thread_task() -> None:
    app = Flowrra()
    go_on = threading.Event()

    @app.task(name="obs.thread_progress")
    def thread_progress() -> str:
        current_task().set_progress(1)
        if not go_on.wait(WAIT):
            raise TimeoutError("never told to go on")
        return "done"

    async with app:
        task_id = await thread_progress.submit()
        try:
            record = await asyncio.wait_for(_progress_seen(app, task_id), WAIT)
        finally:
            go_on.set()
        result = await app.wait_for_result(task_id, timeout=WAIT)
    assert record.progress == Progress(1.0, None) and record.status is TaskStatus.RUNNING
    assert result.status is TaskStatus.SUCCESS


async def test_bad_progress_values_raise() -> None:
    app = Flowrra(eager=True)

    @app.task(name="obs.bad_progress")
    async def bad_progress() -> list[str]:
        task = current_task()
        raised = []
        for args in ((-0.1,), (1.5,), (math.nan,), (True,), ("0.5",), (None,), (0.5, 3)):
            try:
                task.set_progress(*args)  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                raised.append(type(exc).__name__)
            else:
                raised.append("accepted")
        task.set_progress(0.0, "fine")
        return raised

    result = await app.wait_for_result(await bad_progress.submit(), timeout=WAIT)
    assert result.status is TaskStatus.SUCCESS, result.error
    assert result.result == [
        "ValueError",
        "ValueError",
        "ValueError",
        "TypeError",
        "TypeError",
        "TypeError",
        "TypeError",
    ]


async def test_a_long_progress_message_is_cut_and_stored_so() -> None:
    app = Flowrra(eager=True)
    seen: list[str | None] = []
    app.events.add_listener(
        lambda event: seen.append(event.progress.message) if event.progress else None
    )

    @app.task(name="obs.long_progress")
    async def long_progress() -> None:
        current_task().set_progress(0.5, "x" * 1_000_000)
        await asyncio.sleep(0.05)  # reports close together are coalesced: the last one wins
        current_task().set_progress(0.6, "y" * MAX_PROGRESS_MESSAGE)
        await asyncio.sleep(0.05)

    result = await app.wait_for_result(await long_progress.submit(), timeout=WAIT)
    assert result.status is TaskStatus.SUCCESS, result.error
    assert seen == ["x" * (MAX_PROGRESS_MESSAGE - 1) + "…", "y" * MAX_PROGRESS_MESSAGE]


async def test_headers_are_bounded_and_named_and_nothing_is_stored_when_refused() -> None:
    app = Flowrra(eager=True)

    @app.task(name="obs.bounded_headers")
    async def bounded() -> dict[str, str]:
        return dict(current_task().headers)

    at_limit = {"k": "v" * (MAX_HEADERS_SIZE - 1)}
    record = await app.wait_for_result(
        await bounded.with_options(headers=at_limit).submit(), timeout=WAIT
    )
    assert record.result == at_limit
    for refused, match in (
        ({"k": "v" * MAX_HEADERS_SIZE}, "8,193 characters, more than the 8,192 allowed"),
        ({"a" * 5000: "b" * 5000}, "10,000 characters"),
        ({"": "v"}, "name must not be empty"),
    ):
        with pytest.raises(ValueError, match=match):
            await app.submit(bounded, headers=refused)
        with pytest.raises(ValueError, match=match):
            bounded.with_options(headers=refused)
    assert len(await app.backend.list()) == 1  # only the accepted one


# -- logging ------------------------------------------------------------------------------

log = logging.getLogger("tests.observability")


def _task_records(caplog: pytest.LogCaptureFixture, task_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "task_id", None) == task_id]


async def test_task_logging_levels_and_attributes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tests.observability")
    caplog.set_level(logging.DEBUG, logger="flowrra.task")  # (last: it sets caplog's level)
    app = Flowrra()

    @app.task(name="obs.logs")
    async def logs() -> None:
        log.info("working on it")

    @app.task(name="obs.flaky", max_retries=1, retry_delay=0.01)
    async def flaky() -> None:
        if current_task().attempt == 1:
            raise ConnectionError("down")

    @app.task(name="obs.doomed", max_retries=0)
    async def doomed() -> None:
        raise ValueError("doomed")

    async with app:
        ok = await logs.submit()
        retried = await flaky.submit()
        failed = await doomed.submit()
        for task_id in (ok, retried, failed):
            await app.wait_for_result(task_id, timeout=WAIT)

    own = [r for r in _task_records(caplog, ok) if r.name == "tests.observability"]
    assert len(own) == 1
    assert (own[0].task_id, own[0].task_name, own[0].attempt) == (ok, "obs.logs", 1)  # type: ignore[attr-defined]

    task_lines = [r for r in _task_records(caplog, ok) if r.name == "flowrra.task"]
    assert [r.levelno for r in task_lines] == [logging.DEBUG, logging.INFO]
    assert re.search(r"succeeded in \d+\.\d{3}s", task_lines[1].getMessage())

    retry = [r for r in _task_records(caplog, retried) if r.levelno == logging.WARNING]
    assert len(retry) == 1 and retry[0].name == "flowrra.task"
    assert "ConnectionError: down" in retry[0].getMessage()
    assert "retry 1 of 1" in retry[0].getMessage()
    assert "0.01s" in retry[0].getMessage()
    second = [r for r in _task_records(caplog, retried) if r.levelno == logging.INFO]
    assert [r.attempt for r in second] == [2]  # type: ignore[attr-defined]

    final = [r for r in _task_records(caplog, failed) if r.levelno >= logging.WARNING]
    assert [r.levelno for r in final] == [logging.ERROR]
    assert final[0].exc_info is not None and isinstance(final[0].exc_info[1], ValueError)
    assert final[0].task_name == "obs.doomed"  # type: ignore[attr-defined]


async def test_a_final_failure_is_one_error_record_with_exc_info_for_sentry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What Sentry's LoggingIntegration(event_level=logging.ERROR) turns into events: every
    record at ERROR or above, from any logger. A task that fails for good after retries
    makes exactly one, with the traceback and the task attributes."""
    caplog.set_level(logging.INFO)
    app = Flowrra()

    @app.task(name="obs.sentry", max_retries=2, retry_delay=0.01)
    async def for_sentry() -> None:
        raise LookupError("missing row")

    async with app:
        task_id = await for_sentry.submit()
        result = await app.wait_for_result(task_id, timeout=WAIT)
    assert result.status is TaskStatus.FAILED
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    (error,) = errors
    assert error.exc_info is not None and isinstance(error.exc_info[1], LookupError)
    assert error.exc_info[2] is not None  # a traceback to send
    assert (error.task_id, error.task_name, error.attempt) == (task_id, "obs.sentry", 3)  # type: ignore[attr-defined]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2  # the retries


def test_the_json_formatter_writes_the_task_attributes() -> None:
    record = logging.makeLogRecord(
        {
            "name": "app",
            "levelno": logging.ERROR,
            "levelname": "ERROR",
            "msg": "boom %s",
            "args": ("here",),
            "task_id": "abc",
            "task_name": "obs.x",
            "attempt": 2,
        }
    )
    try:
        raise ValueError("inner")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = json.loads(JSONFormatter().format(record))
    assert line["message"] == "boom here" and line["level"] == "ERROR"
    assert (line["task_id"], line["task_name"], line["attempt"]) == ("abc", "obs.x", 2)
    assert "ValueError: inner" in line["exc_info"]
