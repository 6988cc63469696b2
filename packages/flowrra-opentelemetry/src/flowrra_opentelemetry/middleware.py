"""The middleware that traces Flowrra tasks: a PRODUCER span per submit, a CONSUMER span per
attempt, the trace context carried in the task's headers between them."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import SpanKind, Status, StatusCode

import flowrra
from flowrra_opentelemetry._version import __version__

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

    from flowrra.context import TaskContext
    from flowrra.task import TaskMessage, TaskResult

__all__ = ["OpenTelemetryMiddleware"]

#: The semantic conventions followed (messaging spans, ``messaging.operation.type``).
SCHEMA_URL = "https://opentelemetry.io/schemas/1.27.0"

# Attribute names (opentelemetry.semconv's messaging attributes, spelled out: the incubating
# module they live in is not a stable import).
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_OPERATION = "messaging.operation"  # deprecated name, still read by many backends
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_MESSAGE_ID = "messaging.message.id"
MESSAGING_DESTINATION_NAME = "messaging.destination.name"
ERROR_TYPE = "error.type"
TASK_NAME = "flowrra.task.name"
TASK_ATTEMPT = "flowrra.task.attempt"
TASK_PRIORITY = "flowrra.task.priority"
TASK_STATUS = "flowrra.task.status"
TASK_RETRY_DELAY = "flowrra.task.retry_delay"

SYSTEM = "flowrra"
#: At most this many producer spans are held between ``before_submit`` and ``after_submit``
#: (a submit that fails before its ``after_submit`` would otherwise hold its span forever);
#: beyond it the oldest is dropped, unended.
MAX_OPEN_SUBMITS = 100_000
#: Where an attempt's span and context token are kept in ``TaskContext.state``.
_STATE_KEY = "flowrra_opentelemetry"


class HeadersSetter(Setter[MutableMapping[str, str]]):
    """Writes propagation fields into a message's headers (text to text)."""

    def set(self, carrier: MutableMapping[str, str], key: str, value: str) -> None:
        carrier[key] = value


class HeadersGetter(Getter[Mapping[str, str]]):
    """Reads propagation fields from a task's headers."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


headers_setter = HeadersSetter()
headers_getter = HeadersGetter()


def _error_type(exception: BaseException) -> str:
    cls = type(exception)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


class OpenTelemetryMiddleware(flowrra.Middleware):
    """Traces submits and attempts. Usually installed in every app of the process by
    :class:`~flowrra_opentelemetry.FlowrraInstrumentor`; add it to one app with
    ``app.add_middleware(OpenTelemetryMiddleware())``.

    ``tracer_provider``: the provider to get the tracer from (default: the global one).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer(
            "flowrra_opentelemetry", __version__, tracer_provider, schema_url=SCHEMA_URL
        )
        #: Producer spans between ``before_submit`` and ``after_submit``, by task id.
        self._producing: dict[str, Span] = {}

    # -- producer side ---------------------------------------------------------------------

    def before_submit(self, message: TaskMessage) -> None:
        name = message.name
        span = self.tracer.start_span(
            f"send {name}",
            kind=SpanKind.PRODUCER,
            attributes={
                MESSAGING_SYSTEM: SYSTEM,
                MESSAGING_OPERATION_TYPE: "send",
                MESSAGING_OPERATION_NAME: "send",
                MESSAGING_OPERATION: "publish",
                MESSAGING_DESTINATION_NAME: name,
                MESSAGING_MESSAGE_ID: message.id,
                TASK_NAME: name,
                TASK_PRIORITY: message.priority,
            },
        )
        producing = self._producing
        if len(producing) >= MAX_OPEN_SUBMITS:
            del producing[next(iter(producing))]
        producing[message.id] = span
        headers = message.headers
        if not isinstance(headers, dict):  # the engine hands over a dict; be sure
            headers = message.headers = dict(headers)
        inject(headers, context=trace.set_span_in_context(span), setter=headers_setter)

    def after_submit(self, message: TaskMessage, exception: BaseException | None) -> None:
        span = self._producing.pop(message.id, None)
        if span is None:
            return
        try:
            if exception is not None and span.is_recording():
                span.record_exception(exception)
                span.set_attribute(ERROR_TYPE, _error_type(exception))
                span.set_status(
                    Status(StatusCode.ERROR, f"{type(exception).__name__}: {exception}")
                )
        finally:
            span.end()

    # -- worker side -----------------------------------------------------------------------

    def before_attempt(self, task: TaskContext) -> None:
        name = task.name
        parent = extract(task.headers, getter=headers_getter)
        span = self.tracer.start_span(
            f"process {name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                MESSAGING_SYSTEM: SYSTEM,
                MESSAGING_OPERATION_TYPE: "process",
                MESSAGING_OPERATION_NAME: "process",
                MESSAGING_OPERATION: "process",
                MESSAGING_DESTINATION_NAME: name,
                MESSAGING_MESSAGE_ID: task.id,
                TASK_NAME: name,
                TASK_ATTEMPT: task.attempt,
                TASK_PRIORITY: task.priority,
            },
        )
        # The task runs in this context: its own spans become the consumer span's children.
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        task.state[_STATE_KEY] = (span, token)

    def on_retry(self, task: TaskContext, exception: BaseException, delay: float) -> None:
        held = task.state.get(_STATE_KEY)
        if held is not None:
            held[0].set_attribute(TASK_RETRY_DELAY, delay)

    def after_attempt(
        self, task: TaskContext, result: TaskResult, exception: BaseException | None
    ) -> None:
        held = task.state.pop(_STATE_KEY, None)
        if held is None:
            return
        span, token = held
        try:
            if span.is_recording():
                span.set_attribute(TASK_STATUS, result.status.value)
                if exception is not None:
                    span.record_exception(exception)
                    span.set_attribute(ERROR_TYPE, _error_type(exception))
                    # A retry the task asked for (raise Retry) is not an error, unless no
                    # retry was left and the task failed with it.
                    if not isinstance(exception, flowrra.Retry) or result.status is (
                        flowrra.TaskStatus.FAILED
                    ):
                        span.set_status(
                            Status(StatusCode.ERROR, f"{type(exception).__name__}: {exception}")
                        )
        finally:
            span.end()
            otel_context.detach(token)

    @property
    def open_submits(self) -> int:
        """How many producer spans are open (submits between their two hooks)."""
        return len(self._producing)
