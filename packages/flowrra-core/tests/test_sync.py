"""The sync API on the in-memory default: ``app.submit_sync``, ``task.delay``,
``app.wait_for_result_sync`` and ``app.get_result_sync``.

In memory, a task only runs where the app runs: sync calls are handed to the loop the app
runs in; when it runs nowhere, a submitted task waits in the queue and a wait fails at once
(NotRunningError) instead of hanging. Each test that could hang has a timeout.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from flowrra import (
    Flowrra,
    NotRunningError,
    ResultTimeoutError,
    SerializationError,
    SyncCallInLoopError,
    TaskNotRegisteredError,
    TaskStatus,
)
from flowrra.portal import Portal

pytestmark = pytest.mark.timeout(60)


class RunningElsewhere:
    """An app running in an event loop of another thread (as under a web server)."""

    def __init__(self, app: Flowrra) -> None:
        self.app = app
        self._started = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),))
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        async with self.app:
            self._started.set()
            await self._stop.wait()

    def __enter__(self) -> RunningElsewhere:
        self._thread.start()
        assert self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.loop is not None and self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def app() -> Iterator[Flowrra]:
    app = Flowrra()
    yield app
    asyncio.run(app.close())


def test_not_running_sync_calls_fail_at_once(app: Flowrra) -> None:
    """In memory, only this process's app could run a task: while it runs nowhere, sync
    calls that would queue one, or wait for one, raise instead of blocking for ever."""

    @app.task()
    async def double(x: int) -> int:
        return 2 * x

    started = time.monotonic()
    with pytest.raises(NotRunningError, match=r"task\.delay\(\) .* not running"):
        double.delay(21)
    with pytest.raises(NotRunningError, match=r"app\.submit_sync\(\)"):
        app.submit_sync(double, 1)
    assert app.pending_count() == 0

    async def queue_before_start() -> str:
        return await double.submit(3)  # async code may queue before start(), as ever

    task_id = asyncio.run(queue_before_start())
    pending = app.get_result_sync(task_id)
    assert pending is not None and pending.status is TaskStatus.PENDING
    with pytest.raises(NotRunningError):
        app.wait_for_result_sync(task_id)
    assert time.monotonic() - started < 2  # nothing waited

    with RunningElsewhere(app):  # started, the app runs what was queued
        assert app.wait_for_result_sync(task_id, timeout=5).result == 6


def test_running_elsewhere_sync_calls_go_to_its_loop(app: Flowrra) -> None:
    @app.task()
    async def double(x: int) -> int:
        await asyncio.sleep(0.001)
        return 2 * x

    def one(n: int) -> int:
        task_id = double.delay(n) if n % 2 else app.submit_sync(double, n)
        return app.wait_for_result_sync(task_id, timeout=10).result  # type: ignore[no-any-return]

    with RunningElsewhere(app), ThreadPoolExecutor(16) as pool:
        assert list(pool.map(one, range(400))) == [2 * n for n in range(400)]
        # It ran in the app's loop: no thread of the sync API's own was needed.
        assert not [t for t in threading.enumerate() if t.name == "flowrra-sync"]


def test_errors_reach_the_caller(app: Flowrra) -> None:
    @app.task(max_retries=0)
    async def fails(x: object = None) -> None:
        raise ValueError("nope")

    app.task()(asleep)

    async def unregistered() -> None: ...

    with RunningElsewhere(app):
        with pytest.raises(TaskNotRegisteredError):
            app.submit_sync(unregistered)
        with pytest.raises(SerializationError):
            app.submit_sync(fails, object())
        with pytest.raises(TypeError, match="priority"):
            fails.with_options(priority="high").delay()  # type: ignore[arg-type]
        result = app.wait_for_result_sync(fails.delay(), timeout=10)
        assert result.status is TaskStatus.FAILED and "nope" in (result.error or "")
        slow = app.submit_sync(asleep, 0.5)
        with pytest.raises(ResultTimeoutError):  # its own TimeoutError, raised once
            app.wait_for_result_sync(slow, timeout=0.05)


async def asleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


@pytest.mark.parametrize("ending", ["asyncio.run returns", "loop.close() by hand"])
def test_a_call_whose_loop_ends_fails_instead_of_hanging(ending: str) -> None:
    """The loop serving a sync call ends before the call does: asyncio.run cancels it,
    or a loop stopped and closed by hand drops it; either way the caller gets an error
    (within a second), not a wait forever."""
    portal = Portal()
    running = threading.Event()
    loop = asyncio.new_event_loop()
    if ending == "asyncio.run returns":

        async def serve() -> None:
            portal.home = asyncio.get_running_loop()
            running.set()
            await asyncio.sleep(0.2)

        thread = threading.Thread(target=asyncio.run, args=(serve(),))
    else:

        def serve_by_hand() -> None:
            portal.home = loop
            loop.call_soon(running.set)
            loop.call_later(0.2, loop.stop)
            loop.run_forever()
            loop.close()

        thread = threading.Thread(target=serve_by_hand)
    thread.start()
    running.wait(5)
    started = time.monotonic()
    with pytest.raises(NotRunningError, match="call again"):
        portal.call(lambda: asyncio.sleep(30))
    assert time.monotonic() - started < 5
    thread.join(5)
    loop.close()
    for task in asyncio.all_tasks(loop):  # closed by hand with it pending, as this test means
        task._log_destroy_pending = False  # type: ignore[attr-defined]


async def test_from_a_loop_thread_sync_calls_raise(app: Flowrra) -> None:
    @app.task()
    async def noop() -> None: ...

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no coroutine made and left unawaited
        with pytest.raises(SyncCallInLoopError, match=r"use `await app\.submit\(\.\.\.\)`"):
            app.submit_sync(noop)
        with pytest.raises(SyncCallInLoopError, match=r"await task\.submit"):
            noop.delay()
        with pytest.raises(SyncCallInLoopError, match=r"await task\.submit"):
            noop.with_options(priority=1).delay()
        with pytest.raises(SyncCallInLoopError, match=r"await app\.wait_for_result"):
            app.wait_for_result_sync("x")
        with pytest.raises(SyncCallInLoopError, match=r"await app\.get_result"):
            app.get_result_sync("x")
    assert isinstance(SyncCallInLoopError("a", "b"), RuntimeError)


def test_close_stops_the_sync_thread(app: Flowrra) -> None:
    assert app.get_result_sync("x") is None  # not running: the sync API's own loop serves
    assert [t for t in threading.enumerate() if t.name == "flowrra-sync"]
    asyncio.run(app.close())
    assert not [t for t in threading.enumerate() if t.name == "flowrra-sync"]
    assert app.get_result_sync("x") is None  # usable again: a new thread


def test_fork_after_use_and_exit() -> None:
    """The child of a process that used the sync API gets a thread of its own; the
    interpreter exits promptly and silently with that thread still up."""
    code = """
        import os
        import warnings

        from flowrra import Flowrra

        app = Flowrra()

        @app.task()
        async def noop() -> None: ...

        assert app.get_result_sync("x") is None  # the sync API's thread runs
        with warnings.catch_warnings():  # Python 3.12+ warns of any fork with threads up
            warnings.filterwarnings("ignore", "This process .* is multi-threaded")
            pid = os.fork()
        if pid == 0:
            os._exit(0 if app.get_result_sync("y") is None else 3)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status), app.get_result_sync("z"))
    """
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "child 0 None\n", "")
