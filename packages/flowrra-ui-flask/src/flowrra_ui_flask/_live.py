"""Live task events for WSGI threads: one event subscription per app and process, fanned
out to every open Server-Sent Events stream.

The subscription (``Monitor.events()``: Redis pub/sub, or the app's in-process hub) runs
as a task on the app's sync loop (:mod:`flowrra.portal`: the loop the app runs in, or its
own in a daemon thread). Each stream is a thread of the WSGI server blocked on a
``queue.Queue`` the pump feeds; the first stream starts the subscription, the last one to
leave stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import weakref
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from flowrra.events import TaskEvent
from flowrra.monitor import Monitor

if TYPE_CHECKING:
    from flowrra.app import Flowrra

__all__ = ["Fanout", "fanout_of"]

#: Events a stream may be behind before it loses the oldest ones.
MAX_BUFFER = 10_000


class Fanout:
    """The process's subscription to one app's task events, shared by its streams."""

    def __init__(self, app: Flowrra) -> None:
        self.app = app
        self.monitor = Monitor(app)
        self._lock = threading.Lock()  # starting and stopping the subscription
        self._clients_lock = threading.Lock()  # the set (the pump reads it on its loop)
        self._clients: set[queue.Queue[TaskEvent]] = set()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _call(self, make: Any) -> Any:
        # The app's portal: the same loop as its sync API (task.delay, submit_sync).
        return self.app._call_sync("the Flowrra UI's live stream", "", make)

    def join(self) -> queue.Queue[TaskEvent]:
        """A queue that gets every task event published from now on (the subscription
        holds when this returns). Raises what subscribing raises (BackendError)."""
        client: queue.Queue[TaskEvent] = queue.Queue(MAX_BUFFER)
        with self._lock:
            with self._clients_lock:
                self._clients.add(client)
            try:
                if self._task is None or self._task.done():
                    self._task, self._loop = self._call(self._start)
            except BaseException:
                with self._clients_lock:
                    self._clients.discard(client)
                raise
        return client

    def leave(self, client: queue.Queue[TaskEvent]) -> None:
        """Stop feeding ``client``; the last one to leave ends the subscription."""
        with self._lock:
            with self._clients_lock:
                self._clients.discard(client)
                others = bool(self._clients)
            if others or self._task is None or self._loop is None:
                return
            task, loop, self._task, self._loop = self._task, self._loop, None, None
        with contextlib.suppress(RuntimeError):  # the loop is closed already
            loop.call_soon_threadsafe(task.cancel)

    def _start(self) -> Coroutine[Any, Any, tuple[asyncio.Task[None], asyncio.AbstractEventLoop]]:
        async def start() -> tuple[asyncio.Task[None], asyncio.AbstractEventLoop]:
            loop = asyncio.get_running_loop()
            ready: asyncio.Future[None] = loop.create_future()
            task = loop.create_task(self._pump(ready))
            try:
                await ready  # the subscription holds, or subscribing failed
            except BaseException:
                task.cancel()
                raise
            return task, loop

        return start()

    async def _pump(self, ready: asyncio.Future[None]) -> None:
        try:
            async with self.monitor.events(MAX_BUFFER) as events:
                ready.set_result(None)
                async for event in events:
                    with self._clients_lock:
                        clients = list(self._clients)
                    for client in clients:
                        with contextlib.suppress(queue.Full):  # a stream far behind
                            client.put_nowait(event)
        except BaseException as exc:
            if not ready.done():
                if isinstance(exc, asyncio.CancelledError):
                    ready.cancel()
                else:
                    ready.set_exception(exc)
            raise


_FANOUTS: weakref.WeakKeyDictionary[Flowrra, Fanout] = weakref.WeakKeyDictionary()
_FANOUTS_LOCK = threading.Lock()


def fanout_of(app: Flowrra) -> Fanout:
    """The process's one :class:`Fanout` of ``app``, shared by every mount of its UI."""
    with _FANOUTS_LOCK:
        fanout = _FANOUTS.get(app)
        if fanout is None:
            fanout = _FANOUTS[app] = Fanout(app)
        return fanout
