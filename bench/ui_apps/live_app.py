"""The web process of bench/ui_live.py: a FastAPI app with the Flowrra UI mounted (public,
read-only) on Redis, a host endpoint (``/ping``) and its event loop's lag (``/lag``: how
late a 10 ms sleep wakes, sampled all along, and the full garbage collections meanwhile),
and the Flowrra app the bench's worker runs (``flowrra worker live_app:flowrra``). The
Redis URL comes from ``$BENCH_UI_REDIS_URL``; ``$BENCH_UI_GC_FREEZE=1`` calls
:func:`gc.freeze` once started; ``$BENCH_UI_WAKE_BATCH`` sets the live fan-out's
``Fanout.wake_batch`` (clients woken a turn of the loop)."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from flowrra_ui.live import stream_text
from flowrra_ui.service import UIService
from flowrra_ui_fastapi import create_router
from starlette.types import Receive, Scope, Send

from flowrra import Flowrra

if os.environ.get("BENCH_UI_WAKE_BATCH"):
    from flowrra_ui.live import Fanout

    Fanout.wake_batch = int(os.environ["BENCH_UI_WAKE_BATCH"])

flowrra = Flowrra.from_urls(
    broker=os.environ["BENCH_UI_REDIS_URL"], backend=os.environ["BENCH_UI_REDIS_URL"]
)


@flowrra.task()
async def work(n: int) -> int:
    await asyncio.sleep(0.01)
    return n


lags: list[float] = []
#: The pauses of the full (generation 2) garbage collections, in seconds.
collections: list[float] = []
_collecting = [0.0]


def note_collection(phase: str, info: dict[str, int]) -> None:
    if info["generation"] != 2:
        return
    if phase == "start":
        _collecting[0] = time.perf_counter()
    else:
        collections.append(time.perf_counter() - _collecting[0])


async def sample_lag() -> None:
    while True:
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(time.perf_counter() - started - 0.01)


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    sampler = asyncio.create_task(sample_lag())
    gc.callbacks.append(note_collection)
    if os.environ.get("BENCH_UI_GC_FREEZE") == "1":
        gc.collect()
        gc.freeze()
    yield
    sampler.cancel()
    await flowrra.close()


api = FastAPI(lifespan=lifespan)
api.include_router(create_router(flowrra, public=True), prefix="/flowrra")


class ServerSentEvents:
    """``/sse``: the same live stream as ``/flowrra/ws``, as Server-Sent Events, a raw ASGI
    app (each frame one ``data:`` event in one chunk of the response), for
    ``ui_live.py --live sse`` to weigh against the WebSocket path. Not an adapter's route."""

    def __init__(self) -> None:
        self.service = UIService(flowrra, public=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

        async def send_text(text: str) -> None:
            body = f"data: {text}\n\n".encode()
            await send({"type": "http.response.body", "body": body, "more_body": True})

        async def received() -> object:
            message = await receive()
            return None if message["type"] == "http.disconnect" else message

        await stream_text(self.service, send_text, received)


api.add_route("/sse", ServerSentEvents())  # an ASGI app, not a request handler


@api.get("/ping")
async def ping() -> dict[str, str]:
    return {"pong": "yes"}


@api.post("/lag/reset")
async def reset_lag() -> dict[str, int]:
    lags.clear()
    collections.clear()
    return {"reset": 1}


@api.get("/lag")
async def lag() -> dict[str, float]:
    ordered = sorted(lags) or [0.0]
    return {
        "samples": len(ordered),
        "median_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "max_ms": ordered[-1] * 1000,
        "full_gc": len(collections),
        "full_gc_max_ms": max(collections, default=0.0) * 1000,
    }
