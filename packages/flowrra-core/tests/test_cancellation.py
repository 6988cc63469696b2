"""app.cancel on the in-memory broker: waiting tasks never run, running ones are
interrupted (async) or discarded (CPU, thread), complete and unknown ids are no-ops, a
cancelled task is not retried and a cancelled chain step stops its chain."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flowrra import CancelOutcome, Flowrra, TaskResult, TaskStatus, chain
from flowrra.brokers.memory import MemoryBroker

sys.path.insert(0, str(Path(__file__).parent / "apps"))  # cpu_tasks: the pool imports it


def app_with_tasks() -> tuple[Flowrra, dict[str, Any]]:
    app = Flowrra()
    seen: dict[str, Any] = {"ran": [], "interrupted": [], "started": asyncio.Event()}

    @app.task()
    async def sleeper(label: str, seconds: float = 30.0) -> str:
        seen["ran"].append(label)
        seen["started"].set()
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            seen["interrupted"].append(label)
            raise
        return label

    @app.task(max_retries=3, retry_delay=0.01)
    async def flaky(label: str) -> None:
        seen["ran"].append(label)
        seen["started"].set()
        await asyncio.sleep(0.3)
        raise RuntimeError("again")

    @app.task()
    def blocking(seconds: float) -> str:
        seen["thread_started"].set()
        time.sleep(seconds)
        seen["ran"].append("thread done")
        return "done"

    @app.task()
    async def add(a: int, b: int = 1) -> int:
        seen["ran"].append(f"add{a}")
        await asyncio.sleep(0.2)
        return a + b

    seen["thread_started"] = threading.Event()
    seen.update(sleeper=sleeper, flaky=flaky, blocking=blocking, add=add)
    return app, seen


async def test_a_queued_task_is_removed_and_never_runs() -> None:
    app, seen = app_with_tasks()
    async with app.producer():
        task_id = await seen["sleeper"].submit("queued")
        assert await app.cancel(task_id) is CancelOutcome.REMOVED
        record = await app.get_result(task_id)
        assert record is not None and record.status is TaskStatus.CANCELLED
        assert record.is_complete and record.error == "TaskCancelled: cancelled by app.cancel()"
        assert app.pending_count() == 0
    async with app:
        await app.join()
    assert seen["ran"] == []


async def test_a_delayed_task_is_removed_and_never_runs() -> None:
    app, seen = app_with_tasks()
    async with app:
        task_id = await app.submit(seen["sleeper"], "later", 0.0, delay=0.3)
        assert await app.cancel(task_id, reason="not needed") is CancelOutcome.REMOVED
        assert app.pending_count() == 0
        await asyncio.sleep(0.5)
        record = await app.wait_for_result(task_id, 1)
    assert record.status is TaskStatus.CANCELLED and record.error == "TaskCancelled: not needed"
    assert seen["ran"] == []


async def test_a_running_async_task_gets_cancelled_error_and_waiters_wake() -> None:
    app, seen = app_with_tasks()
    async with app:
        task_id = await seen["sleeper"].submit("running")
        await asyncio.wait_for(seen["started"].wait(), 5)
        waiter = asyncio.create_task(app.wait_for_result(task_id, 5))
        await asyncio.sleep(0.05)
        assert await app.cancel(task_id) is CancelOutcome.SIGNALLED
        record = await waiter
        await asyncio.sleep(0.05)
        assert seen["interrupted"] == ["running"]
        # The worker goes on: the slot is free and not left cancelling.
        after = await seen["add"].submit(1)
        assert (await app.wait_for_result(after, 5)).result == 2
        assert app.worker.runner.cancels.interrupting == {}
    assert record.status is TaskStatus.CANCELLED


async def test_a_cancelled_task_is_not_retried() -> None:
    app, seen = app_with_tasks()
    async with app:
        task_id = await seen["flaky"].submit("once")
        await asyncio.wait_for(seen["started"].wait(), 5)
        assert await app.cancel(task_id) is CancelOutcome.SIGNALLED
        await asyncio.sleep(0.5)
        record = await app.get_result(task_id)
    assert seen["ran"] == ["once"]
    assert record is not None and record.status is TaskStatus.CANCELLED


async def test_a_thread_task_runs_on_and_its_result_is_discarded() -> None:
    app, seen = app_with_tasks()
    async with app:
        task_id = await seen["blocking"].submit(0.5)
        assert await asyncio.to_thread(seen["thread_started"].wait, 5)
        assert await app.cancel(task_id) is CancelOutcome.SIGNALLED
        await asyncio.sleep(0.8)  # the thread finished meanwhile
        record = await app.get_result(task_id)
    assert seen["ran"] == ["thread done"]  # not interrupted...
    assert record is not None and record.status is TaskStatus.CANCELLED  # ...discarded


async def test_a_running_cpu_task_is_discarded() -> None:
    import cpu_tasks

    app = cpu_tasks.app
    async with app:
        task_id = await app.submit(cpu_tasks.occupy, 1.0)
        deadline = time.monotonic() + 30
        while (record := await app.get_result(task_id)).status is not TaskStatus.RUNNING:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert await app.cancel(task_id) is CancelOutcome.SIGNALLED
        await asyncio.sleep(1.5)  # the pool's process finished it meanwhile
        record = await app.get_result(task_id)
        assert record is not None and record.status is TaskStatus.CANCELLED
        assert record.result is None
        # the lane is free for the next one
        assert (await app.wait_for_result(await app.submit(cpu_tasks.square, 3), 30)).result == 9


async def test_complete_and_unknown_ids_are_no_ops() -> None:
    app, seen = app_with_tasks()
    async with app:
        task_id = await seen["add"].submit(2)
        done = await app.wait_for_result(task_id, 5)
        assert await app.cancel(task_id) is CancelOutcome.ALREADY_COMPLETE
        assert await app.cancel("no-such-task") is CancelOutcome.UNKNOWN
        assert await app.get_result(task_id) == done
        cancelled = await seen["sleeper"].submit("x")
        assert await app.cancel(cancelled) is CancelOutcome.REMOVED
        assert await app.cancel(cancelled) is CancelOutcome.ALREADY_COMPLETE
    assert not CancelOutcome.ALREADY_COMPLETE.done and CancelOutcome.REMOVED.done


async def test_cancel_racing_completion_gives_one_final_status() -> None:
    """Cancel at random moments around a task's end: the outcome always agrees with the
    record, and the record is final once."""
    app, seen = app_with_tasks()
    outcomes: set[CancelOutcome] = set()
    async with app:
        for n in range(30):
            task_id = await seen["add"].submit(n)
            await asyncio.sleep(0.19 + (n % 5) * 0.005)
            outcome = await app.cancel(task_id)
            outcomes.add(outcome)
            record = await app.wait_for_result(task_id, 5)
            if outcome is CancelOutcome.ALREADY_COMPLETE:
                assert record.status is TaskStatus.SUCCESS and record.result == n + 1
            else:
                assert record.status is TaskStatus.CANCELLED
            await asyncio.sleep(0.05)
            again = await app.get_result(task_id)  # its status never changes again
            assert again is not None and (again.status, again.result) == (
                record.status,
                record.result,
            )
    assert outcomes, outcomes


async def test_a_cancelled_chain_step_stops_its_chain() -> None:
    app, seen = app_with_tasks()
    async with app:
        handle = await chain(seen["sleeper"].s("first"), seen["add"].s(), seen["add"].s()).submit()
        await asyncio.wait_for(seen["started"].wait(), 5)
        assert await app.cancel(handle.ids[0]) is CancelOutcome.SIGNALLED
        outcome = await handle.wait(5)
        records = await handle.results()
    assert [r.status for r in records if r is not None] == [TaskStatus.CANCELLED] * 3
    assert outcome.task_id == handle.ids[0] and outcome.status is TaskStatus.CANCELLED
    assert "step 1" in (records[1].error or "") and "cancelled" in (records[1].error or "")


def test_cancel_sync_from_a_thread() -> None:
    app, seen = app_with_tasks()

    async def main() -> None:
        async with app:
            task_id = await app.submit(seen["sleeper"], "s", delay=10)
            outcome = await asyncio.to_thread(app.cancel_sync, task_id)
            assert outcome is CancelOutcome.REMOVED

    asyncio.run(main())


async def test_bad_ids_and_a_broker_that_cannot_cancel_raise() -> None:
    app, _ = app_with_tasks()
    async with app.producer():
        with pytest.raises(TypeError, match="task id"):
            await app.cancel(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="task id"):
            await app.cancel("")

    class Plain(MemoryBroker):
        cancel = None  # type: ignore[assignment]  # not a Cancellation

    plain = Flowrra(broker=Plain())
    async with plain.producer():
        await plain.backend.store("t", TaskResult("t", TaskStatus.PENDING))
        with pytest.raises(TypeError, match="Plain cannot cancel"):
            await plain.cancel("t")
