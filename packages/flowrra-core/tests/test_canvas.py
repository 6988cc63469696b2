"""Chains and groups (``flowrra.canvas``) on the in-memory broker with a running worker,
and in eager mode: results passed along, a failure that stops a chain, groups collected
in order, argument checks, nesting, sizes, and the drain of a stopped app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from flowrra import (
    Flowrra,
    MemoryBroker,
    SerializationError,
    Signature,
    TaskMessage,
    TaskStatus,
    chain,
    group,
)
from flowrra.canvas import CHAIN_HEADER, MAX_CHAIN_STEPS, ChainHandle, GroupHandle


class Tasks:
    """The tasks of one app, and what they saw."""

    def __init__(self, app: Flowrra) -> None:
        self.app = app
        self.ran: list[tuple[str, tuple[Any, ...]]] = []
        ran = self.ran

        @app.task()
        async def add(x: int, y: int) -> int:
            ran.append(("add", (x, y)))
            return x + y

        @app.task()
        async def mul(x: int, y: int) -> int:
            ran.append(("mul", (x, y)))
            return x * y

        @app.task(max_retries=0)
        async def boom(x: int) -> int:
            ran.append(("boom", (x,)))
            raise ValueError(f"no good: {x}")

        @app.task()
        async def square(x: int) -> int:
            if x == 13:
                raise ArithmeticError("unlucky")
            return x * x

        flaky_runs: list[int] = []

        @app.task(max_retries=2, retry_delay=0.01)
        async def flaky(x: int) -> int:
            flaky_runs.append(x)
            if len(flaky_runs) == 1:
                raise ConnectionError("first attempt fails")
            return x + 1

        @app.task()
        async def slow(x: int) -> int:
            ran.append(("slow", (x,)))
            await asyncio.sleep(30)
            return x

        self.add, self.mul, self.boom, self.square = add, mul, boom, square
        self.flaky, self.slow = flaky, slow


@pytest.fixture(params=["worker", "eager"])
async def tasks(request: pytest.FixtureRequest) -> AsyncIterator[Tasks]:
    """An in-memory app, started (a worker runs each task), or eager (run at submit)."""
    if request.param == "eager":
        yield Tasks(Flowrra(eager=True))
        return
    app = Flowrra()
    made = Tasks(app)
    async with app:
        yield made


async def test_a_three_step_chain_passes_each_result_on(tasks: Tasks) -> None:
    handle = await chain(tasks.add.s(1, 2), tasks.mul.s(10), tasks.add.s(5)).submit()
    assert isinstance(handle, ChainHandle) and len(handle.ids) == 3
    assert handle.id == handle.ids[-1]
    result = await handle.wait(timeout=10)
    assert result.status is TaskStatus.SUCCESS and result.result == 35
    assert result.task_id == handle.ids[-1]
    records = await handle.results()
    assert [r.result for r in records if r] == [3, 30, 35]
    assert [r.args for r in records if r] == [(1, 2), (3, 10), (30, 5)]
    assert tasks.ran == [("add", (1, 2)), ("mul", (3, 10)), ("add", (30, 5))]


async def test_every_step_is_recorded_pending_at_submit() -> None:
    app = Flowrra()  # not started: nothing runs
    local = Tasks(app)
    handle = await chain(local.add.s(1, 2), local.mul.s(10)).submit()
    records = await handle.results()
    assert [r.status for r in records if r] == [TaskStatus.PENDING, TaskStatus.PENDING]
    assert app.pending_count() == 1  # only the first step is queued


async def test_a_failing_middle_step_stops_the_chain(tasks: Tasks) -> None:
    handle = await chain(tasks.add.s(1, 2), tasks.boom.s(), tasks.add.s(1)).submit()
    failed = await handle.wait(timeout=10)
    assert failed.status is TaskStatus.FAILED
    assert failed.task_id == handle.ids[1]
    assert failed.error == "ValueError: no good: 3"
    # Waiting on the last step returns at once: it is FAILED, and says why.
    last = await tasks.app.wait_for_result(handle.ids[2], timeout=5)
    assert last.status is TaskStatus.FAILED
    assert last.error == (
        f"ChainStopped: step 2 (boom, id {handle.ids[1]}) failed: ValueError: no good: 3"
    )
    assert last.args == (1,) and last.task_name == "add"
    assert tasks.ran == [("add", (1, 2)), ("boom", (3,))]  # the third never ran


async def test_a_retried_step_goes_on_once_it_succeeds(tasks: Tasks) -> None:
    handle = await chain(tasks.add.s(1, 2), tasks.flaky.s(), tasks.mul.s(2)).submit()
    result = await handle.wait(timeout=10)
    assert result.status is TaskStatus.SUCCESS and result.result == 8
    records = await handle.results()
    assert records[1] is not None and records[1].retries == 1


async def test_a_group_of_100_collects_its_results_in_order(tasks: Tasks) -> None:
    handle = await group(tasks.square.s(i) for i in range(100)).submit()
    assert isinstance(handle, GroupHandle) and len(handle.ids) == 100 == len(set(handle.ids))
    results = await handle.wait(timeout=20)
    assert [r.task_id for r in results] == handle.ids
    assert [r.result for r in results if r.is_success] == [i * i for i in range(100) if i != 13]
    # A failure does not stop the others; the results say which failed.
    assert not results.ok
    assert [r.task_id for r in results.failed] == [handle.ids[13]]
    assert results.failed[0].error == "ArithmeticError: unlucky"
    assert results.values[12] == 144 and results.values[13] is None
    current = await handle.results()
    assert [r.status for r in current if r] == [r.status for r in results]


async def test_a_group_takes_signatures_of_several_tasks(tasks: Tasks) -> None:
    handle = await group(tasks.add.s(1, 1), tasks.mul.s(3, 3), [tasks.add.s(2, 2)]).submit()
    results = await handle.wait(timeout=10)
    assert results.ok and results.values == [2, 9, 4]


async def test_an_empty_group_is_done_at_once(tasks: Tasks) -> None:
    handle = await group([]).submit()
    assert handle.ids == [] and await handle.wait(timeout=1) == []


async def test_options_travel_with_each_step(tasks: Tasks) -> None:
    first = tasks.add.with_options(priority=3, headers={"tenant": "acme"}).s(1, 2)
    second = tasks.mul.with_options(priority=-1, delay=0, headers={"step": "two"}).s(2)
    assert first.priority == 3 and second.delay == 0
    handle = await chain(first, second).submit()
    result = await handle.wait(timeout=10)
    assert result.result == 6 and result.priority == -1
    # Headers go down the chain: each step has the one before it's, and its own.
    assert result.headers == {"tenant": "acme", "step": "two"}


async def test_arguments_are_checked_where_the_signature_is_used(tasks: Tasks) -> None:
    with pytest.raises(TypeError, match="task 'add' cannot be called"):
        await chain(tasks.add.s(1)).submit()  # the first step gets no result before them
    with pytest.raises(TypeError, match="task 'mul' cannot be called"):
        chain(tasks.add.s(1, 2), tasks.mul.s(1, 2))  # the result is a third argument
    with pytest.raises(TypeError, match="task 'add' cannot be called"):
        group(tasks.add.s(1, 2), tasks.add.s(z=1))
    with pytest.raises(TypeError, match="priority must be an int"):
        tasks.add.with_options(priority="high").s(1, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reserved"):
        tasks.add.with_options(headers={CHAIN_HEADER: "x"}).s(1, 2)


async def test_what_cannot_travel_fails_at_submit_with_nothing_recorded(tasks: Tasks) -> None:
    with pytest.raises(SerializationError, match="chain step 'mul'"):
        await chain(tasks.add.s(1, 2), tasks.mul.s(object())).submit()
    assert tasks.ran == []
    assert await tasks.app.backend.list() == []


async def test_a_chain_is_bounded_by_what_a_header_holds(tasks: Tasks) -> None:
    too_many = [tasks.add.s(1)] * MAX_CHAIN_STEPS
    with pytest.raises(ValueError, match=f"at most {MAX_CHAIN_STEPS} steps"):
        chain(tasks.add.s(1, 2), *too_many)
    with pytest.raises(ValueError, match="more than the 1,000,000 a chain's header may hold"):
        await chain(tasks.add.s(1, 2), tasks.add.s("x" * 1_000_001)).submit()
    assert await tasks.app.backend.list() == []


async def test_nesting(tasks: Tasks) -> None:
    inner = chain(tasks.mul.s(2), tasks.add.s(1))
    handle = await chain(tasks.add.s(1, 2), inner).submit()  # flattened
    assert len(handle.ids) == 3
    assert (await handle.wait(timeout=10)).result == 7
    with pytest.raises(TypeError, match="chord"):
        chain(tasks.add.s(1, 2), group(tasks.add.s(1, 1)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a group's members are signatures"):
        group(tasks.add.s(1, 2), chain(tasks.add.s(1, 2)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a chain's steps are signatures"):
        chain(tasks.add)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one step"):
        chain()


async def test_tasks_of_two_apps_do_not_mix(tasks: Tasks) -> None:
    other = Tasks(Flowrra(eager=True))
    with pytest.raises(ValueError, match="same app"):
        group(tasks.add.s(1, 2), other.add.s(1, 2))


async def test_a_signature_is_frozen_and_submits_on_its_own(tasks: Tasks) -> None:
    signature = tasks.add.s(2, y=3)
    assert isinstance(signature, Signature) and repr(signature) == "add.s(2, y=3)"
    assert signature == tasks.add.s(2, y=3) and signature != tasks.add.s(2, y=4)
    with pytest.raises(AttributeError, match="frozen"):
        signature.priority = 1  # type: ignore[misc]
    task_id = await signature.submit()
    assert (await tasks.app.wait_for_result(task_id, timeout=10)).result == 5


async def test_sync_callers_delay_a_chain_and_a_group() -> None:
    app = Flowrra(eager=True)
    local = Tasks(app)

    def from_sync_code() -> tuple[list[Any], list[Any]]:
        chained = chain(local.add.s(1, 2), local.mul.s(2)).delay()
        grouped = group(local.add.s(i, i) for i in range(3)).delay()
        return [chained.wait_sync(timeout=5).result], grouped.wait_sync(timeout=5).values

    assert await asyncio.to_thread(from_sync_code) == ([6], [0, 2, 4])
    await app.close()


class CountingBroker(MemoryBroker):
    """The in-memory broker, counting its enqueue calls (one round trip each on Redis)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    async def enqueue(self, message: TaskMessage) -> None:
        self.calls.append(1)
        await super().enqueue(message)

    async def enqueue_many(self, messages: Sequence[TaskMessage]) -> None:
        self.calls.append(len(messages))
        await super().enqueue_many(messages)


