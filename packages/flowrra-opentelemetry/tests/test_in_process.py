"""The instrumentation in one process: an embedded app on the in-memory broker (and an
eager one), the SDK's in-memory exporter."""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from typing import Any

import pytest
from conftest import Tracing
from flowrra_opentelemetry import FlowrraInstrumentor, OpenTelemetryMiddleware
from opentelemetry import trace as trace_api
from opentelemetry.trace import SpanKind, StatusCode
from otel_tasks import register

import flowrra
from flowrra import Flowrra, TaskStatus

pytestmark = pytest.mark.timeout(30)


def by_name(spans: list[Any], name: str) -> list[Any]:
    return sorted(
        (s for s in spans if s.name == name),
        key=lambda s: s.attributes.get("flowrra.task.attempt", 0),
    )


def child_of(span: Any, parent: Any) -> bool:
    return (
        span.parent is not None
        and span.parent.span_id == parent.context.span_id
        and span.context.trace_id == parent.context.trace_id
    )


async def test_request_producer_consumer_and_the_tasks_own_spans(tracing: Tracing) -> None:
    app = Flowrra()
    tasks = register(app, tracing.tracer)
    async with app:
        with tracing.tracer.start_as_current_span("GET /sum"):
            first = await app.submit(tasks["add"], 1, 2)
            second = await app.submit(tasks["add_in_thread"], 3, 4)
        assert (await app.wait_for_result(first, timeout=10)).result == 3
        assert (await app.wait_for_result(second, timeout=10)).result == 7
    spans = tracing.spans()
    (request,) = by_name(spans, "GET /sum")
    for task, inside in (
        ("otel.add", "add inside the task"),
        ("otel.add_in_thread", "add inside the thread"),
    ):
        (send,) = by_name(spans, f"send {task}")
        (process,) = by_name(spans, f"process {task}")
        (own,) = by_name(spans, inside)
        assert send.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
        assert child_of(send, request) and child_of(process, send) and child_of(own, process)
        assert process.attributes["flowrra.task.attempt"] == 1
    assert FlowrraInstrumentor().middleware is not None
    assert FlowrraInstrumentor().middleware.open_submits == 0


async def test_submit_many_gives_each_task_its_producer_span(tracing: Tracing) -> None:
    app = Flowrra()
    tasks = register(app, tracing.tracer)
    async with app:
        with tracing.tracer.start_as_current_span("POST /batch"):
            ids = await app.submit_many(tasks["add"], [(1, 1), (2, 2), (3, 3)])
        for task_id in ids:
            await app.wait_for_result(task_id, timeout=10)
    spans = tracing.spans()
    (request,) = by_name(spans, "POST /batch")
    sends = by_name(spans, "send otel.add")
    processes = by_name(spans, "process otel.add")
    assert sorted(s.attributes["messaging.message.id"] for s in sends) == sorted(ids)
    for send in sends:
        assert child_of(send, request)
        (process,) = [
            p
            for p in processes
            if p.attributes["messaging.message.id"] == send.attributes["messaging.message.id"]
        ]
        assert child_of(process, send)


async def test_errors_and_retries(tracing: Tracing) -> None:
    app = Flowrra()
    tasks = register(app, tracing.tracer)
    async with app:
        boom = await app.submit(tasks["boom"], "no")
        flaky = await app.submit(tasks["flaky"])
        poll = await app.submit(tasks["poll"])
        assert (await app.wait_for_result(boom, timeout=10)).status is TaskStatus.FAILED
        assert (await app.wait_for_result(flaky, timeout=10)).result == 2
        assert (await app.wait_for_result(poll, timeout=10)).result == "ready"
    spans = tracing.spans()
    (failed,) = by_name(spans, "process otel.boom")
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.attributes["exception.type"] for e in failed.events] == ["ValueError"]
    first, second = by_name(spans, "process otel.flaky")
    assert first.status.status_code is StatusCode.ERROR
    assert [e.name for e in first.events] == ["exception"]
    assert first.attributes["flowrra.task.status"] == "retrying"
    assert second.status.status_code is StatusCode.UNSET and not second.events
    # A retry the task asked for is recorded, but is not an error.
    asked, answered = by_name(spans, "process otel.poll")
    assert asked.status.status_code is StatusCode.UNSET
    assert [e.attributes["exception.type"] for e in asked.events] == ["flowrra.retry.Retry"]
    assert asked.attributes["flowrra.task.retry_delay"] == 0.1
    assert answered.attributes["flowrra.task.status"] == "success"


