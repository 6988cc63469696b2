"""The engine's behaviour: order, retries, concurrency, CPU processes, timeouts, stopping,
bounds and events. Due times (retries) are asserted on a ManualClock the test advances,
never as gaps measured on the wall clock; no test makes a performance claim."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import sys
import time
from pathlib import Path

import pytest

from flowrra import Flowrra, MemoryBackend, MemoryBroker, TaskEvent, TaskMessage, TaskStatus
from flowrra.clock import ManualClock
from flowrra.config import Config, ExecutorConfig
from flowrra.exceptions import BackendError

sys.path.insert(0, str(Path(__file__).parent / "apps"))


async def test_priority_order_under_load(make_app) -> None:
    app = make_app(num_workers=1, max_queue_size=0)
    order: list[int] = []
    gate = asyncio.Event()

    @app.task()
    async def blocker() -> None:
        await gate.wait()

    @app.task()
    async def record(i: int) -> None:
        order.append(i)

    await app.start()
    first = await app.submit(blocker)
    while (await app.get_result(first)).status is not TaskStatus.RUNNING:  # type: ignore[union-attr]
        await asyncio.sleep(0.005)
    rng = random.Random(7)
    priorities = [rng.randint(-5, 5) for _ in range(500)]
    ids = [await app.submit(record, i, priority=p) for i, p in enumerate(priorities)]
    assert app.pending_count() == 500
    gate.set()
    for task_id in ids:
        await app.wait_for_result(task_id, timeout=10)
    expected = sorted(range(500), key=lambda i: (priorities[i], i))
    assert order == expected


class RequeueRecorder(MemoryBroker):
    """The in-memory broker, noting the due time of every retry it is asked to queue."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self.due_times: asyncio.Queue[float | None] = asyncio.Queue()

    async def requeue(self, message: TaskMessage, retry: TaskMessage) -> None:
        self.due_times.put_nowait(retry.eta)
        await super().requeue(message, retry)


async def test_retries_back_off_exponentially() -> None:
    """Retry n is due ``retry_delay * 2**(n-1)`` after the attempt that failed, on the
    app's clock, and the broker holds it until then."""
    clock = ManualClock(start=1_767_225_600.0)
    broker = RequeueRecorder(clock)
    app = Flowrra(broker=broker, clock=clock)
    ran_at: list[float] = []

    @app.task(max_retries=3, retry_delay=2)
    async def always_fails() -> None:
        ran_at.append(clock.time())
        raise ConnectionError("down")

    async with app:
        task_id = await app.submit(always_fails)
        for delay in (2, 4, 8):
            due = await asyncio.wait_for(broker.due_times.get(), 10)
            assert due == ran_at[-1] + delay == clock.time() + delay
            async with asyncio.timeout(10):
                await clock.waiting()
            assert clock.next_wake == due  # the broker waits for exactly that moment
            clock.advance(delay)
        result = await app.wait_for_result(task_id, timeout=10)
    assert result.status is TaskStatus.FAILED and result.retries == 3
    assert result.error == "ConnectionError: down" and "ConnectionError" in result.traceback
    start = ran_at[0]
    assert ran_at == [start, start + 2, start + 6, start + 14]
    assert broker.due_times.empty()


async def test_retry_succeeds_and_only_listed_exceptions_retry(make_app) -> None:
    app = make_app()
    calls = {"flaky": 0, "fatal": 0}

    @app.task(max_retries=5, retry_delay=0.01)
    async def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise TimeoutError("slow upstream")
        return "ok"

    @app.task(max_retries=5, retry_delay=0.01, retry_on=(ConnectionError,))
    async def fatal() -> None:
        calls["fatal"] += 1
        raise KeyError("bad input")

    await app.start()
    ok = await app.wait_for_result(await app.submit(flaky), timeout=5)
    bad = await app.wait_for_result(await app.submit(fatal), timeout=5)
    assert (ok.status, ok.retries, ok.result) == (TaskStatus.SUCCESS, 2, "ok")
    assert (bad.status, bad.retries, calls["fatal"]) == (TaskStatus.FAILED, 0, 1)


