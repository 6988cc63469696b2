"""Chains and groups across real worker processes (``flowrra worker redis_app:app``) on a
real Redis server: results passed from process to process, a failure that stops a chain,
a group collected in order, and workers SIGKILLed mid-chain."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import redis
from apps import redis_app
from conftest import Workers

from flowrra import Flowrra, TaskStatus, chain, group


def ran_counts(sync_redis: redis.Redis, prefix: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in sync_redis.hgetall(f"{prefix}:ran").items()}


async def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def signatures_of(producer: Flowrra) -> dict[str, Any]:
    """Handles of redis_app's tasks bound to the producer (a signature is submitted
    through the app its task is registered in: redis_app's own app, in this process, has
    another key prefix)."""
    return {h.name: producer.task(name=h.name)(h.fn) for h in list(redis_app.app.registry)}


async def test_a_chain_passes_results_between_worker_processes(
    producer: Flowrra, workers: Workers, sync_redis: redis.Redis, prefix: str
) -> None:
    workers.start("-c", "4")
    workers.start("-c", "4")
    step = signatures_of(producer)["step"]
    handle = await chain(step.s(1, "a"), step.s("b"), step.s("c")).submit()
    result = await handle.wait(timeout=30)
    assert result.status is TaskStatus.SUCCESS and result.result == 4
    records = await handle.results()
    assert [r.args for r in records if r] == [(1, "a"), (2, "b"), (3, "c")]
    assert ran_counts(sync_redis, prefix) == {
        "a:start": 1, "a": 1, "b:start": 1, "b": 1, "c:start": 1, "c": 1
    }  # fmt: skip


async def test_a_failing_step_stops_the_chain_and_wakes_waiters_on_later_steps(
    producer: Flowrra, workers: Workers, sync_redis: redis.Redis, prefix: str
) -> None:
    workers.start("-c", "4")
    tasks = signatures_of(producer)
    step, boom = tasks["step"], tasks["boom"]
    handle = await chain(step.s(1, "a"), boom.s("b"), step.s("c"), step.s("d")).submit()
    # Waiters on the later steps' ids are woken by their FAILED records.
    later = [producer.wait_for_result(i, timeout=30) for i in handle.ids[2:]]
    failed = await handle.wait(timeout=30)
    assert failed.task_id == handle.ids[1] and failed.error == "ValueError: boom at 2"
    for record in await asyncio.gather(*later):
        assert record.status is TaskStatus.FAILED
        assert record.error == (
            f"ChainStopped: step 2 (boom, id {handle.ids[1]}) failed: ValueError: boom at 2"
        )
    assert ran_counts(sync_redis, prefix) == {"a:start": 1, "a": 1, "b": 1}


async def test_a_group_of_100_runs_on_two_workers_and_collects_in_order(
    producer: Flowrra, workers: Workers
) -> None:
    workers.start("-c", "8")
    workers.start("-c", "8")
    tasks = signatures_of(producer)
    members = [tasks["boom"].s(n, "boom") if n == 50 else tasks["record"].s(n) for n in range(100)]
    handle = await group(members).submit()
    results = await handle.wait(timeout=60)
    assert [r.task_id for r in results] == handle.ids
    assert [r.result for r in results] == [None if n == 50 else n for n in range(100)]
    assert [r.task_id for r in results.failed] == [handle.ids[50]]


async def test_a_worker_killed_after_a_step_is_recorded_and_before_its_ack(
    producer: Flowrra, workers: Workers, sync_redis: redis.Redis, prefix: str
) -> None:
    """The worker dies (SIGKILL, from inside: ``DiesAfterRecording``) once step 2's
    SUCCESS is stored and before the step is settled and step 3 queued. Its message is
    delivered again when its lease expires; the next worker finds the step complete, does
    not run it again, and queues step 3 from the stored result: each step ran once."""
    victim = workers.start("-c", "4", lease=2.0)
    tasks = signatures_of(producer)
    step, dies = tasks["step"], tasks["dies_after_success"]
    handle = await chain(step.s(1, "a"), dies.s("b"), step.s("c")).submit()
    assert await asyncio.to_thread(victim.wait, 60) == -signal.SIGKILL
    assert (await producer.get_result(handle.ids[1])).status is TaskStatus.SUCCESS  # type: ignore[union-attr]
    assert (await producer.get_result(handle.ids[2])).status is TaskStatus.PENDING  # type: ignore[union-attr]
    workers.start("-c", "4", lease=2.0)
    result = await handle.wait(timeout=60)
    assert result.status is TaskStatus.SUCCESS and result.result == 21
    assert ran_counts(sync_redis, prefix) == {
        "a:start": 1, "a": 1, "b": 1, "c:start": 1, "c": 1
    }  # fmt: skip
    assert [r.retries for r in await handle.results() if r] == [0, 0, 0]


async def test_a_worker_killed_while_a_step_runs(
    producer: Flowrra, workers: Workers, sync_redis: redis.Redis, prefix: str
) -> None:
    """SIGKILL while step 2 runs: it runs again after its lease expires (at least once),
    and step 3 is queued once, by the run that finished."""
    victim = workers.start("-c", "4", lease=2.0)
    step = signatures_of(producer)["step"]
    handle = await chain(step.s(1, "a"), step.s("b", 1.5), step.s("c")).submit()
    await wait_until(lambda: "b:start" in ran_counts(sync_redis, prefix), 30, "step 2")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    workers.start("-c", "4", lease=2.0)
    result = await handle.wait(timeout=60)
    assert result.status is TaskStatus.SUCCESS and result.result == 4
    counts = ran_counts(sync_redis, prefix)
    assert counts == {"a:start": 1, "a": 1, "b:start": 2, "b": 1, "c:start": 1, "c": 1}
