"""Live task events for every open page of one process: one event subscription per app
(and event loop), fanned out in memory to a bounded buffer per client.

Every adapter streams through here. The asyncio ones (FastAPI, Quart, Channels) call
:func:`stream_text` from their WebSocket handler, on the server's loop, which also runs
the subscription; Flask's Server-Sent Events streams are threads that read a
:class:`ThreadClient` (:func:`join_from_thread`), the subscription running on the app's
sync loop (:mod:`flowrra.portal`). The first client of an app starts the subscription
(``Monitor.events()``: Redis pub/sub, or the app's in-process hub), the last one to leave
stops it: a thousand open pages cost one Redis connection.

What a client receives, in order:

- :data:`READY` once the subscription holds (never before: a page that reads it may say
  "Live" and load what it shows), and again after each reconnect, when the events
  published in between are lost: the page reloads its view then.
- task events (:func:`flowrra_ui.service.event_json`, through the mount's ``redact``):
  each alone as one frame, as it comes, or, when several wait for a client (a burst: a
  task's pending, running and success, or a client a little behind), all of them in one
  :data:`EVENTS` frame, ``{"type": "events", "events": [...]}``, in order
  (:func:`frames`). No timer holds an event back: a client's sender takes what waits
  for it each time it is free, so a lone event goes out at once and a client that falls
  behind catches up in few frames (most of a frame's cost is per frame: compression and
  the write to the socket).
- :data:`RECONNECTING` when the subscription is lost (Redis down): the page says so
  until the next :data:`READY`.

A slow client does not slow the others: the subscription only appends to each client's
buffer, and wakes the clients :attr:`Fanout.wake_batch` at a time, one batch a turn of
the loop, so a thousand pages sending an event never hold the loop from the process's
other requests for more than one batch's sends. Woken, a WebSocket's client
(:class:`SendingClient`) sends from a task of its own, which on Python 3.12+ starts in
that turn and is done in it unless a send has to wait (a full socket): that one goes on
while the others are served. A client :data:`MAX_BUFFER` messages behind (counted in
messages, those being sent included, not in frames) is dropped: it is sent
``{"type": "dropped", "reason": ...}`` where it can be (Server-Sent Events), or its
WebSocket is closed with code :data:`DROPPED_CODE` and the reason; the page reconnects,
and reloads its view on the next :data:`READY`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import json
import logging
import queue
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from flowrra.events import TaskEvent
from flowrra.monitor import Monitor

if TYPE_CHECKING:
    from flowrra.app import Flowrra
    from flowrra_ui.service import UIService

__all__ = [
    "DROPPED_CODE",
    "EVENTS",
    "MAX_BUFFER",
    "MAX_FRAME_EVENTS",
    "READY",
    "RECONNECTING",
    "Fanout",
    "SendingClient",
    "ThreadClient",
    "encode",
    "fanout_here",
    "frames",
    "join_from_thread",
    "stream_events",
    "stream_text",
]

logger = logging.getLogger("flowrra.ui")

#: The subscription holds: every event published from now on reaches the client. Sent
#: first, and again after a reconnect (what was published in between is lost).
READY: dict[str, Any] = {"type": "ready"}
#: The subscription is lost (the event source, Redis, is unreachable): not live until the
#: next :data:`READY`.
RECONNECTING: dict[str, Any] = {"type": "reconnecting"}
#: Messages a client may be behind before it is dropped.
MAX_BUFFER = 1_000
#: The WebSocket close code of a dropped client ("try again later").
DROPPED_CODE = 1013
#: The ``type`` of a frame that carries several task events, in order, under ``events``.
EVENTS = "events"
#: Task events one :data:`EVENTS` frame carries at most (a client far behind gets several).
MAX_FRAME_EVENTS = 100

#: What a client's buffer holds: task events and the control messages above.
Message = TaskEvent | dict[str, Any]


class _Client:
    """One open page: the messages the subscription gave it, at most ``max_buffer``."""

    def __init__(self, max_buffer: int = MAX_BUFFER) -> None:
        if max_buffer < 1:
            raise ValueError(f"max_buffer must be at least 1, got {max_buffer!r}")
        self.max_buffer = max_buffer
        #: Why the subscription let go of this client (too slow), or None.
        self.dropped: str | None = None

    def offer(self, message: Message) -> bool:
        """Buffer ``message`` (called on the subscription's loop); False when full.
        The client's reader is not woken: :meth:`wake` does that."""
        raise NotImplementedError

    def wake(self) -> None:
        """Let the reader know messages wait (called on the subscription's loop)."""

    def drop(self, reason: str) -> None:
        """The subscription let go of this client (called on its loop)."""
        raise NotImplementedError


#: A task started eagerly runs its first step at once, where it is made (Python 3.12+):
#: a send that does not wait is done before the fan-out goes on to the next client.
_EAGER: dict[str, Any] = {"eager_start": True} if sys.version_info >= (3, 12) else {}


class SendingClient(_Client):
    """A client the subscription sends to itself, on its loop (a WebSocket, an event
    stream): woken, it sends every message waiting with ``send_messages``, from a task
    of its own that keeps sending what comes meanwhile, and ends when nothing waits. On
    Python 3.12+ that task starts eagerly: a send that does not wait (the socket takes
    the frame) is done in the turn that woke it, and no task waits per client between
    events, nor costs a turn of the loop when woken (a few µs per client and event of a
    fan-out's 30 to 60).

    The task runs in the context of the code that made the client (its handler's), as
    the handler's own task would. What ``send_messages`` raises (the client went away)
    ends the client: :meth:`ended` returns, and :attr:`failed` holds it."""

    def __init__(
        self,
        send_messages: Callable[[list[Message]], Coroutine[Any, Any, None]],
        max_buffer: int = MAX_BUFFER,
    ) -> None:
        super().__init__(max_buffer)
        self._messages: collections.deque[Message] = collections.deque()
        #: Messages taken by the sending task, being sent: they count as buffered.
        self._sending = 0
        #: Set once the client is dropped or sending to it failed.
        self._dropping = asyncio.Event()
        self._send_messages = send_messages
        self._context = contextvars.copy_context()
        #: The task sending, while a send waits (None between sends).
        self._sender: asyncio.Task[None] | None = None
        #: What sending raised, once it failed.
        self.failed: BaseException | None = None

    def offer(self, message: Message) -> bool:
        if self.failed is not None:
            return True  # gone: its handler is leaving, nothing to hold for it
        if len(self._messages) + self._sending >= self.max_buffer:
            return False
        self._messages.append(message)
        return True

    def wake(self) -> None:
        if (
            self._sender is not None
            or not self._messages
            or self.failed is not None
            or self.dropped is not None
        ):
            return  # the task sending sends these too, before it ends
        sender = asyncio.Task(
            self._send_waiting(), loop=asyncio.get_running_loop(), context=self._context, **_EAGER
        )
        if not sender.done():
            self._sender = sender

    async def _send_waiting(self) -> None:
        try:
            while self._messages and self.dropped is None:
                taken = list(self._messages)
                self._messages.clear()
                self._sending = len(taken)
                await self._send_messages(taken)
            self._sending = 0
        except (Exception, asyncio.CancelledError) as exc:
            self._fail(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._sender = None

    def drop(self, reason: str) -> None:
        self.dropped = reason
        self._let_go()

    def _fail(self, exc: BaseException) -> None:
        if self.failed is None:
            self.failed = exc
        self._let_go()

    def _let_go(self) -> None:
        """Hold nothing more for this client, and end :meth:`ended`'s wait."""
        self._messages.clear()
        self._sending = 0
        self._dropping.set()

    async def ended(self) -> None:
        """Return once the client is dropped or sending to it failed."""
        while self.dropped is None and self.failed is None:
            await self._dropping.wait()

    async def close(self) -> None:
        """Stop a send still going on (the handler is done with this client), and wait
        for it to end."""
        sender = self._sender
        if sender is not None:
            sender.cancel()
            await asyncio.wait((sender,))


class ThreadClient(_Client):
    """A client read by a thread (Flask's event streams), fed from the subscription's
    loop in another thread."""

    def __init__(self, fanout: Fanout, loop: asyncio.AbstractEventLoop, max_buffer: int) -> None:
        super().__init__(max_buffer)
        self._fanout, self._loop = fanout, loop
        # One spare slot for the message that says why it was dropped.
        self._messages: queue.Queue[Message] = queue.Queue(max_buffer + 1)
        #: Messages taken by the last :meth:`take`, being sent: they count as buffered.
        self._sending = 0

    def offer(self, message: Message) -> bool:
        if self._messages.qsize() + self._sending >= self.max_buffer:
            return False
        self._messages.put_nowait(message)
        return True

    def drop(self, reason: str) -> None:
        self.dropped = reason
        with contextlib.suppress(queue.Full):
            self._messages.put_nowait({"type": "dropped", "reason": reason})

    def get(self, timeout: float) -> Message | None:
        """The next message, or ``None`` when none came within ``timeout`` seconds."""
        try:
            return self._messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def take(self, timeout: float) -> list[Message]:
        """Every message waiting, waiting ``timeout`` seconds for the first; empty when
        none came. They count against ``max_buffer`` until the next call."""
        self._sending = 0
        first = self.get(timeout)
        if first is None:
            return []
        taken = [first]
        with contextlib.suppress(queue.Empty):
            while True:
                taken.append(self._messages.get_nowait())
        self._sending = len(taken)
        return taken

    def leave(self) -> None:
        """Stop feeding this client (from any thread)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed already
            self._loop.call_soon_threadsafe(self._fanout.leave, self)


class Fanout:
    """The subscription to one app's task events on one event loop, shared by every
    client on it. Use it from that loop only (:class:`ThreadClient` crosses over)."""

    def __init__(self, app: Flowrra) -> None:
        self.monitor = Monitor(app)
        self._clients: set[_Client] = set()
        #: Clients given messages and not woken yet (:meth:`_wake`), oldest first.
        self._to_wake: collections.OrderedDict[_Client, None] = collections.OrderedDict()
        #: Whether a turn of :meth:`_wake` is scheduled.
        self._waking = False
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Future[None] | None = None
        #: Whether the subscription holds now.
        self.holding = False

    @property
    def clients(self) -> int:
        """How many clients it feeds."""
        return len(self._clients)

    @property
    def running(self) -> bool:
        """Whether it holds (or is getting back) a subscription."""
        return self._task is not None and not self._task.done()

    async def join(self, client: _Client) -> None:
        """Feed ``client`` every message from now on: :data:`READY` first when the
        subscription holds (it is made if this is the first client), or
        :data:`RECONNECTING` while it is lost. Raises what subscribing raises
        (``BackendError``) when it cannot be made; ``client`` is not fed then."""
        self._clients.add(client)
        try:
            if not self.running:
                self._started = asyncio.get_running_loop().create_future()
                self._task = asyncio.create_task(self._pump(self._started), name="flowrra-ui-live")
            assert self._started is not None
            await asyncio.shield(self._started)
        except BaseException:
            self.leave(client)
            raise
        client.offer(READY if self.holding else RECONNECTING)
        client.wake()

    def leave(self, client: _Client) -> None:
        """Stop feeding ``client``; the last one to leave ends the subscription."""
        self._clients.discard(client)
        self._to_wake.pop(client, None)
        if not self._clients:
            self._stop()

    #: Clients woken in one turn of the loop. A thousand clients sending an event hold
    #: the loop for tens of milliseconds (a send costs 30 to 60 µs, most of it the
    #: socket write and, when on, compression); woken ten a turn, they hold it under a
    #: millisecond at a time, and the loop serves its other work (the API, the host's own
    #: endpoints, the subscription's next events) in between. Clients woken later also
    #: take more events in one frame (all of them at once: twice the frames).
    wake_batch = 10

    def _send(self, message: Message) -> None:
        to_wake = self._to_wake
        for client in list(self._clients):
            if client.offer(message):
                to_wake[client] = None
                continue
            reason = f"too slow: {client.max_buffer} live events behind"
            logger.warning("a live UI client was dropped (%s)", reason)
            self._clients.discard(client)
            to_wake.pop(client, None)
            client.drop(reason)
        if not self._clients and self._task is not None:
            self._stop()
        elif not self._waking:
            self._wake()

    def _wake(self) -> None:
        """Wake the next :attr:`wake_batch` clients given messages; the rest in the next
        turn of the loop (one chain of turns at a time)."""
        to_wake = self._to_wake
        for _ in range(min(self.wake_batch, len(to_wake))):
            client, _ = to_wake.popitem(last=False)
            client.wake()
        self._waking = bool(to_wake)
        if self._waking:
            asyncio.get_running_loop().call_soon(self._wake)

    def _stop(self) -> None:
        self._to_wake.clear()
        if self._task is not None:
            self._task.cancel()
        self._task = self._started = None
        self.holding = False

    def _connected(self, holds: bool) -> None:
        started = self._started is not None and self._started.done()
        if holds:
            self.holding = True
            if started:  # back after a loss (or a quiet reconnect): events were missed
                self._send(READY)
        elif self.holding:
            self.holding = False
            self._send(RECONNECTING)

    async def _pump(self, started: asyncio.Future[None]) -> None:
        me = asyncio.current_task()

        def connected(holds: bool) -> None:
            if self._task is me:  # not a subscription being stopped
                self._connected(holds)

        try:
            async with self.monitor.events(self._buffer, on_connection=connected) as events:
                self.holding = True
                started.set_result(None)
                async for event in events:
                    self._send(event)
        except BaseException as exc:
            if not started.done():
                if isinstance(exc, asyncio.CancelledError):
                    started.cancel()
                else:
                    started.set_exception(exc)
            elif self._task is me:
                # The source gave up after holding: let the clients go with the reason
                # (they reconnect, and the first one subscribes again).
                self._task = self._started = None
                self.holding = False
                for client in list(self._clients):
                    client.drop(f"event subscription ended: {exc!r}")
                self._clients.clear()
            raise

    #: Events the subscription itself may be behind (it only copies them to buffers).
    _buffer = 10_000


_FANOUTS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, weakref.WeakKeyDictionary[Flowrra, Fanout]
] = weakref.WeakKeyDictionary()
_FANOUTS_LOCK = threading.Lock()


def fanout_here(app: Flowrra) -> Fanout:
    """The one :class:`Fanout` of ``app`` on the running loop, shared by every mount of
    its UI (a process serving from one loop holds one subscription per app)."""
    loop = asyncio.get_running_loop()
    with _FANOUTS_LOCK:
        of_loop = _FANOUTS.get(loop)
        if of_loop is None:
            of_loop = _FANOUTS[loop] = weakref.WeakKeyDictionary()
        fanout = of_loop.get(app)
        if fanout is None:
            fanout = of_loop[app] = Fanout(app)
        return fanout


def join_from_thread(app: Flowrra, max_buffer: int = MAX_BUFFER) -> ThreadClient:
    """A client for a thread (a WSGI request): joined to ``app``'s subscription on its
    sync loop (:mod:`flowrra.portal`), which it starts if need be. Raises what subscribing
    raises (``BackendError``); call :meth:`ThreadClient.leave` when done."""

    async def join() -> ThreadClient:
        fanout = fanout_here(app)
        client = ThreadClient(fanout, asyncio.get_running_loop(), max_buffer)
        await fanout.join(client)
        return client

    client: ThreadClient = app._call_sync("the Flowrra UI's live stream", "", join)
    return client


class _Encoded:
    """The text of the last events one mount sent: every client sends the same events,
    so each is redacted and encoded once, not once per client."""

    size = 256

    def __init__(self) -> None:
        self.texts: collections.OrderedDict[int, tuple[TaskEvent, str]] = collections.OrderedDict()


_ENCODED: weakref.WeakKeyDictionary[UIService, _Encoded] = weakref.WeakKeyDictionary()


def encode(service: UIService, message: Message) -> str:
    """``message`` as the JSON text ``service``'s clients get (task events through the
    mount's ``redact``)."""
    return _encode(_encoded(service), service, message)


def _encoded(service: UIService) -> _Encoded:
    cache = _ENCODED.get(service)
    if cache is None:
        cache = _ENCODED[service] = _Encoded()
    return cache


def _encode(cache: _Encoded, service: UIService, message: Message) -> str:
    if not isinstance(message, TaskEvent):
        return json.dumps(message)
    found = cache.texts.get(id(message))
    if found is not None and found[0] is message:
        return found[1]
    text = json.dumps(service.event(message))
    cache.texts[id(message)] = (message, text)  # holding the event keeps its id unique
    if len(cache.texts) > cache.size:
        cache.texts.popitem(last=False)
    return text


def frames(service: UIService, messages: list[Message]) -> Iterator[str]:
    """The frames, as JSON text, that send ``messages`` (in order) to one of
    ``service``'s clients: each run of task events as one frame (one event alone as
    itself; several, up to :data:`MAX_FRAME_EVENTS`, as an :data:`EVENTS` frame), each
    other message as a frame of its own."""
    return _frames(_encoded(service), service, messages)


def _frames(cache: _Encoded, service: UIService, messages: list[Message]) -> Iterator[str]:
    run: list[str] = []
    for message in messages:
        if isinstance(message, TaskEvent):
            run.append(_encode(cache, service, message))
            if len(run) < MAX_FRAME_EVENTS:
                continue
        if run:
            yield _events_frame(run)
            run = []
        if not isinstance(message, TaskEvent):
            yield _encode(cache, service, message)
    if run:
        yield _events_frame(run)


def _events_frame(texts: list[str]) -> str:
    if len(texts) == 1:
        return texts[0]
    return f'{{"type": "{EVENTS}", "events": [{", ".join(texts)}]}}'


async def stream_text(
    service: UIService,
    send: Callable[[str], Awaitable[None]],
    receive: Callable[[], Awaitable[Any]],
    max_buffer: int = MAX_BUFFER,
) -> str | None:
    """Send live messages, as JSON text, to one WebSocket client until it goes away.
    ``send`` sends a text frame; ``receive`` waits for the client's next message and
    raises (or returns ``None``) once it has disconnected. Adapters call this after
    ``accept``, which they do only when
    :func:`~flowrra_ui.service.websocket_refusal` has no objection.

    Returns why the server ends the stream, for the adapter to close the WebSocket with
    (code :data:`DROPPED_CODE`): the subscription cannot be made (nothing was sent, not
    even :data:`READY`), or the client fell :data:`MAX_BUFFER` messages behind. The
    events waiting for the client each time ``send`` is free go as one frame
    (:func:`frames`). Returns
    ``None`` when the client went away."""
    fanout = fanout_here(service.app)

    encoded = _encoded(service)

    async def send_messages(messages: list[Message]) -> None:
        if len(messages) == 1:  # most often: one event, sent as it comes
            await send(_encode(encoded, service, messages[0]))
            return
        for text in _frames(encoded, service, messages):
            await send(text)

    client = SendingClient(send_messages, max_buffer)
    try:
        await fanout.join(client)
    except Exception as exc:
        await client.close()
        logger.warning("live UI stream refused: cannot subscribe to task events (%s)", exc)
        return f"live events unavailable: {exc}"[:120]

    async def until_gone() -> None:
        while await receive() is not None:
            pass

    # A client blocked in send() (its socket full) is dropped all the same: its send is
    # cancelled once the buffer is let go of.
    waits = [asyncio.ensure_future(until_gone()), asyncio.ensure_future(client.ended())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        fanout.leave(client)
        for waiting in waits:
            waiting.cancel()  # (cancelling a finished one retrieves what it raised)
        try:
            await asyncio.wait(waits)
        finally:  # cancelled again meanwhile (a server shutting down): the send too
            await client.close()
    return client.dropped


async def stream_events(
    service: UIService,
    send: Callable[[dict[str, Any]], Awaitable[None]],
    receive: Callable[[], Awaitable[Any]],
) -> None:
    """:func:`stream_text` for a ``send`` that takes the message as a ``dict`` (it sends
    it as JSON itself)."""

    async def send_text(text: str) -> None:
        await send(json.loads(text))

    await stream_text(service, send_text, receive)
