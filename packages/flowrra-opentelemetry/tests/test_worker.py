"""One trace from a web request in this process, through a real Redis, to a real
``flowrra worker`` process: the producer span here, the consumer spans there."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from conftest import Tracing, Worker
from flowrra_redis import RedisBackend, RedisBroker
from opentelemetry.trace import SpanKind
from otel_tasks import register

from flowrra import Flowrra, TaskStatus

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def producer(
    redis_url: str, prefix: str, tracing: Tracing
) -> AsyncIterator[tuple[Flowrra, dict[str, Any]]]:
    """An app that submits to the workers' queue and runs nothing itself."""
    app = Flowrra(
        broker=RedisBroker(redis_url, prefix=prefix), backend=RedisBackend(redis_url, prefix=prefix)
    )
    tasks = register(app, tracing.tracer)
    async with app.producer():
        yield app, tasks


def hex_trace(span: Any) -> str:
    return f"{span.context.trace_id:032x}"


def hex_span(span: Any) -> str:
    return f"{span.context.span_id:016x}"


def consumers(spans: list[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    found = [
        s
        for s in spans
        if s["kind"] == "CONSUMER" and s["attributes"].get("flowrra.task.name") == task
    ]
    return sorted(found, key=lambda s: s["attributes"]["flowrra.task.attempt"])


async def test_one_trace_from_the_web_request_through_the_worker(
    producer: tuple[Flowrra, dict[str, Any]], tracing: Tracing, start_worker: Callable[..., Worker]
) -> None:
    app, tasks = producer
    worker = start_worker()
    with tracing.tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER) as request:
        task_id = await app.submit(tasks["add"], 2, 3)
    result = await app.wait_for_result(task_id, timeout=30)
    assert result.status is TaskStatus.SUCCESS and result.result == 5

    # Producer side: the request span and its PRODUCER child, whose context went in the headers.
    (send,) = [s for s in tracing.spans() if s.kind is SpanKind.PRODUCER]
    assert send.name == "send otel.add"
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert hex_trace(send) == f"{request.get_span_context().trace_id:032x}"
    assert send.attributes["messaging.system"] == "flowrra"
    assert send.attributes["messaging.operation.type"] == "send"
    assert send.attributes["messaging.operation"] == "publish"
    assert send.attributes["messaging.message.id"] == task_id
    assert send.attributes["messaging.destination.name"] == "otel.add"
    assert send.attributes["flowrra.task.name"] == "otel.add"
    assert result.headers["traceparent"].startswith(f"00-{hex_trace(send)}-{hex_span(send)}-")

    # Worker side: the CONSUMER span is the producer span's child, in the same trace, and
    # the task's own span is the consumer span's child.
    spans = worker.wait_for_spans(lambda spans: len(spans) >= 2)
    (process,) = consumers(spans, "otel.add")
    (inside,) = [s for s in spans if s["name"] == "add inside the task"]
    assert process["name"] == "process otel.add"
    assert process["trace_id"] == inside["trace_id"] == hex_trace(send)
    assert process["parent_id"] == hex_span(send)
    assert inside["parent_id"] == process["span_id"]
    assert process["status"] == "UNSET" and process["events"] == []
    assert process["attributes"] == {
        "messaging.system": "flowrra",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.operation": "process",
        "messaging.destination.name": "otel.add",
        "messaging.message.id": task_id,
        "flowrra.task.name": "otel.add",
        "flowrra.task.attempt": 1,
        "flowrra.task.priority": 0,
        "flowrra.task.status": "success",
    }


async def test_a_failing_task_has_an_error_span_with_the_exception(
    producer: tuple[Flowrra, dict[str, Any]], tracing: Tracing, start_worker: Callable[..., Worker]
) -> None:
    app, tasks = producer
    worker = start_worker()
    with tracing.tracer.start_as_current_span("POST /boom"):
        task_id = await app.submit(tasks["boom"], "the card was declined")
    result = await app.wait_for_result(task_id, timeout=30)
    assert result.status is TaskStatus.FAILED

    (send,) = [s for s in tracing.spans() if s.kind is SpanKind.PRODUCER]
    spans = worker.wait_for_spans(lambda spans: bool(consumers(spans, "otel.boom")))
    (process,) = consumers(spans, "otel.boom")
    assert process["trace_id"] == hex_trace(send) and process["parent_id"] == hex_span(send)
    assert process["status"] == "ERROR"
    assert process["description"] == "ValueError: the card was declined"
    assert process["attributes"]["error.type"] == "ValueError"
    assert process["attributes"]["flowrra.task.status"] == "failed"
    (event,) = process["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "ValueError"
    assert event["attributes"]["exception.message"] == "the card was declined"
    assert "Traceback" in event["attributes"]["exception.stacktrace"]


async def test_a_retried_task_has_one_consumer_span_per_attempt(
    producer: tuple[Flowrra, dict[str, Any]], tracing: Tracing, start_worker: Callable[..., Worker]
) -> None:
    app, tasks = producer
    worker = start_worker()
    with tracing.tracer.start_as_current_span("POST /flaky"):
        task_id = await app.submit(tasks["flaky"])
    result = await app.wait_for_result(task_id, timeout=30)
    assert result.status is TaskStatus.SUCCESS and result.result == 2

    (send,) = [s for s in tracing.spans() if s.kind is SpanKind.PRODUCER]
    spans = worker.wait_for_spans(lambda spans: len(consumers(spans, "otel.flaky")) >= 2)
    first, second = consumers(spans, "otel.flaky")
    for process in (first, second):  # both children of the one producer span
        assert process["trace_id"] == hex_trace(send) and process["parent_id"] == hex_span(send)
        assert process["attributes"]["messaging.message.id"] == task_id
    assert first["span_id"] != second["span_id"]
    assert first["attributes"]["flowrra.task.attempt"] == 1
    assert first["attributes"]["flowrra.task.status"] == "retrying"
    assert first["attributes"]["flowrra.task.retry_delay"] == 0.2
    assert first["status"] == "ERROR"
    assert [e["attributes"]["exception.type"] for e in first["events"]] == ["RuntimeError"]
    assert second["attributes"]["flowrra.task.attempt"] == 2
    assert second["attributes"]["flowrra.task.status"] == "success"
    assert second["status"] == "UNSET" and second["events"] == []


async def test_uninstrument_stops_the_producer_spans_and_the_propagation(
    producer: tuple[Flowrra, dict[str, Any]], tracing: Tracing, start_worker: Callable[..., Worker]
) -> None:
    app, tasks = producer
    worker = start_worker()
    tracing.instrumentor.uninstrument()
    with tracing.tracer.start_as_current_span("POST /orders") as request:
        task_id = await app.submit(tasks["add"], 1, 1)
    result = await app.wait_for_result(task_id, timeout=30)
    assert result.status is TaskStatus.SUCCESS
    assert [s.name for s in tracing.spans()] == ["POST /orders"]  # no producer span
    assert "traceparent" not in result.headers
    # The worker, still instrumented, starts a trace of its own: no context came with it.
    spans = worker.wait_for_spans(lambda spans: bool(consumers(spans, "otel.add")))
    (process,) = consumers(spans, "otel.add")
    assert process["parent_id"] is None
    assert process["trace_id"] != f"{request.get_span_context().trace_id:032x}"


async def test_opentelemetry_instrument_finds_the_instrumentor(
    producer: tuple[Flowrra, dict[str, Any]], tracing: Tracing, start_worker: Callable[..., Worker]
) -> None:
    """``opentelemetry-instrument flowrra worker ...``: the worker's app only sets the global
    provider; the ``opentelemetry_instrumentor`` entry point does the rest."""
    app, tasks = producer
    worker = start_worker(auto=True)
    with tracing.tracer.start_as_current_span("POST /orders"):
        task_id = await app.submit(tasks["add"], 4, 4)
    assert (await app.wait_for_result(task_id, timeout=30)).result == 8
    (send,) = [s for s in tracing.spans() if s.kind is SpanKind.PRODUCER]
    spans = worker.wait_for_spans(lambda spans: bool(consumers(spans, "otel.add")))
    (process,) = consumers(spans, "otel.add")
    assert process["trace_id"] == hex_trace(send) and process["parent_id"] == hex_span(send)
