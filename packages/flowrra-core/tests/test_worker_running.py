"""The runner (flowrra.worker.running): one attempt, from RUNNING to an outcome: the value,
a retry after the policy's delay, or a failure for good (a timeout and a task cancelling
itself included); a cancellation from outside is no outcome."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from flowrra import Flowrra, MemoryBackend, MemoryBroker, TaskStatus
from flowrra.events import TaskEvent
from flowrra.executors import IOExecutor
from flowrra.task import TaskMessage
from flowrra.worker import TaskTimeoutExpired
from flowrra.worker.running import Runner
from flowrra.worker.settling import Settler


class Parts:
    """A runner wired to a real settler, memory broker and backend, and an app (never
    started) that registers the tasks it runs."""

    def __init__(self) -> None:
        self.app = Flowrra()
        self.broker = MemoryBroker()
        self.backend = MemoryBackend()
        self.held: dict[str, TaskMessage] = {}
        self.settler = Settler(self.broker, self.backend, self.app.events, self.held)
        self.runner = Runner(self.backend, self.app.events, self.settler)
        self.events: list[TaskEvent] = []
        self.app.events.add_listener(self.events.append)

    async def run(self, name: str, *args: Any, attempt: int = 0) -> TaskMessage:
        # the task's name is its id too: one id across its attempts
        msg = TaskMessage(name, name, args, attempt=attempt, submitted_at=time.time())
        self.held[msg.id] = msg
        await self.runner.run(self.app.registry.get(name), msg, IOExecutor())
        return msg

    def statuses(self) -> list[TaskStatus]:
        return [event.status for event in self.events]


@pytest.fixture
def parts() -> Parts:
    return Parts()


async def test_a_value_is_recorded_running_then_success(parts: Parts) -> None:
    @parts.app.task()
    async def add(a: int, b: int) -> int:
        running = await parts.backend.get("add")
        assert running is not None and running.status is TaskStatus.RUNNING
        return a + b

    await parts.run("add", 2, 3)
    result = await parts.backend.get("add")
    assert result is not None and result.status is TaskStatus.SUCCESS and result.result == 5
    assert result.started_at is not None and result.finished_at is not None
    assert parts.statuses() == [TaskStatus.RUNNING, TaskStatus.SUCCESS]
    assert parts.held == {} and parts.broker.pending_count() == 0


async def test_an_error_is_retried_with_the_policys_delay_then_fails_for_good(
    parts: Parts,
) -> None:
    @parts.app.task(max_retries=2, retry_delay=10)
    async def flaky() -> None:
        raise ConnectionError("down")

    for attempt in range(3):
        await parts.run("flaky", attempt=attempt)
    retries = [(e.status, e.retry_in) for e in parts.events if e.status is not TaskStatus.RUNNING]
    assert retries == [
        (TaskStatus.RETRYING, 10.0),  # retry 1 after retry_delay
        (TaskStatus.RETRYING, 20.0),  # retry 2 after twice that
        (TaskStatus.FAILED, None),
    ]
    requeued = await parts.broker.purge()
    assert [(m.id, m.attempt) for m in requeued] == [("flaky", 1), ("flaky", 2)]
    result = await parts.backend.get("flaky")
    assert result is not None and result.status is TaskStatus.FAILED
    assert result.error == "ConnectionError: down" and result.retries == 2
    assert "ConnectionError: down" in (result.traceback or "")


async def test_only_the_listed_errors_are_retried(parts: Parts) -> None:
    @parts.app.task(max_retries=3, retry_on=(ConnectionError,))
    async def wrong() -> None:
        raise ValueError("bad input")

    await parts.run("wrong")
    assert parts.statuses() == [TaskStatus.RUNNING, TaskStatus.FAILED]
    assert parts.broker.pending_count() == 0


async def test_a_task_past_its_timeout_fails_with_task_timeout_expired(parts: Parts) -> None:
    never = asyncio.Event()

    @parts.app.task(timeout=0.05, max_retries=1, retry_on=(TimeoutError,))
    async def stuck() -> None:
        await never.wait()

    await parts.run("stuck")
    await parts.run("stuck", attempt=1)
    final = [e for e in parts.events if e.status is not TaskStatus.RUNNING]
    # a TaskTimeoutExpired is a TimeoutError: the policy retries it like one
    assert [e.status for e in final] == [TaskStatus.RETRYING, TaskStatus.FAILED]
    assert final[-1].error == "TaskTimeoutExpired: task exceeded its timeout of 0.05s"
    assert issubclass(TaskTimeoutExpired, TimeoutError)


async def test_a_task_that_cancels_itself_fails(parts: Parts) -> None:
    @parts.app.task()
    async def quitter() -> None:
        raise asyncio.CancelledError

    await parts.run("quitter")
    result = await parts.backend.get("quitter")
    assert result is not None and result.status is TaskStatus.FAILED
    assert result.error == "CancelledError: the task cancelled itself"


async def test_a_cancellation_from_outside_is_no_outcome(parts: Parts) -> None:
    started = asyncio.Event()

    @parts.app.task()
    async def long() -> None:
        started.set()
        await asyncio.sleep(60)

    attempt = asyncio.create_task(parts.run("long"))
    await started.wait()
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    # left as it was: RUNNING and held, for the drain to release or record
    result = await parts.backend.get("long")
    assert result is not None and result.status is TaskStatus.RUNNING
    assert list(parts.held) == ["long"] and parts.settler.processed == 0


async def test_a_message_for_no_registered_task_is_rejected(parts: Parts) -> None:
    await parts.run("nobody")
    assert [m.id for m, _ in parts.broker.dead_letters] == ["nobody"]
    result = await parts.backend.get("nobody")
    assert result is not None and (result.error or "").startswith("TaskNotRegisteredError")
    assert parts.statuses() == [TaskStatus.FAILED]
