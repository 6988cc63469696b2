"""The read model of an app (flowrra.monitor), on the embedded default; the Redis tests
cover it across processes."""

from __future__ import annotations

import pytest

from flowrra import Flowrra, TaskStatus
from flowrra.backends.memory import MemoryBackend
from flowrra.monitor import Monitor


async def test_monitor_reports_tasks_totals_throughput_and_executions() -> None:
    app = Flowrra()

    @app.task(max_retries=0)
    async def ok(n: int) -> int:
        """Returns n."""
        return n

    @app.task(max_retries=0, timeout=5)
    async def boom(text: str) -> None:
        raise ValueError(text)

    monitor = Monitor(app)
    async with app:
        good = [await app.submit(ok, n) for n in range(3)]
        bad = await app.submit(boom, "<script>alert(1)</script>")
        for task_id in [*good, bad]:
            await app.wait_for_result(task_id, timeout=10)
        stats = await monitor.stats(minutes=5)

    assert stats["totals"] == {
        "pending": 0,
        "running": 0,
        "success": 3,
        "failed": 1,
        "retrying": 0,
        "cancelled": 0,
    }
    assert stats["exact"] is True and stats["sampled"] is None and stats["retries"] == 0
    assert stats["tasks_registered"] == 2
    assert len(stats["throughput"]) == 5 and stats["throughput"][-1]["completed"] == 4
    assert stats["queues"] == {"queued": 0} and stats["workers"] == 0
    [failure] = stats["recent_failures"]
    assert failure["task_id"] == bad and "ValueError: <script>" in failure["error"]

    assert [t["name"] for t in monitor.tasks()] == ["boom", "ok"]
    ok_info = next(t for t in monitor.tasks() if t["name"] == "ok")
    assert ok_info["doc"] == "Returns n." and ok_info["max_retries"] == 0

    newest_first = await monitor.executions(task_name="ok")
    assert [e["task_id"] for e in newest_first] == good[::-1]
    page = await monitor.executions(task_name="ok", limit=1, offset=1)
    assert [e["task_id"] for e in page] == [good[1]]
    failed = await monitor.executions(status="failed")
    assert [e["task_id"] for e in failed] == [bad]
    detail = await monitor.execution(bad)
    assert detail is not None and detail["status"] == TaskStatus.FAILED.value
    assert "Traceback" in detail["traceback"] and detail["args"] == ["<script>alert(1)</script>"]
    assert await monitor.execution("no-such-id") is None


async def test_monitor_rejects_bad_paging_and_statuses() -> None:
    monitor = Monitor(Flowrra())
    with pytest.raises(ValueError, match="limit"):
        await monitor.executions(limit=0)
    with pytest.raises(ValueError, match="finished"):
        await monitor.executions(status="finished")
    with pytest.raises(ValueError, match="sample"):
        Monitor(Flowrra(), sample=0)


async def test_monitor_events_stream_this_process_on_the_memory_backend() -> None:
    app = Flowrra()

    @app.task()
    async def ok() -> int:
        return 1

    async with app, Monitor(app).events() as events:
        task_id = await app.submit(ok)
        seen = []
        async for event in events:
            assert event.task_id == task_id
            seen.append(event.status)
            if event.status is TaskStatus.SUCCESS:
                break
    assert seen == [TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.SUCCESS]


class _ListOnly(MemoryBackend):
    """A backend that lists by offset only and keeps no counts (as 0.1.8's did)."""

    list_page = None  # type: ignore[assignment]
    counts = None  # type: ignore[assignment]


async def test_a_backend_without_pages_or_counts_is_paged_by_offset_and_sampled() -> None:
    from flowrra.protocols import ResultCounts, ResultPages

    backend = _ListOnly()
    assert not isinstance(backend, ResultPages) and not isinstance(backend, ResultCounts)
    app = Flowrra(backend=backend)

    @app.task()
    async def ok(n: int) -> int:
        return n

    monitor = Monitor(app)
    async with app:
        ids = [await app.submit(ok, n) for n in range(5)]
        for task_id in ids:
            await app.wait_for_result(task_id, timeout=10)
        seen: list[str] = []
        cursor = None
        while True:
            page, cursor = await monitor.executions_page(limit=2, cursor=cursor)
            seen += [item["task_id"] for item in page]
            if cursor is None:
                break
        stats = await monitor.stats(minutes=2)
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    assert stats["exact"] is False and stats["sampled"] == 5
    assert stats["totals"]["success"] == 5
    with pytest.raises(ValueError, match="cursor"):
        await monitor.executions_page(cursor="awox")  # a keyset cursor: not this listing's
