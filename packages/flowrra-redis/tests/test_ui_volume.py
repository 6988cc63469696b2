"""The UI's data path on Redis past what a sample would show (issue 15): the dashboard's
counts are exact for more records than :class:`flowrra.monitor.Monitor` samples, and a
page's records are decoded in a thread or in chunks, never all at once on the caller's
loop."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Sequence

import pytest
import redis
from flowrra_redis import RedisBackend
from flowrra_redis import backend as backend_module

from flowrra import Flowrra, TaskStatus
from flowrra.monitor import Monitor
from flowrra.task import TaskResult, new_task_id


def _record(status: TaskStatus, n: int, at: float, *, size: int = 0) -> TaskResult:
    complete = status in (TaskStatus.SUCCESS, TaskStatus.FAILED)
    return TaskResult(
        new_task_id(),
        status,
        task_name="charge" if n % 2 else "email",
        result={"n": n, "pad": "x" * size} if status is TaskStatus.SUCCESS else None,
        error="RuntimeError: card declined" if status is TaskStatus.FAILED else None,
        args=(n,),
        submitted_at=at,
        started_at=at + 0.001 if complete else None,
        finished_at=at + 0.01 if complete else None,
    )


async def test_counts_are_exact_past_the_sample_and_outlive_the_records(
    make_app: Callable[..., Flowrra], sync_redis: redis.Redis
) -> None:
    """2,500 completions and 1,200 pending records, more than the 1,000 a sampled count
    reads: the totals and the per-minute chart count every one; completions stay counted
    once their records expire (deleted here, as the TTL would)."""
    app = make_app()
    monitor = Monitor(app)
    assert monitor.sample == 1000
    async with app.producer():
        backend = app.backend
        assert isinstance(backend, RedisBackend)
        now = time.time()
        done = [
            _record(TaskStatus.FAILED if n % 10 == 3 else TaskStatus.SUCCESS, n, now - 30)
            for n in range(2500)
        ]
        pending = [_record(TaskStatus.PENDING, n, now) for n in range(1200)]
        await backend.store_many(done)
        await backend.store_many(pending)

        stats = await monitor.stats(minutes=5)
        assert stats["exact"] is True and stats["sampled"] is None
        assert stats["totals"]["success"] == 2250 and stats["totals"]["failed"] == 250
        assert stats["totals"]["pending"] == 1200
        assert sum(m["completed"] for m in stats["throughput"]) == 2500
        assert sum(m["failed"] for m in stats["throughput"]) == 250

        expired = [backend.keys.result(r.task_id) for r in done[:500]]
        assert sync_redis.delete(*expired) == 500
        again = await monitor.stats(minutes=5)
        assert again["totals"] == stats["totals"]
        # (summed: a minute may have begun between the two calls, moving the window)
        assert sum(m["completed"] for m in again["throughput"]) == 2500


class Decoding:
    """Each call of the backend's page decoder (:attr:`calls`): whether it ran on the
    loop's thread, how many records it decoded, their bytes, and :attr:`turns` then (a
    count the test's other task keeps, one per turn of the loop it gets)."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, int, int, int]] = []
        self.turns = 0


@pytest.fixture
def decoding(monkeypatch: pytest.MonkeyPatch) -> Decoding:
    seen = Decoding()
    real = backend_module._decode_all
    loop_thread = threading.get_ident()

    def recording(bodies: Sequence[bytes]) -> list[TaskResult]:
        size = sum(len(body) for body in bodies)
        on_loop = threading.get_ident() == loop_thread
        seen.calls.append((on_loop, len(bodies), size, seen.turns))
        return real(bodies)

    monkeypatch.setattr(backend_module, "_decode_all", recording)
    return seen


@pytest.mark.parametrize(
    ("records", "size"), [(100, 0), (500, 2000)], ids=["a small page", "a large page"]
)
async def test_a_page_is_never_decoded_all_at_once_on_the_loop(
    make_app: Callable[..., Flowrra],
    decoding: Decoding,
    records: int,
    size: int,
) -> None:
    """A small page (100 records, under ``DECODE_IN_THREAD`` bytes) is decoded on the
    loop in chunks of ``DECODE_CHUNK``, with a turn of the loop between them (another
    task runs there); a large one (500 records of 2 kB) in a thread."""
    app = make_app()
    async with app.producer():
        backend = app.backend
        assert isinstance(backend, RedisBackend)
        now = time.time()
        await backend.store_many(
            [_record(TaskStatus.SUCCESS, n, now, size=size) for n in range(records)]
        )

        reading = True

        async def other_work() -> None:
            while reading:
                await asyncio.sleep(0)
                decoding.turns += 1

        other = asyncio.create_task(other_work())
        page, _ = await backend.list_page(limit=records)
        reading = False
        await other
        assert len(page) == records and len({r.task_id for r in page}) == records

        calls = decoding.calls
        assert sum(count for _, count, _, _ in calls) == records
        page_bytes = sum(n for _, _, n, _ in calls)
        if size:
            assert page_bytes > backend_module.DECODE_IN_THREAD
            assert [(on, count) for on, count, _, _ in calls] == [(False, records)], calls
        else:
            assert page_bytes <= backend_module.DECODE_IN_THREAD
            chunks = records // backend_module.DECODE_CHUNK
            assert [(on, count) for on, count, _, _ in calls] == [
                (True, backend_module.DECODE_CHUNK)
            ] * chunks
            # The other task ran between each chunk and the next: the loop was let go.
            turns = [at for _, _, _, at in calls]
            assert all(b > a for a, b in itertools.pairwise(turns)), turns