async def test_a_group_is_queued_in_one_call_and_a_chain_step_by_step() -> None:
    broker = CountingBroker()
    app = Flowrra(broker=broker)
    local = Tasks(app)
    grouped = await group(
        [local.add.s(1, 1), local.mul.with_options(priority=2).s(2, 2), local.square.s(3)]
    ).submit()
    chained = await chain(local.add.s(1, 2), local.mul.s(2), local.add.s(1)).submit()
    assert broker.calls == [3, 1]  # one call for the group, one for the chain's first step
    async with app:
        assert (await grouped.wait(timeout=10)).values == [2, 4, 9]
        assert (await chained.wait(timeout=10)).result == 7
    assert broker.calls == [3, 1]  # the worker queued the next steps with requeue


async def test_stopping_the_app_mid_chain_fails_the_rest() -> None:
    app = Flowrra()
    local = Tasks(app)
    async with app:
        handle = await chain(local.add.s(1, 2), local.slow.s(), local.add.s(1)).submit()
        while ("slow", (3,)) not in local.ran:
            await asyncio.sleep(0.01)
        await app.stop(timeout=0.1)
    records = await handle.results()
    assert [r.status for r in records if r] == [TaskStatus.SUCCESS, *[TaskStatus.FAILED] * 2]
    assert records[2] is not None and records[2].error is not None
    assert records[2].error.startswith(f"ChainStopped: step 2 (slow, id {handle.ids[1]}) failed")


async def test_each_step_goes_to_its_own_queue() -> None:
    app = Flowrra()
    seen: list[tuple[str, str]] = []

    class Where:
        def before_attempt(self, task: Any) -> None:
            seen.append((task.message.name, task.message.queue))

    app.add_middleware(Where())

    @app.task(queue="first")
    async def one(x: int) -> int:
        return x + 1

    @app.task()
    async def two(x: int) -> int:
        return x * 2

    handle = await chain(one.s(1), two.with_options(queue="second").s(), two.s()).submit()
    stats = await app.broker.queue_stats()  # type: ignore[attr-defined]
    assert stats["first"]["queued"] == 1 and stats["default"]["queued"] == 0
    group_handle = await group([one.s(5), two.with_options(queue="third").s(5)]).submit()
    async with app:
        assert (await handle.wait(timeout=5)).result == 8
        assert [r.result for r in await group_handle.wait(timeout=5)] == [6, 10]
    assert seen[:1] == [("one", "first")]
    assert ("two", "second") in seen and ("two", "default") in seen and ("two", "third") in seen
