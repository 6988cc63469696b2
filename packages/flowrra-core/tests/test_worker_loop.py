"""The worker loop (flowrra.worker.loop): the composition of the parts, what it exports,
and its slots, which outlive a message they could not settle."""

from __future__ import annotations

import asyncio

import flowrra.worker
from flowrra import Config, ExecutorConfig, Flowrra, MemoryBackend, TaskStatus
from flowrra.exceptions import BackendError
from flowrra.task import TaskResult
from flowrra.worker import TaskTimeoutExpired, Worker


class FailingOnceBackend(MemoryBackend):
    """Cannot store the first RUNNING record (a backend that is down for a moment)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    async def store(self, task_id: str, result: TaskResult) -> None:
        if self.down and result.status is TaskStatus.RUNNING:
            self.down = False
            raise BackendError("the backend is down")
        await super().store(task_id, result)


def test_the_package_exports_what_worker_py_did() -> None:
    assert flowrra.worker.__all__ == ["TaskTimeoutExpired", "Worker"]
    assert Worker.__module__ == "flowrra.worker.loop"
    assert issubclass(TaskTimeoutExpired, TimeoutError)


async def test_the_parts_share_what_the_worker_holds() -> None:
    worker = Flowrra().worker
    held = worker.leases.held
    assert worker.reserver._held is held and worker.settler._held is held
    assert worker.runner.settler is worker.settler and worker.drainer.settler is worker.settler


async def test_describe_counts_busy_slots_and_settled_tasks() -> None:
    app = Flowrra(Config(executor=ExecutorConfig(num_workers=3)))
    started, go_on = asyncio.Event(), asyncio.Event()

    @app.task()
    async def wait() -> None:
        started.set()
        await go_on.wait()

    @app.task()
    async def quick() -> None:
        return None

    async with app:
        for _ in range(2):
            await app.wait_for_result(await app.submit(quick), timeout=10)
        blocked = await app.submit(wait)
        await started.wait()
        info = app.worker.describe()
        assert (info["busy"], info["processed"], info["concurrency"]) == (1, 2, 3)
        assert info["tasks"] == ["quick", "wait"] and info["id"] == app.worker.worker_id
        go_on.set()
        await app.wait_for_result(blocked, timeout=10)
        assert app.worker.processed == 3


async def test_a_slot_outlives_a_message_it_could_not_settle() -> None:
    backend = FailingOnceBackend()
    app = Flowrra(Config(executor=ExecutorConfig(num_workers=1)), backend=backend)

    @app.task()
    async def job() -> str:
        return "ran"

    async with app:
        doomed = await app.submit(job)  # one slot: the first to run
        after = await app.submit(job)
        result = await app.wait_for_result(after, timeout=10)
        assert result.result == "ran"
        # the first is left to its lease (a durable broker would deliver it again)
        stuck = await app.get_result(doomed)
        assert stuck is not None and stuck.status is TaskStatus.PENDING
        assert app.worker.processed == 1 and app.worker.leases.held == {}
