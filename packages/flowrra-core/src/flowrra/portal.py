"""The sync API's event loop: one per app, in a daemon thread, started on first use.

``app.submit_sync()``, ``app.wait_for_result_sync()``, ``app.get_result_sync()`` and
``task.delay()`` run the async API's coroutine on an event loop and block the calling
thread until it is done (``asyncio.run_coroutine_threadsafe``), as anyio's
``start_blocking_portal`` does. The loop is the one the app runs in while it runs in this
process (``async with app:``, ``app.start()``), so that the in-memory broker and result
store are only ever touched from their own loop; otherwise a loop of the app's own, in a
daemon thread started by the first sync call and shared by every thread after it.

- A thread that runs an event loop gets :class:`~flowrra.exceptions.SyncCallInLoopError`:
  blocking it would stall its loop, and deadlock when the call needs that loop.
- An in-memory app that runs nowhere could never run a task: ``submit_sync`` and
  ``delay`` raise :class:`~flowrra.exceptions.NotRunningError` (the app checks), as
  ``wait_for_result_sync`` does for a task still pending.
- A loop that stops before the call is done (the app closed, its loop ended) fails the
  call with :class:`~flowrra.exceptions.NotRunningError` within a second, never a hang.
- After ``os.fork()`` the child starts a thread and loop of its own on its first sync
  call; the parent's (copied, with no thread to run them) are set aside untouched.
- ``await app.close()`` stops the thread; so does the interpreter's exit.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import threading
import weakref
from asyncio.events import _get_running_loop
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from flowrra.exceptions import NotRunningError

__all__ = ["Portal"]

T = TypeVar("T")

#: How often a waiting sync call checks that the loop running it is still alive.
LIVENESS_CHECK = 1.0
#: How long closing waits for the thread (its loop closes its connections first).
CLOSE_TIMEOUT = 5.0


class Portal:
    """Runs coroutines for sync callers: on :attr:`home` (the loop the app runs in) while
    it runs, else on a loop of its own in a daemon thread, started by the first call."""

    def __init__(self, name: str = "flowrra-sync") -> None:
        self.name = name
        #: The loop the app runs in, while it runs (set by ``app.start()``/``stop()``).
        self.home: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Future[None] | None = None
        self._finished: concurrent.futures.Future[None] | None = None
        _PORTALS.add(self)

    def call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run the coroutine ``make()`` returns on the serving loop; block until it is done
        and return its result (or raise its exception). Not from a loop's thread (the
        caller checks). Interrupted (KeyboardInterrupt), the coroutine is cancelled."""
        future, loop = self._schedule(make)
        try:
            while True:
                try:
                    return future.result(LIVENESS_CHECK)
                except concurrent.futures.CancelledError:
                    # Not by this thread (that is below): by the shutdown of its loop.
                    raise NotRunningError(
                        "the event loop running this call shut down before it finished "
                        "(the app was closed, or the loop it runs in ended); call again"
                    ) from None
                except TimeoutError:
                    if future.done():
                        raise  # the call's own (ResultTimeoutError is a TimeoutError)
                    if loop.is_closed() or not loop.is_running():
                        raise NotRunningError(
                            "the event loop running this call stopped before it finished "
                            "(the app was closed, or the loop it runs in ended); call again"
                        ) from None
        except BaseException:
            future.cancel()
            raise

    def _schedule(
        self, make: Callable[[], Coroutine[Any, Any, T]]
    ) -> tuple[concurrent.futures.Future[T], asyncio.AbstractEventLoop]:
        """Hand ``make()`` to the home loop if the app runs, else to the portal's own."""
        home = self.home
        if home is not None and home.is_running():
            future = _hand_over(make, home)
            if future is not None:
                return future, home
        for _ in range(2):  # a second time if close() stopped the first loop meanwhile
            loop = self._own_loop()
            future = _hand_over(make, loop)
            if future is not None:
                return future, loop
        raise NotRunningError("the app's sync API is being closed; call again")  # pragma: no cover

    def _own_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            if self._loop is None:
                self._start()
            assert self._loop is not None
            return self._loop

    def _start(self) -> None:
        """Start the thread and wait until its loop runs (called with the lock held)."""
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        finished: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread = threading.Thread(
            target=self._serve, args=(started, finished), name=self.name, daemon=True
        )
        thread.start()
        started.result()
        self._thread = thread
        self._finished = finished

    def _serve(
        self,
        started: concurrent.futures.Future[None],
        finished: concurrent.futures.Future[None],
    ) -> None:
        """The thread: runs the loop until :meth:`close`, then shuts it down as
        ``asyncio.run`` does (cancel its tasks, close async generators, which closes the
        connections opened in it, then close it)."""
        try:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._stop = loop.create_future()
            self._loop = loop
        except BaseException as exc:  # pragma: no cover  (no loop could be made)
            started.set_exception(exc)
            raise
        started.set_result(None)
        try:
            loop.run_until_complete(self._stop)
        finally:
            try:
                _cancel_all_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()
                finished.set_result(None)

    def _signal_stop(
        self,
    ) -> tuple[threading.Thread, concurrent.futures.Future[None]] | None:
        """Ask the thread to stop; returns it and what completes when its loop is closed,
        or None if there was no thread (or this is it)."""
        with self._lock:
            loop, stop, finished, thread = self._loop, self._stop, self._finished, self._thread
            if loop is None or stop is None or finished is None or thread is None:
                return None
            if threading.current_thread() is thread:
                return None  # pragma: no cover  (a sync call from it is refused earlier)
            self._loop = self._stop = self._finished = None
            self._thread = None
        with contextlib.suppress(RuntimeError):  # its loop already closed
            loop.call_soon_threadsafe(_set_done, stop)
        return thread, finished

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Stop the thread and wait for it (up to ``timeout`` seconds)."""
        stopping = self._signal_stop()
        if stopping is not None:
            stopping[0].join(timeout)

    async def aclose(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """:meth:`close` for async code: waits without blocking the running loop (then
        for the thread's last instructions after its loop closed)."""
        stopping = self._signal_stop()
        if stopping is not None:
            thread, finished = stopping
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.wrap_future(finished), timeout)
                thread.join(1.0)

    def _after_fork_in_child(self) -> None:
        """The parent's thread does not exist here: forget its loop (kept, untouched)."""
        if self._loop is not None:
            _INHERITED.append(self._loop)
        self._lock = threading.Lock()
        self._loop = self._stop = self._finished = None
        self._thread = None
        self.home = None


def in_loop_thread() -> bool:
    """True when the calling thread runs an event loop."""
    return _get_running_loop() is not None


def _hand_over(
    make: Callable[[], Coroutine[Any, Any, T]], loop: asyncio.AbstractEventLoop
) -> concurrent.futures.Future[T] | None:
    """Schedule ``make()`` on ``loop``; None if that loop has closed."""
    coro = make()
    try:
        return asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # closed since it was picked
        coro.close()
        return None


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """What ``asyncio.run`` does before closing its loop."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


#: Every portal alive, for the exit and after-fork hooks.
_PORTALS: weakref.WeakSet[Portal] = weakref.WeakSet()
#: Loops a forked child inherited from its parent: never run, closed or collected here.
_INHERITED: list[asyncio.AbstractEventLoop] = []


def _close_all() -> None:
    for portal in list(_PORTALS):
        portal.close()


def _after_fork_in_child() -> None:
    for portal in list(_PORTALS):
        portal._after_fork_in_child()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_after_fork_in_child)