async def test_eager_mode_and_a_refused_submit(tracing: Tracing) -> None:
    app = Flowrra(eager=True)
    tasks = register(app, tracing.tracer)
    with tracing.tracer.start_as_current_span("test"):
        task_id = await app.submit(tasks["add"], 5, 5)
        assert (await app.get_result(task_id)).result == 10  # type: ignore[union-attr]
        with pytest.raises(Exception, match="argument"):
            await app.submit(tasks["add"], object(), 1)
    spans = tracing.spans()
    ok, refused = by_name(spans, "send otel.add")
    (process,) = by_name(spans, "process otel.add")
    assert child_of(process, ok)
    assert refused.status.status_code is StatusCode.ERROR
    assert [e.name for e in refused.events] == ["exception"]
    assert FlowrraInstrumentor().middleware.open_submits == 0  # type: ignore[union-attr]


async def test_uninstrument_stops_every_span_and_header(tracing: Tracing) -> None:
    app = Flowrra()
    tasks = register(app, tracing.tracer)
    tracing.instrumentor.uninstrument()
    assert FlowrraInstrumentor().middleware is None
    assert not any(isinstance(m, OpenTelemetryMiddleware) for m in flowrra.middleware.installed())
    async with app:
        task_id = await app.submit(tasks["flaky"])
        result = await app.wait_for_result(task_id, timeout=10)
    assert result.result == 2 and not result.headers
    assert [s.name for s in tracing.spans()] == []
    # And again: instrumenting anew traces the apps that exist already.
    tracing.instrumentor.instrument(tracer_provider=tracing.provider)
    async with app:
        await app.wait_for_result(await app.submit(tasks["add"], 1, 1), timeout=10)
    assert {s.name for s in tracing.spans()} == {
        "send otel.add",
        "process otel.add",
        "add inside the task",
    }


async def test_a_bad_trace_context_does_not_lose_the_task(tracing: Tracing) -> None:
    """One app's own middleware (not the instrumentor), followed by one that garbles the
    trace context: the worker starts a new trace and runs the task."""
    tracing.instrumentor.uninstrument()

    class Garble(flowrra.Middleware):
        def before_submit(self, message: Any) -> None:
            message.headers["traceparent"] = "00-garbage"

    app = Flowrra(middleware=[OpenTelemetryMiddleware(tracing.provider), Garble()])
    tasks = register(app, tracing.tracer)
    async with app:
        with tracing.tracer.start_as_current_span("GET /"):
            task_id = await app.submit(tasks["add"], 2, 2)
        assert (await app.wait_for_result(task_id, timeout=10)).result == 4
    (send,) = by_name(tracing.spans(), "send otel.add")
    (process,) = by_name(tracing.spans(), "process otel.add")
    assert process.parent is None and process.context.trace_id != send.context.trace_id


def test_the_entry_point_opentelemetry_instrument_loads() -> None:
    (entry,) = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "flowrra"]
    assert entry.load() is FlowrraInstrumentor
    assert FlowrraInstrumentor().instrumentation_dependencies() == ("flowrra >= 0.2.0",)
    assert FlowrraInstrumentor()._check_dependency_conflicts() is None


async def test_a_tracer_that_raises_loses_no_task(
    tracing: Tracing, caplog: pytest.LogCaptureFixture
) -> None:
    """Every hook failing (a broken tracer): logged by the engine, the task still runs."""
    tracing.instrumentor.uninstrument()

    class Broken(trace_api.Tracer):
        def start_span(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("the exporter's disk is full")

        def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("the exporter's disk is full")

    middleware = OpenTelemetryMiddleware(tracing.provider)
    middleware.tracer = Broken()
    app = Flowrra(middleware=[middleware])
    tasks = register(app, trace_api.NoOpTracer())
    async with app:
        task_id = await app.submit(tasks["flaky"])
        assert (await app.wait_for_result(task_id, timeout=10)).result == 2
    failed = [r for r in caplog.records if r.name == "flowrra.middleware"]
    hooks = {re.findall(r"failed in (\w+);", r.getMessage())[0] for r in failed}
    # Each attempt's before_attempt failed, so there was no span for after_attempt to end.
    assert hooks == {"before_submit", "before_attempt"}
    assert middleware.open_submits == 0
