"""flowrra_ui.live on real Redis: every client of a process shares one subscription (on a
pool far smaller than the clients), ``ready`` is sent only once it holds, a slow client is
dropped without holding up the others, the events that wait for a client go as one frame
(a lone event at once, as itself), and a Redis that goes away and comes back is reported
(``reconnecting``, then ``ready`` again), as is one a Flask thread reads."""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from flowrra_ui import UIService
from flowrra_ui.live import (
    MAX_FRAME_EVENTS,
    READY,
    RECONNECTING,
    fanout_here,
    frames,
    join_from_thread,
    stream_text,
)
from flowrra_ui.testing import frame_events, private_redis, redis_test_url

from flowrra import Flowrra
from flowrra.events import TaskEvent
from flowrra.task import TaskStatus


def make_app(url: str, **options: Any) -> Flowrra:
    app = Flowrra.from_urls(broker=url, backend=url, **options)

    @app.task()
    async def add(a: int, b: int) -> int:
        return a + b

    return app


@pytest.fixture
async def redis_app() -> AsyncIterator[Flowrra]:
    """An app on the shared Redis, under a key prefix of its own, on a pool of 10."""
    base = redis_test_url()
    url = f"{base}?prefix=flowrra-ui-live-{uuid.uuid4().hex[:8]}"
    app = make_app(url, max_connections=10)
    async with app.producer():
        yield app


async def subscribers(app: Flowrra) -> int:
    """How many connections Redis has subscribed to the app's event channel."""
    client = aioredis.Redis.from_url(redis_test_url())
    try:
        [(_, count)] = await client.pubsub_numsub(app.backend.keys.events)  # type: ignore[attr-defined]
        return int(count)
    finally:
        await client.aclose()


class Page:
    """One stream_text client: what it was sent, until it is told to go away."""

    def __init__(self, service: UIService, max_buffer: int = 1000) -> None:
        #: Every message, the events of a several-event frame one by one.
        self.sent: list[dict[str, Any]] = []
        #: Every frame as sent.
        self.frames: list[dict[str, Any]] = []
        #: While cleared, send() waits (a socket that does not drain).
        self.draining = asyncio.Event()
        self.draining.set()
        self.changed = asyncio.Event()
        self.gone = asyncio.Event()
        self.task = asyncio.create_task(stream_text(service, self.send, self.receive, max_buffer))

    async def send(self, text: str) -> None:
        await self.draining.wait()
        frame = json.loads(text)
        self.frames.append(frame)
        self.sent.extend(frame_events(frame) if frame.get("type") in (None, "events") else [frame])
        self.changed.set()

    async def receive(self) -> Any:
        await self.gone.wait()
        return None

    async def until(self, check: Any) -> None:
        async with asyncio.timeout(30):
            while not check(self.sent):
                self.changed.clear()
                await self.changed.wait()

    async def leave(self) -> str | None:
        self.gone.set()
        async with asyncio.timeout(10):
            return await self.task


