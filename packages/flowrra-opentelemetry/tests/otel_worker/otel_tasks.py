"""The tasks of the tests, registered on any app (the worker's, the producer's, an
in-memory one) by :func:`register`, so the test process never imports the worker's app."""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import Tracer

import flowrra
from flowrra import Flowrra


def register(app: Flowrra, tracer: Tracer) -> dict[str, Any]:
    """Register the test tasks on ``app``; their own spans come from ``tracer``."""

    @app.task(name="otel.add")
    async def add(x: int, y: int) -> int:
        with tracer.start_as_current_span("add inside the task"):
            return x + y

    @app.task(name="otel.add_in_thread")
    def add_in_thread(x: int, y: int) -> int:
        with tracer.start_as_current_span("add inside the thread"):
            return x + y

    @app.task(name="otel.boom", max_retries=0)
    async def boom(text: str) -> None:
        raise ValueError(text)

    @app.task(name="otel.flaky", max_retries=3, retry_delay=0.2)
    async def flaky() -> int:
        attempt = flowrra.current_task().attempt
        if attempt == 1:
            raise RuntimeError("first attempt fails")
        return attempt

    @app.task(name="otel.poll", max_retries=3)
    async def poll() -> str:
        if flowrra.current_task().attempt == 1:
            raise flowrra.Retry(delay=0.1, reason="not ready")
        return "ready"

    return {
        "add": add,
        "add_in_thread": add_in_thread,
        "boom": boom,
        "flaky": flaky,
        "poll": poll,
    }
