"""Issue 12 across processes: headers, progress and task logging between a producer and
real ``flowrra worker`` processes over Redis. The worker's app: apps/observability_app.py.
The same in one process: packages/flowrra-core/tests/test_observability.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
from conftest import APPS, Workers

from flowrra import Flowrra, TaskResult, TaskStatus
from flowrra.task import Progress

WAIT = 60  # seconds: a hang guard, never a timing assertion


def start_worker(
    workers: Workers, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``flowrra worker observability_app:app`` with ``extra`` arguments, stopped with the
    ``workers`` fixture's (its output: ``workers.output(proc)``)."""
    log = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (closed by the pool)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowrra", "worker", "observability_app:app", *extra],
        cwd=APPS,
        env={**workers.env, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    workers.procs.append(proc)
    workers._logs[proc.pid] = log
    return proc


def stop(workers: Workers, proc: subprocess.Popen[str]) -> str:
    """Stop ``proc`` (SIGTERM, as the pool does) and return all it wrote."""
    proc.terminate()
    proc.wait(30)
    return workers.output(proc)


@pytest.fixture
async def producer(make_app: Callable[..., Flowrra]) -> AsyncIterator[Flowrra]:
    """An app that submits the worker's tasks by their names and runs none of them."""
    app = make_app()

    @app.task(name="obs.echo")
    async def echo() -> Any: ...

    @app.task(name="obs.fails_once")
    async def fails_once() -> Any: ...

    @app.task(name="obs.own_headers")
    async def own_headers(headers: dict[str, str]) -> Any: ...

    @app.task(name="obs.progress")
    async def progress(go_on: str) -> Any: ...

    @app.task(name="obs.logs")
    async def logs(word: str) -> Any: ...

    @app.task(name="obs.not_in_the_worker")
    async def not_in_the_worker() -> Any: ...

    async with app.producer():
        yield app


def handle(app: Flowrra, name: str) -> Any:
    return app.registry.get_or_raise(name)


async def result_of(app: Flowrra, task_id: str) -> TaskResult:
    return await app.wait_for_result(task_id, timeout=WAIT)


# -- headers ------------------------------------------------------------------------------


async def test_headers_reach_the_worker_process_and_the_record(
    producer: Flowrra, workers: Workers
) -> None:
    start_worker(workers)
    by_option = await handle(producer, "obs.echo").with_options(headers={"trace": "t-1"}).submit()
    by_submit = await producer.submit("obs.echo", headers={"tenant": "acme", "é": "ü"})
    none = await producer.submit("obs.echo")
    for task_id, headers in (
        (by_option, {"trace": "t-1"}),
        (by_submit, {"tenant": "acme", "é": "ü"}),
        (none, {}),
    ):
        result = await result_of(producer, task_id)
        assert result.status is TaskStatus.SUCCESS, result.error
        assert result.result == {"headers": headers, "attempt": 1, "id": task_id}
        assert dict(result.headers) == headers  # stored with the record
        stored = await producer.get_result(task_id)
        assert stored is not None and dict(stored.headers) == headers


async def test_headers_survive_a_retry_and_delayed_delivery(
    producer: Flowrra, workers: Workers
) -> None:
    start_worker(workers)
    retried = await producer.submit("obs.fails_once", headers={"trace": "t-2"})
    delayed = (
        await handle(producer, "obs.echo")
        .with_options(delay=0.5, headers={"trace": "t-3"})
        .submit()
    )
    first = await result_of(producer, retried)
    assert first.status is TaskStatus.SUCCESS, first.error
    assert first.result["attempt"] == 2 and first.retries == 1
    assert first.result["headers"] == {"trace": "t-2"} and dict(first.headers) == {"trace": "t-2"}
    later = await result_of(producer, delayed)
    assert later.status is TaskStatus.SUCCESS, later.error
    assert later.result["headers"] == {"trace": "t-3"} and dict(later.headers) == {"trace": "t-3"}


async def test_a_task_with_a_headers_parameter_gets_it_as_its_argument(
    producer: Flowrra, workers: Workers
) -> None:
    start_worker(workers)
    plain = await producer.submit("obs.own_headers", headers={"a": "1"})
    both = (
        await handle(producer, "obs.own_headers")
        .with_options(headers={"trace": "t-4"})
        .submit(headers={"b": "2"})
    )
    result = await result_of(producer, plain)
    assert result.status is TaskStatus.SUCCESS, result.error
    assert result.result == {"argument": {"a": "1"}, "message": {}}  # as in 0.1.8
    result = await result_of(producer, both)
    assert result.result == {"argument": {"b": "2"}, "message": {"trace": "t-4"}}


async def test_a_task_the_worker_lacks_is_dead_lettered_and_recorded_failed(
    producer: Flowrra, workers: Workers
) -> None:
    proc = start_worker(workers)
    task_id = await producer.submit("obs.not_in_the_worker", headers={"trace": "t-5"})
    result = await result_of(producer, task_id)
    assert result.status is TaskStatus.FAILED
    assert result.error is not None and result.error.startswith("TaskNotRegisteredError")
    output = stop(workers, proc)
    assert f"obs.not_in_the_worker[{task_id}] dead-lettered" in output


# -- progress -----------------------------------------------------------------------------


async def test_progress_in_a_worker_process_is_seen_by_the_producer(
    producer: Flowrra, workers: Workers, sync_redis: redis.Redis, prefix: str
) -> None:
    start_worker(workers)
    go_on = f"{prefix}:go-on-{uuid.uuid4().hex[:6]}"
    task_id = await producer.submit("obs.progress", go_on)

    async def progress_seen() -> TaskResult:
        while True:
            record = await producer.get_result(task_id)
            if record is not None and record.progress is not None:
                return record
            await asyncio.sleep(0.02)

    try:
        record = await asyncio.wait_for(progress_seen(), WAIT)
    finally:
        sync_redis.set(go_on, 1)  # the task finishes whatever happened
    assert record.status is TaskStatus.RUNNING
    assert record.progress == Progress(0.5, "half way")
    result = await result_of(producer, task_id)
    assert result.status is TaskStatus.SUCCESS and result.result == "done"


# -- the worker's logging -----------------------------------------------------------------


def _json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


async def test_log_format_json_lines_carry_the_task_id(producer: Flowrra, workers: Workers) -> None:
    proc = start_worker(workers, "--log-level", "INFO", "--log-format", "json")
    task_id = await producer.submit("obs.logs", "json-word")
    assert (await result_of(producer, task_id)).status is TaskStatus.SUCCESS
    lines = _json_lines(stop(workers, proc))
    assert lines, "no JSON line at all"
    own = [line for line in lines if line["logger"] == "observability_app"]
    assert len(own) == 1
    assert own[0]["message"] == "own record json-word" and own[0]["level"] == "WARNING"
    assert (own[0]["task_id"], own[0]["task_name"], own[0]["attempt"]) == (
        task_id,
        "obs.logs",
        1,
    )
    success = [
        line
        for line in lines
        if line["logger"] == "flowrra.task" and line.get("task_id") == task_id
    ]
    assert [line["level"] for line in success] == ["INFO"]
    assert "succeeded in" in success[0]["message"]


async def test_no_configure_logging_leaves_the_apps_own_configuration(
    producer: Flowrra, workers: Workers
) -> None:
    proc = start_worker(workers, "--no-configure-logging", env={"FLOWRRA_TEST_OWN_LOGGING": "1"})
    task_id = await producer.submit("obs.logs", "own-word")
    assert (await result_of(producer, task_id)).status is TaskStatus.SUCCESS
    output = stop(workers, proc)
    lines = [line for line in output.splitlines() if line.strip()]
    assert "OWN WARNING observability_app: own record own-word" in lines
    assert any(
        line.startswith("OWN INFO flowrra.task:") and f"[{task_id}] succeeded in" in line
        for line in lines
    )
    # Nothing in the worker's own formats.
    assert not any(line.startswith("{") for line in lines)
    assert not any(" [task obs.logs " in line for line in lines)


async def test_log_level_warning_hides_the_success_lines(
    producer: Flowrra, workers: Workers
) -> None:
    proc = start_worker(workers, "--log-level", "WARNING")
    task_id = await producer.submit("obs.logs", "quiet-word")
    assert (await result_of(producer, task_id)).status is TaskStatus.SUCCESS
    output = stop(workers, proc)
    own = [line for line in output.splitlines() if "own record quiet-word" in line]
    assert len(own) == 1
    # The text format names the task on the records of its own code.
    assert own[0].endswith(f"[task obs.logs {task_id} attempt 1]")
    assert "succeeded in" not in output


async def test_by_default_the_worker_logs_its_own_lines_not_a_line_per_success(
    producer: Flowrra, workers: Workers
) -> None:
    """Without --log-level: the worker's start at INFO, no line per successful task (one
    costs more CPU than the engine spends on the task; bench/README, callgrind)."""
    proc = start_worker(workers)
    task_id = await producer.submit("obs.logs", "default-word")
    assert (await result_of(producer, task_id)).status is TaskStatus.SUCCESS
    output = stop(workers, proc)
    assert "flowrra started:" in output
    assert "own record default-word" in output  # the task's own WARNING
    assert "succeeded in" not in output