async def test_a_retry_waiting_for_its_due_time_holds_no_slot() -> None:
    clock = ManualClock()
    app = Flowrra(Config(executor=ExecutorConfig(num_workers=1)), clock=clock)
    tries = {"n": 0}

    @app.task(max_retries=1, retry_delay=30)
    async def fails_once() -> str:
        tries["n"] += 1
        if tries["n"] == 1:
            raise RuntimeError("first try fails")
        return "retried"

    @app.task()
    async def quick() -> str:
        return "quick"

    async with app:
        retried = await app.submit(fails_once)
        async with asyncio.timeout(10):
            await clock.waiting()  # the retry waits in the broker, due in 30 s
        # The only slot is free: the quick task runs while the retry is not due.
        assert (await app.wait_for_result(await app.submit(quick), timeout=10)).result == "quick"
        assert (await app.get_result(retried)).status is TaskStatus.RETRYING  # type: ignore[union-attr]
        clock.advance(30)
        assert (await app.wait_for_result(retried, timeout=10)).result == "retried"


async def test_io_tasks_run_num_workers_at_a_time(make_app) -> None:
    app = make_app(num_workers=5)
    running = 0
    peak = 0

    @app.task()
    async def io_bound() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.1)
        running -= 1

    await app.start()
    ids = [await app.submit(io_bound) for _ in range(20)]
    for task_id in ids:
        await app.wait_for_result(task_id, timeout=10)
    assert peak == 5