def task_events(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [message for message in sent if "type" not in message]


async def test_a_hundred_pages_share_one_subscription_on_a_pool_of_ten(
    redis_app: Flowrra,
) -> None:
    service = UIService(redis_app, public=True)
    pages = [Page(service) for _ in range(100)]
    for page in pages:
        await page.until(lambda sent: sent[:1] == [READY])
    assert await subscribers(redis_app) == 1  # one connection for all of them

    task_id = await redis_app.submit("add", 1, 2)  # no worker: its "pending" event
    for page in pages:
        await page.until(lambda sent: any(e["task_id"] == task_id for e in task_events(sent)))
    # The pool is not exhausted: reads still answer, while every page is open.
    listed = await asyncio.wait_for(redis_app.backend.list(limit=5), 10)
    assert task_id in {record.task_id for record in listed}

    for page in pages:
        assert await page.leave() is None  # the client went away; nothing to tell it
    assert fanout_here(redis_app).running is False  # the last one out ended it
    async with asyncio.timeout(10):
        while await subscribers(redis_app):
            await asyncio.sleep(0.05)


async def test_ready_is_sent_only_once_the_subscription_holds(redis_app: Flowrra) -> None:
    service = UIService(redis_app, public=True)
    counted: list[int] = []

    async def send(text: str) -> None:
        if json.loads(text) == READY:
            counted.append(await subscribers(redis_app))
            raise ConnectionResetError  # done: the page goes away

    async def receive() -> Any:
        await asyncio.Event().wait()

    for _ in range(3):  # the first one subscribes; the others find it held
        await asyncio.wait_for(stream_text(service, send, receive), 30)
    assert counted == [1, 1, 1]


async def test_a_slow_page_is_dropped_and_the_others_get_every_event(
    redis_app: Flowrra,
) -> None:
    service = UIService(redis_app, public=True)
    stuck = asyncio.Event()  # never set: this page's socket never drains

    async def blocked_send(text: str) -> None:
        await stuck.wait()

    async def receive() -> Any:
        await asyncio.Event().wait()

    slow = asyncio.create_task(stream_text(service, blocked_send, receive, 5))
    fast = Page(service)
    await fast.until(lambda sent: sent[:1] == [READY])
    ids = [await redis_app.submit("add", n, n) for n in range(20)]
    reason = await asyncio.wait_for(slow, 30)
    assert reason is not None and "too slow" in reason
    await fast.until(lambda sent: len(task_events(sent)) == len(ids))
    assert [e["task_id"] for e in task_events(fast.sent)] == ids
    assert await fast.leave() is None


async def test_the_events_waiting_for_a_page_go_as_one_frame(redis_app: Flowrra) -> None:
    service = UIService(redis_app, public=True)
    page, witness = Page(service), Page(service)
    for each in (page, witness):
        await each.until(lambda sent: sent[:1] == [READY])

    lone = await redis_app.submit("add", 0, 0)
    await page.until(lambda sent: len(task_events(sent)) == 1)
    assert page.frames[-1]["task_id"] == lone  # a lone event: at once, as itself

    page.draining.clear()  # its socket is full: what comes now waits in its buffer
    ids = [await redis_app.submit("add", n, n) for n in range(1, 5)]
    # The first one was taken at once (and waits in send); the witness has them all, so
    # the page's buffer holds the other three.
    await witness.until(lambda sent: len(task_events(sent)) == 5)
    page.draining.set()
    await page.until(lambda sent: len(task_events(sent)) == 5)
    assert [e["task_id"] for e in task_events(page.sent)] == [lone, *ids]
    ready, first, taken, burst = page.frames  # four frames for six messages
    assert ready == READY and first["task_id"] == lone and taken["task_id"] == ids[0]
    assert burst["type"] == "events" and [e["task_id"] for e in burst["events"]] == ids[1:]
    # The witness, never behind, got a frame per event.
    assert len(witness.frames) == 6 and all("type" not in f for f in witness.frames[1:])
    for each in (page, witness):
        assert await each.leave() is None


HANDLER = contextvars.ContextVar("HANDLER", default="none")


async def test_sends_run_in_the_handlers_context_whether_or_not_they_wait(
    redis_app: Flowrra,
) -> None:
    """The subscription sends to a client itself, at once where the send does not wait
    and from a task where it does; either way as the handler's own task would: with the
    handler's context variables (a framework's request-local state)."""
    service = UIService(redis_app, public=True)
    #: (the context when the send starts, when it ends, the text), per send.
    seen: list[tuple[str, str, str]] = []
    draining = asyncio.Event()
    draining.set()
    gone = asyncio.Event()

    async def send(text: str) -> None:
        started = HANDLER.get()
        await draining.wait()
        seen.append((started, HANDLER.get(), text))

    async def receive() -> Any:
        await gone.wait()
        return None

    async def handler() -> str | None:
        HANDLER.set("the handler's")
        return await stream_text(service, send, receive)

    first = Page(service)  # it starts the subscription, in a context of its own
    await first.until(lambda sent: sent[:1] == [READY])
    streaming = asyncio.create_task(handler())
    async with asyncio.timeout(30):
        while not seen:
            await asyncio.sleep(0.01)
    at_once = await redis_app.submit("add", 1, 1)  # sent from the subscription's turn
    async with asyncio.timeout(30):
        while len(seen) < 2:
            await asyncio.sleep(0.01)
    draining.clear()  # the next send waits, and goes on from a task of its own
    waited = await redis_app.submit("add", 2, 2)
    await asyncio.sleep(0.2)
    assert len(seen) == 2
    draining.set()
    async with asyncio.timeout(30):
        while len(seen) < 3:
            await asyncio.sleep(0.01)
    assert {context for started, ended, _ in seen for context in (started, ended)} == {
        "the handler's"
    }
    assert [json.loads(text).get("task_id") for _, _, text in seen] == [None, at_once, waited]
    gone.set()
    assert await asyncio.wait_for(streaming, 10) is None
    assert await first.leave() is None


async def test_a_send_that_times_out_ends_its_client_only(redis_app: Flowrra) -> None:
    """A send runs in a task of its own, as it would in its handler's: a timeout in it
    (``asyncio.timeout``, bound to the current task) ends that client, and the others
    and the subscription go on."""
    service = UIService(redis_app, public=True)
    page = Page(service)
    await page.until(lambda sent: sent[:1] == [READY])

    async def send(text: str) -> None:
        async with asyncio.timeout(0.1):
            if json.loads(text) != READY:
                await asyncio.Event().wait()  # a socket that never drains

    async def receive() -> Any:
        await asyncio.Event().wait()

    timing_out = asyncio.create_task(stream_text(service, send, receive))
    async with asyncio.timeout(30):
        while fanout_here(redis_app).clients < 2:
            await asyncio.sleep(0.01)
    first = await redis_app.submit("add", 1, 1)
    assert await asyncio.wait_for(timing_out, 10) is None  # its send failed: gone
    second = await redis_app.submit("add", 2, 2)
    await page.until(lambda sent: [e["task_id"] for e in task_events(sent)] == [first, second])
    assert fanout_here(redis_app).running and fanout_here(redis_app).clients == 1
    assert await page.leave() is None


async def test_a_send_that_fails_after_waiting_ends_the_stream(redis_app: Flowrra) -> None:
    service = UIService(redis_app, public=True)
    release = asyncio.Event()

    async def send(text: str) -> None:
        if json.loads(text) != READY:
            await release.wait()
            raise ConnectionResetError("the client went away")

    async def receive() -> Any:
        await asyncio.Event().wait()  # never says the client is gone: the send does

    streaming = asyncio.create_task(stream_text(service, send, receive))
    async with asyncio.timeout(30):
        while not fanout_here(redis_app).clients:
            await asyncio.sleep(0.01)
    await redis_app.submit("add", 1, 1)
    await asyncio.sleep(0.2)
    assert not streaming.done()  # its send waits
    release.set()
    assert await asyncio.wait_for(streaming, 10) is None  # gone: nothing to tell it
    assert fanout_here(redis_app).running is False


@pytest.mark.parametrize("cancels", [1, 2])
async def test_a_handler_cancelled_while_its_send_waits_cancels_the_send(
    redis_app: Flowrra, cancels: int
) -> None:
    """Quart cancels a WebSocket's handler when the client goes away: a send waiting
    then (its socket full) is cancelled with it, not left pending; also when the handler
    is cancelled again while it cleans up (a server shutting down)."""
    service = UIService(redis_app, public=True)
    waiting, cancelled = asyncio.Event(), asyncio.Event()

    async def send(text: str) -> None:
        if json.loads(text) == READY:
            return
        waiting.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def receive() -> Any:
        await asyncio.Event().wait()

    streaming = asyncio.create_task(stream_text(service, send, receive))
    async with asyncio.timeout(30):
        while not fanout_here(redis_app).clients:
            await asyncio.sleep(0.01)
    await redis_app.submit("add", 1, 1)
    await asyncio.wait_for(waiting.wait(), 10)
    streaming.cancel()
    for _ in range(1, cancels):
        await asyncio.sleep(0)  # its cleanup starts, and waits
        streaming.cancel()
    with pytest.raises(asyncio.CancelledError):
        await streaming
    assert cancelled.is_set()
    assert fanout_here(redis_app).clients == 0


def test_frames_keep_the_order_and_split_long_runs() -> None:
    app = make_app("memory://")
    service = UIService(app, public=True)
    at = datetime(2026, 12, 7, tzinfo=UTC)

    def event(n: int) -> TaskEvent:
        return TaskEvent(f"t{n}", "add", TaskStatus.PENDING, 0, at)

    many = [event(n) for n in range(MAX_FRAME_EVENTS + 1)]
    sent = [json.loads(text) for text in frames(service, [event(-1), READY, *many, RECONNECTING])]
    assert [frame.get("type") for frame in sent] == [None, "ready", "events", None, "reconnecting"]
    assert [e["task_id"] for e in sent[2]["events"]] == [f"t{n}" for n in range(MAX_FRAME_EVENTS)]
    assert sent[3]["task_id"] == f"t{MAX_FRAME_EVENTS}"
    assert [e["task_id"] for f in sent for e in frame_events(f)] == [
        "t-1",
        *(f"t{n}" for n in range(MAX_FRAME_EVENTS + 1)),
    ]


async def test_redis_going_away_is_reported_and_its_return_too(tmp_path: Path) -> None:
    with private_redis(tmp_path / "redis") as server:
        app = make_app(server.url)
        async with app.producer():
            service = UIService(app, public=True)
            page = Page(service)
            await page.until(lambda sent: sent == [READY])

            server.kill()
            await page.until(lambda sent: sent[-1:] == [RECONNECTING])
            server.start()
            # Back: "ready" again, for the page to reload what it shows (events published
            # while it was gone are lost), and events flow once more.
            await page.until(lambda sent: sent[-1:] == [READY])
            assert page.sent == [READY, RECONNECTING, READY]
            task_id = await app.submit("add", 2, 2)
            await page.until(lambda sent: any(e["task_id"] == task_id for e in task_events(sent)))
            assert await page.leave() is None
        await app.close()


async def test_a_page_that_connects_while_redis_is_away_is_refused(tmp_path: Path) -> None:
    with private_redis(tmp_path / "redis") as server:
        app = make_app(server.url)
        server.kill()
        page = Page(UIService(app, public=True))
        reason = await asyncio.wait_for(page.task, 60)
        assert reason is not None and "unavailable" in reason
        assert page.sent == []  # never "ready": the page does not claim to be live
        await app.close()


def test_threads_share_the_subscription_and_leave_it() -> None:
    """Flask's event streams: threads reading clients fed from the app's sync loop."""
    base = redis_test_url()
    app = make_app(f"{base}?prefix=flowrra-ui-live-{uuid.uuid4().hex[:8]}")
    try:
        first, second = join_from_thread(app), join_from_thread(app)
        assert first.get(5) == READY and second.get(5) == READY
        assert asyncio.run(subscribers(app)) == 1
        task_id = app.submit_sync("add", 1, 1)
        for client in (first, second):
            event = client.get(10)
            assert event is not None and getattr(event, "task_id", None) == task_id
        first.leave()
        second.leave()
        for _ in range(100):
            if not asyncio.run(subscribers(app)):
                break
            time.sleep(0.1)
        assert asyncio.run(subscribers(app)) == 0
    finally:
        app._portal.close()
