"""One app object, many event loops, on a real Redis server with real worker processes:
``asyncio.run`` twice, ``async_to_sync`` twice, a loop closed by hand. Connections belong
to the loop that uses them (see ``flowrra_redis.loops``).

Each scenario that could hang runs under a timeout: in a subprocess of its own
(``subprocess.run(timeout=...)``), or under pytest-timeout, so a hang fails.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import redis
from apps import redis_app
from conftest import Workers
from flowrra_redis import RedisBackend, RedisBroker

from flowrra import Flowrra, TaskHandle, TaskStatus


def run_script(workers: Workers, code: str, timeout: float = 60) -> str:
    """Run ``code`` in a fresh interpreter that imports the workers' app; a hang fails
    (TimeoutExpired), and so does any error output."""
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-c", textwrap.dedent(code)],
        env=workers.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == "", proc.stderr  # no warning, no "Task was destroyed", no traceback
    return proc.stdout


def producer_app(redis_url: str, prefix: str) -> tuple[Flowrra, TaskHandle[..., int]]:
    """An app on this test's keys that submits the workers' ``record`` task, and that
    task's handle on it (``redis_app.record`` submits through the workers' app)."""
    app = Flowrra(
        broker=RedisBroker(redis_url, prefix=prefix),
        backend=RedisBackend(redis_url, prefix=prefix),
    )
    return app, app.task(name="record")(redis_app.record.fn)


def test_asyncio_run_twice_submits_and_waits_each_time(workers: Workers) -> None:
    """The defect this file exists for: the second asyncio.run never returned (the
    client's connection belonged to the first, closed, loop)."""
    workers.start("-c", "4")
    out = run_script(
        workers,
        """
        import asyncio
        from redis_app import app, record

        async def once(n):
            task_id = await app.submit(record, n)
            return (await app.wait_for_result(task_id, timeout=20)).result

        print(asyncio.run(once(1)), asyncio.run(once(2)), asyncio.run(once(3)))
        """,
    )
    assert out.split() == ["1", "2", "3"]


def test_async_to_sync_twice(workers: Workers) -> None:
    """Django's async_to_sync runs each call in a new event loop (in a thread)."""
    workers.start("-c", "4")
    out = run_script(
        workers,
        """
        from asgiref.sync import async_to_sync
        from redis_app import app, record

        for n in (1, 2):
            task_id = async_to_sync(record.submit)(n)
            print(async_to_sync(app.wait_for_result)(task_id, timeout=20).result)
        """,
    )
    assert out.split() == ["1", "2"]


def test_each_loop_closes_its_connections_at_shutdown(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    """asyncio.run closes what the app opened in it (nothing is left to the garbage
    collector: no ResourceWarning, no connection left on the server), and the next loop
    opens its own."""
    name = f"conn-{prefix}"
    url = f"{redis_url}?client_name={name}"
    app = Flowrra(broker=RedisBroker(url, prefix=prefix), backend=RedisBackend(url, prefix=prefix))
    record = app.task(name="record")(redis_app.record.fn)

    async def once() -> None:
        task_id = await app.submit(record, 1)
        with pytest.raises(TimeoutError):  # subscribes the result listener
            await app.wait_for_result(task_id, timeout=0.05)
        assert [c for c in sync_redis.client_list() if c.get("name") == name]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            asyncio.run(once())
            assert app.broker._states == {} and app.backend._states == {}  # type: ignore[attr-defined]
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    # (an earlier test's objects may be collected here too: a worker's output pipe)
    assert not [m for m in leaks if "transport" in m or "Connection" in m or "socket" in m], leaks
    deadline = time.monotonic() + 5
    while [c for c in sync_redis.client_list() if c.get("name") == name]:
        assert time.monotonic() < deadline, "connections left open on the server"
        time.sleep(0.02)


def test_a_pipeline_used_from_another_loop_raises_instead_of_hanging(
    redis_url: str, prefix: str
) -> None:
    broker = RedisBroker(redis_url, prefix=prefix)
    kept: list[object] = []

    async def first() -> None:
        kept.append(broker.pipe)
        await broker.pipe.execute("PING")
        await broker.close()

    async def second() -> None:
        with pytest.raises(RuntimeError, match="belongs to event loop"):
            await kept[0].execute("PING")  # type: ignore[attr-defined]

    asyncio.run(first())
    asyncio.run(second())


def test_a_loop_closed_without_shutdown_is_dropped(
    redis_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A loop closed by hand (no shutdown_asyncgens, the result listener left pending):
    the next loop drops its state without touching it, quietly, and works."""
    app, record = producer_app(redis_url, prefix)
    loop = asyncio.new_event_loop()
    task_id = loop.run_until_complete(app.submit(record, 1))
    with pytest.raises(TimeoutError):  # subscribes the result listener (a pending task)
        loop.run_until_complete(app.wait_for_result(task_id, timeout=0.05))
    loop.close()

    async def again() -> TaskStatus:
        stored = await app.get_result(task_id)
        assert stored is not None
        return stored.status

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert asyncio.run(again()) is TaskStatus.PENDING
        assert loop not in app.backend._states  # type: ignore[attr-defined]
        gc.collect()
    # Its sockets are closed as they are collected (asyncio warns of that, ResourceWarning,
    # ignored by default); nothing else is reported.
    assert not [w for w in caught if not issubclass(w.category, ResourceWarning)], caught
    assert not [r for r in caplog.records if "destroyed" in r.getMessage()]
