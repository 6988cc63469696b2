"""The app the cross-process tests run: ``flowrra worker otel_app:app``.

Its Redis server and key prefix come from the environment (``FLOWRRA_TEST_REDIS_URL``,
``FLOWRRA_TEST_PREFIX``). It traces with an SDK ``TracerProvider`` whose exporter writes
each finished span as a JSON line to the file ``FLOWRRA_TEST_SPANS`` names. With
``FLOWRRA_TEST_AUTO=1`` it only sets that provider as the global one and leaves
instrumenting to ``opentelemetry-instrument`` (the entry point).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence

from flowrra_opentelemetry import FlowrraInstrumentor
from flowrra_redis import RedisBackend, RedisBroker
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from otel_tasks import register

from flowrra import Flowrra


class JsonLinesSpanExporter(SpanExporter):
    """Appends each span to ``path`` as one JSON object per line, flushed at once."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(as_dict(span)) + "\n" for span in spans]
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            out.writelines(lines)
        return SpanExportResult.SUCCESS


def as_dict(span: ReadableSpan) -> dict[str, object]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent is not None else None,
        "status": span.status.status_code.name,
        "description": span.status.description,
        "attributes": dict(span.attributes or {}),
        "events": [
            {"name": event.name, "attributes": dict(event.attributes or {})}
            for event in span.events
        ],
    }


provider = TracerProvider(resource=Resource.create({"service.name": "flowrra-test-worker"}))
provider.add_span_processor(
    SimpleSpanProcessor(JsonLinesSpanExporter(os.environ["FLOWRRA_TEST_SPANS"]))
)
if os.environ.get("FLOWRRA_TEST_AUTO") == "1":
    trace.set_tracer_provider(provider)  # opentelemetry-instrument instrumented flowrra
else:
    FlowrraInstrumentor().instrument(tracer_provider=provider)

URL = os.environ["FLOWRRA_TEST_REDIS_URL"]
PREFIX = os.environ["FLOWRRA_TEST_PREFIX"]
app = Flowrra(broker=RedisBroker(URL, prefix=PREFIX), backend=RedisBackend(URL, prefix=PREFIX))
tasks = register(app, provider.get_tracer("otel_tasks"))