async def test_cpu_tasks_run_in_other_processes_cpu_workers_at_a_time() -> None:
    import cpu_tasks

    app = cpu_tasks.app
    async with app:
        pids = {
            (await app.wait_for_result(await app.submit(cpu_tasks.whoami), timeout=30)).result
            for _ in range(3)
        }
        assert os.getpid() not in pids
        ids = [await app.submit(cpu_tasks.occupy, 0.4) for _ in range(6)]
        spans = [(await app.wait_for_result(t, timeout=60)).result for t in ids]
        squares = [await cpu_tasks.square.submit(n) for n in range(5)]
        assert [(await app.wait_for_result(t, timeout=30)).result for t in squares] == [
            0,
            1,
            4,
            9,
            16,
        ]
    assert all(span is not None for span in spans)
    assert {int(pid) for _, _, pid in spans} - {os.getpid()}
    events = sorted(
        [(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans], key=lambda x: (x[0], x[1])
    )
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    assert peak == 2, f"cpu_workers=2 but {peak} CPU tasks overlapped"


async def test_cpu_task_timeout_is_recorded() -> None:
    import cpu_tasks

    async with cpu_tasks.app:
        result = await cpu_tasks.app.wait_for_result(await cpu_tasks.too_slow.submit(), timeout=30)
    assert result.status is TaskStatus.FAILED
    assert "timeout of 0.3s" in (result.error or "")


async def test_io_task_timeout_cancels_it(make_app) -> None:
    app = make_app()
    reached_end = False
    cancelled = asyncio.Event()

    @app.task(timeout=0.1, max_retries=0)
    async def hangs() -> None:
        nonlocal reached_end
        try:
            await asyncio.sleep(10)
            reached_end = True
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await app.start()
    result = await app.wait_for_result(await app.submit(hangs), timeout=5)
    assert result.status is TaskStatus.FAILED
    assert result.error is not None and "timeout of 0.1s" in result.error
    assert cancelled.is_set() and not reached_end


async def test_graceful_stop_drains_queued_and_running_tasks() -> None:
    app = Flowrra()
    finished: list[int] = []

    @app.task()
    async def work(i: int) -> int:
        await asyncio.sleep(0.05)
        finished.append(i)
        return i

    await app.start()
    ids = [await app.submit(work, i) for i in range(20)]
    await app.stop(wait=True, timeout=10)
    assert sorted(finished) == list(range(20))
    results = [await app.backend.get(t) for t in ids]
    assert all(r is not None and r.status is TaskStatus.SUCCESS for r in results)


async def test_stop_timeout_fails_what_could_not_finish_so_no_waiter_hangs() -> None:
    app = Flowrra()

    @app.task()
    async def forever() -> None:
        await asyncio.sleep(60)

    @app.task(max_retries=1, retry_delay=30)
    async def fails() -> None:
        raise RuntimeError("x")

    await app.start()
    running = await app.submit(forever)
    retrying = await app.submit(fails)
    waiter = asyncio.create_task(app.backend.wait_for(running, None))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await app.stop(wait=True, timeout=0.3)
    assert time.monotonic() - started < 5
    for task_id in (running, retrying):
        result = await app.backend.get(task_id)
        assert result is not None and result.status is TaskStatus.FAILED
        assert "Cancelled" in (result.error or "")
    assert (await asyncio.wait_for(waiter, 2)).status is TaskStatus.FAILED


class DurableMemoryBroker(MemoryBroker):
    """A memory broker that claims durability, to exercise the release-on-stop path."""

    durable = True


async def test_stop_on_durable_broker_releases_unfinished_tasks() -> None:
    broker = DurableMemoryBroker()
    app = Flowrra(broker=broker)
    started = asyncio.Event()

    @app.task()
    async def long_job() -> None:
        started.set()
        await asyncio.sleep(60)

    await app.start()
    task_id = await app.submit(long_job)
    await started.wait()
    await app.stop(wait=True, timeout=0.2)
    requeued = await broker.purge()
    assert [m.id for m in requeued] == [task_id]


async def test_unknown_task_message_is_dead_lettered_and_worker_survives(make_app) -> None:
    from flowrra.task import TaskMessage

    app = make_app()

    @app.task()
    async def fine() -> str:
        return "still working"

    await app.start()
    ghost = TaskMessage("ghost-1", "no_such_task", submitted_at=time.time())
    await app.broker.enqueue(ghost)
    result = None
    for _ in range(100):
        result = await app.get_result("ghost-1")
        if result is not None:
            break
        await asyncio.sleep(0.01)
    assert result is not None and result.status is TaskStatus.FAILED
    assert "not registered" in (result.error or "")
    assert [m.id for m, _ in app.broker.dead_letters] == ["ghost-1"]
    assert (await app.wait_for_result(await app.submit(fine), timeout=5)).result == (
        "still working"
    )


async def test_memory_store_is_bounded_by_count_and_age() -> None:
    app = Flowrra(backend=MemoryBackend(max_entries=50))

    @app.task()
    async def noop(i: int) -> int:
        return i

    async with app:
        ids = [await app.submit(noop, i) for i in range(500)]
        await app.wait_for_result(ids[-1], timeout=10)
    backend = app.backend
    assert isinstance(backend, MemoryBackend)
    assert len(backend) == 50
    assert await backend.get(ids[0]) is None
    assert (await backend.get(ids[-1])) is not None

    aging = MemoryBackend(max_entries=None, ttl=0.2)
    app2 = Flowrra(backend=aging)

    @app2.task()
    async def noop2() -> None: ...

    async with app2:
        old = await app2.submit(noop2)
        await app2.wait_for_result(old, timeout=5)
        await asyncio.sleep(0.3)
        new = await app2.submit(noop2)
        await app2.wait_for_result(new, timeout=5)
        assert await app2.get_result(old) is None
        assert len(aging) == 1


async def test_running_tasks_are_never_evicted() -> None:
    app = Flowrra(backend=MemoryBackend(max_entries=5))
    gate = asyncio.Event()

    @app.task()
    async def held() -> str:
        await gate.wait()
        return "kept"

    @app.task()
    async def noop() -> None: ...

    async with app:
        long_id = await app.submit(held)
        for _ in range(50):
            await app.wait_for_result(await app.submit(noop), timeout=5)
        gate.set()
        assert (await app.wait_for_result(long_id, timeout=5)).result == "kept"


async def test_events_tell_each_status_change(make_app) -> None:
    app = make_app()
    seen: list[TaskEvent] = []
    app.events.add_listener(seen.append)
    calls = {"n": 0}

    @app.task(max_retries=1, retry_delay=0.01)
    async def once_flaky() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("first")

    await app.start()
    async with app.events.subscribe() as stream:
        task_id = await app.submit(once_flaky)
        await app.wait_for_result(task_id, timeout=5)
        streamed = [await asyncio.wait_for(anext(stream), 1) for _ in range(5)]
    statuses = [e.status for e in seen if e.task_id == task_id]
    assert statuses == [
        TaskStatus.PENDING,
        TaskStatus.RUNNING,
        TaskStatus.RETRYING,
        TaskStatus.RUNNING,
        TaskStatus.SUCCESS,
    ]
    assert [e.status for e in streamed] == statuses
    retrying = next(e for e in seen if e.status is TaskStatus.RETRYING)
    assert retrying.retry_in == pytest.approx(0.01) and retrying.error == "ValueError: first"


async def test_bounded_queue_applies_back_pressure(make_app) -> None:
    app = make_app(num_workers=1, max_queue_size=3)

    @app.task()
    async def noop() -> None: ...

    for _ in range(3):
        await app.submit(noop)
    blocked = asyncio.create_task(app.submit(noop))
    await asyncio.sleep(0.05)
    assert not blocked.done() and app.pending_count() == 3
    await app.start()
    await asyncio.wait_for(blocked, 5)


async def test_delayed_tasks_do_not_fill_the_bounded_queue(make_app) -> None:
    app = make_app(num_workers=1, max_queue_size=2)

    @app.task()
    async def noop() -> None: ...

    await app.start()
    for _ in range(5):
        await asyncio.wait_for(app.submit(noop, delay=60), 1)
    now = await asyncio.wait_for(app.submit(noop), 1)
    assert (await app.wait_for_result(now, timeout=5)).status is TaskStatus.SUCCESS


async def test_shutdown_hooks_run_once_even_when_stop_is_repeated(make_app) -> None:
    app = make_app()
    calls: list[str] = []

    @app.on_shutdown
    async def bye() -> None:
        calls.append("bye")

    @app.task()
    async def forever() -> None:
        await asyncio.sleep(60)

    await app.start()
    await app.submit(forever)
    await asyncio.sleep(0.05)
    first = asyncio.create_task(app.stop(wait=True, timeout=5))
    await asyncio.sleep(0.05)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await app.stop(wait=False)
    assert calls == ["bye"]
    assert not app.is_running


class SwallowingDirectoryBroker(MemoryBroker):
    """A broker with worker heartbeats whose client turns a cancellation into another
    error, as redis-py's pipelines can."""

    async def announce(self, info: dict, ttl: float) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise ConnectionError("connection closed while cancelling") from None

    async def retire(self, worker_id: str) -> None:
        return None

    async def workers(self) -> list[dict]:
        return []

    async def queue_depths(self) -> dict[str, int]:
        return {"queued": self.pending_count()}


class SilentlySwallowingDirectoryBroker(SwallowingDirectoryBroker):
    """Its client swallows a cancellation and returns as if the call had succeeded."""

    async def announce(self, info: dict, ttl: float) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)


