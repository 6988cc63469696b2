"""Contract suites: the behaviour every broker and result backend owes the engine.

Subclass them in your plugin's tests and provide the fixture they name; pytest and
pytest-asyncio (``asyncio_mode = "auto"``) run the inherited tests against your
implementation::

    from flowrra.testing import BrokerContract

    class TestMyBroker(BrokerContract):
        @pytest.fixture
        async def broker(self):
            broker = MyBroker(...)
            await broker.connect()
            await broker.purge()
            yield broker
            await broker.close()

The in-memory broker and store of flowrra-core run these same suites.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from flowrra.exceptions import SerializationError
from flowrra.protocols import Broker, ResultBackend
from flowrra.task import TaskMessage, TaskResult, TaskStatus, new_task_id

__all__ = ["BrokerContract", "ResultBackendContract", "message"]


def message(
    name: str = "job", *args: Any, priority: int = 0, eta: float | None = None, **kwargs: Any
) -> TaskMessage:
    """A fresh message for tests."""
    return TaskMessage(new_task_id(), name, args, kwargs, priority, 0, eta, time.time())


async def _drain(broker: Broker, expected: int, timeout: float = 5.0) -> list[TaskMessage]:
    out: list[TaskMessage] = []
    deadline = time.monotonic() + timeout
    while len(out) < expected and time.monotonic() < deadline:
        out.extend(await broker.reserve(expected - len(out), 0.2))
    for m in out:
        await broker.ack(m)
    return out


class BrokerContract:
    """Inherit and provide an async ``broker`` fixture yielding a connected, empty broker."""

    async def test_round_trip_keeps_fields(self, broker: Broker) -> None:
        sent = message("add", 1, "two", [3], priority=4, key={"a": None})
        await broker.enqueue(sent)
        [got] = await _drain(broker, 1)
        assert (got.id, got.name, list(got.args), got.kwargs, got.priority, got.attempt) == (
            sent.id,
            "add",
            [1, "two", [3]],
            {"key": {"a": None}},
            4,
            0,
        )

    async def test_lower_priority_number_first_and_fifo_within_priority(
        self, broker: Broker
    ) -> None:
        priorities = [5, -3, 0, 5, 10**12, 0, -(10**12), 1, 0]
        sent = [message(f"t{i}", priority=p) for i, p in enumerate(priorities)]
        for m in sent:
            await broker.enqueue(m)
        got = await _drain(broker, len(sent))
        expected = sorted(sent, key=lambda m: (m.priority, sent.index(m)))
        assert [m.id for m in got] == [m.id for m in expected]

    async def test_enqueue_many_keeps_order(self, broker: Broker) -> None:
        sent = [message(f"t{i}", priority=i % 3) for i in range(30)]
        await broker.enqueue_many(sent)
        got = await _drain(broker, 30)
        expected = sorted(sent, key=lambda m: (m.priority, sent.index(m)))
        assert [m.id for m in got] == [m.id for m in expected]

    async def test_reserve_returns_at_most_max_messages(self, broker: Broker) -> None:
        for i in range(5):
            await broker.enqueue(message(f"t{i}"))
        first = await broker.reserve(2, 1.0)
        assert len(first) == 2
        rest = await _drain(broker, 3)
        assert len(rest) == 3
        for m in first:
            await broker.ack(m)

    async def test_reserve_times_out_empty(self, broker: Broker) -> None:
        started = time.monotonic()
        assert await broker.reserve(1, 0.2) == []
        assert time.monotonic() - started >= 0.15

    async def test_reserve_wakes_when_a_message_arrives(self, broker: Broker) -> None:
        waiting = asyncio.create_task(broker.reserve(1, 10.0))
        await asyncio.sleep(0.05)
        sent = message("late")
        await broker.enqueue(sent)
        got = await asyncio.wait_for(waiting, 5.0)
        assert [m.id for m in got] == [sent.id]
        await broker.ack(got[0])

    async def test_message_with_future_eta_waits_until_due(self, broker: Broker) -> None:
        due = time.time() + 0.3
        sent = message("later", eta=due)
        await broker.enqueue(sent)
        assert await broker.reserve(1, 0.1) == []
        [got] = await _drain(broker, 1)
        assert time.time() >= due - 0.01
        assert got.id == sent.id

    async def test_requeue_delivers_the_retry_when_due(self, broker: Broker) -> None:
        await broker.enqueue(message("flaky"))
        [first] = await broker.reserve(1, 1.0)
        due = time.time() + 0.2
        await broker.requeue(first, first.next_attempt(due))
        [retry] = await _drain(broker, 1)
        assert retry.id == first.id and retry.attempt == 1 and time.time() >= due - 0.01

    async def test_release_hands_messages_back(self, broker: Broker) -> None:
        sent = message("unfinished")
        await broker.enqueue(sent)
        got = await broker.reserve(1, 1.0)
        await broker.release(got)
        [again] = await _drain(broker, 1)
        assert again.id == sent.id

    async def test_dead_lettered_message_is_not_redelivered(self, broker: Broker) -> None:
        await broker.enqueue(message("poison"))
        [got] = await broker.reserve(1, 1.0)
        await broker.dead_letter(got, "cannot run")
        assert await broker.reserve(1, 0.1) == []

    async def test_unencodable_arguments_are_rejected_and_not_queued(self, broker: Broker) -> None:
        with pytest.raises(SerializationError):
            await broker.enqueue(message("bad", object()))
        assert broker.pending_count() == 0
        assert await broker.reserve(1, 0.05) == []

    async def test_cancelled_reserve_loses_nothing(self, broker: Broker) -> None:
        waiting = asyncio.create_task(broker.reserve(1, 10.0))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        sent = message("after-cancel")
        await broker.enqueue(sent)
        [got] = await _drain(broker, 1)
        assert got.id == sent.id

    async def test_purge_removes_due_and_delayed(self, broker: Broker) -> None:
        await broker.enqueue(message("now"))
        await broker.enqueue(message("later", eta=time.time() + 60))
        assert broker.pending_count() == 2
        purged = await broker.purge()
        assert sorted(m.name for m in purged) == ["later", "now"]
        assert broker.pending_count() == 0


def _result(task_id: str, status: TaskStatus, value: Any = None) -> TaskResult:
    now = datetime.now(UTC)
    return TaskResult(
        task_id,
        status,
        "job",
        value,
        None,
        now,
        now,
        now if status in (TaskStatus.SUCCESS, TaskStatus.FAILED) else None,
    )


class ResultBackendContract:
    """Inherit and provide an async ``backend`` fixture yielding a connected backend."""

    async def test_unknown_id_is_none(self, backend: ResultBackend) -> None:
        assert await backend.get(new_task_id()) is None

    async def test_store_then_get_returns_latest(self, backend: ResultBackend) -> None:
        task_id = new_task_id()
        await backend.store(task_id, _result(task_id, TaskStatus.PENDING))
        await backend.store(task_id, _result(task_id, TaskStatus.SUCCESS, {"n": [1, 2]}))
        got = await backend.get(task_id)
        assert got is not None and got.status is TaskStatus.SUCCESS
        assert got.result == {"n": [1, 2]} and got.task_name == "job"

    async def test_wait_for_is_woken_by_completion(self, backend: ResultBackend) -> None:
        task_id = new_task_id()
        await backend.store(task_id, _result(task_id, TaskStatus.PENDING))
        waiter = asyncio.create_task(backend.wait_for(task_id, 10.0))
        await asyncio.sleep(0.05)
        await backend.store(task_id, _result(task_id, TaskStatus.RUNNING))
        await asyncio.sleep(0.05)
        assert not waiter.done(), "a RUNNING record must not end the wait"
        await backend.store(task_id, _result(task_id, TaskStatus.SUCCESS, 7))
        got = await asyncio.wait_for(waiter, 5.0)
        assert got.status is TaskStatus.SUCCESS and got.result == 7

    async def test_wait_for_returns_at_once_when_complete(self, backend: ResultBackend) -> None:
        task_id = new_task_id()
        await backend.store(task_id, _result(task_id, TaskStatus.FAILED))
        got = await asyncio.wait_for(backend.wait_for(task_id, None), 1.0)
        assert got.status is TaskStatus.FAILED

    async def test_wait_for_times_out(self, backend: ResultBackend) -> None:
        task_id = new_task_id()
        await backend.store(task_id, _result(task_id, TaskStatus.RUNNING))
        with pytest.raises(TimeoutError):
            await backend.wait_for(task_id, 0.1)

    async def test_unencodable_result_is_rejected(self, backend: ResultBackend) -> None:
        task_id = new_task_id()
        with pytest.raises(SerializationError):
            await backend.store(task_id, _result(task_id, TaskStatus.SUCCESS, object()))

    async def test_list_filters_by_status_and_name(self, backend: ResultBackend) -> None:
        done, failed = new_task_id(), new_task_id()
        await backend.store(done, _result(done, TaskStatus.SUCCESS, 1))
        await backend.store(failed, _result(failed, TaskStatus.FAILED))
        ids = {r.task_id for r in await backend.list(status=TaskStatus.FAILED, limit=1000)}
        assert failed in ids and done not in ids
        named = await backend.list(task_name="job", limit=1000)
        assert {done, failed} <= {r.task_id for r in named}