@pytest.mark.parametrize("broker", [SwallowingDirectoryBroker, SilentlySwallowingDirectoryBroker])
async def test_stop_finishes_when_a_client_swallows_the_cancellation(broker) -> None:
    app = Flowrra(broker=broker())
    await app.start()
    await asyncio.sleep(0.05)  # the first heartbeat is in flight
    async with asyncio.timeout(10):  # it used to wait for ever on the heartbeat loop
        await app.stop()
    assert not app.is_running


class RefusingBackend(MemoryBackend):
    """Its store fails for PENDING records, as a backend that is down would."""

    async def store(self, task_id: str, result) -> None:
        if result.status is TaskStatus.PENDING:
            raise BackendError("the backend is down")
        await super().store(task_id, result)


async def test_a_submit_whose_record_fails_queues_nothing(recwarn) -> None:
    """submit calls store and enqueue before awaiting either; when the store (an async
    def) fails, the enqueue that was never started is closed, not run, and not leaked."""
    broker = MemoryBroker()
    app = Flowrra(broker=broker, backend=RefusingBackend())

    @app.task()
    async def job() -> None:
        return None

    with pytest.raises(BackendError):
        await app.submit(job)
    assert broker.pending_count() == 0
    gc.collect()
    assert not [w for w in recwarn if "never awaited" in str(w.message)]
    await app.stop()


class DeferredBackend(MemoryBackend):
    """A backend whose SUCCESS writes are under way when ``store`` returns (a Future), as
    a networked backend's are; they land when the test says so."""

    sends_when_called = True

    def __init__(self) -> None:
        super().__init__()
        self.in_flight: list[tuple[asyncio.Future[None], str, object]] = []

    def store(self, task_id: str, result):  # type: ignore[override]
        if result.status is not TaskStatus.SUCCESS:
            return super().store(task_id, result)
        landed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.in_flight.append((landed, task_id, result))
        return landed

    async def land(self) -> None:
        for landed, task_id, result in self.in_flight:
            await MemoryBackend.store(self, task_id, result)
            landed.set_result(None)
        self.in_flight.clear()


async def test_a_write_under_way_is_settled_after_it_lands_and_frees_the_slot() -> None:
    """With one slot: it hands a store already under way to the settler and takes the
    next task; a task counts as settled (and is acked) only once its record has landed."""
    backend = DeferredBackend()
    app = Flowrra(Config(executor=ExecutorConfig(num_workers=1)), backend=backend)

    @app.task()
    async def noop() -> None:
        return None

    async with app:
        first, second = await app.submit(noop), await app.submit(noop)
        deadline = time.monotonic() + 5
        while len(backend.in_flight) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        # both ran although the first one's record had not landed: the slot was free
        assert len(backend.in_flight) == 2 and app.worker.processed == 0
        await backend.land()
        results = [await app.wait_for_result(i, timeout=5) for i in (first, second)]
        assert [r.status for r in results] == [TaskStatus.SUCCESS] * 2
        while app.worker.processed < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert app.worker.processed == 2
