"""OpenTelemetry instrumentation for `Flowrra`_: one trace from the code that submits a task
to each attempt the worker makes of it.

.. _Flowrra: https://github.com/flowrra/flowrra

Usage
-----

.. code:: python

    from opentelemetry.sdk.trace import TracerProvider
    from flowrra_opentelemetry import FlowrraInstrumentor

    FlowrraInstrumentor().instrument(tracer_provider=TracerProvider())

in the producer (the web application) and in the worker's app module, or run either under
``opentelemetry-instrument`` (this instrumentor is registered under the
``opentelemetry_instrumentor`` entry point as ``flowrra``).

What it records
---------------

- ``submit`` (and each task of ``submit_many``): a ``PRODUCER`` span ``send <task name>``,
  a child of the current span; its context is injected into the task's headers (with the
  global propagator: ``traceparent``, ``tracestate``, ``baggage``).
- Each attempt on the worker: a ``CONSUMER`` span ``process <task name>``, a child of the
  producer span, made current while the task runs (the task's own spans are its
  children). An attempt that raises records the exception and, unless the task asked for
  the retry with ``raise flowrra.Retry(...)``, sets the ERROR status.

API
---
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

import flowrra.middleware
from flowrra_opentelemetry._version import __version__
from flowrra_opentelemetry.middleware import (
    HeadersGetter,
    HeadersSetter,
    OpenTelemetryMiddleware,
    headers_getter,
    headers_setter,
)
from flowrra_opentelemetry.package import _instruments

__all__ = [
    "FlowrraInstrumentor",
    "HeadersGetter",
    "HeadersSetter",
    "OpenTelemetryMiddleware",
    "__version__",
    "headers_getter",
    "headers_setter",
]


class FlowrraInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces every Flowrra app of the process, present and future.

    ``instrument(tracer_provider=...)`` installs an :class:`OpenTelemetryMiddleware` with
    :func:`flowrra.middleware.install` (without ``tracer_provider``, the global provider is
    used, as ``opentelemetry-instrument`` does); ``uninstrument()`` removes it.
    """

    _middleware: OpenTelemetryMiddleware | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        self._middleware = OpenTelemetryMiddleware(tracer_provider=kwargs.get("tracer_provider"))
        flowrra.middleware.install(self._middleware)

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._middleware is not None:
            flowrra.middleware.uninstall(self._middleware)
            self._middleware = None

    @property
    def middleware(self) -> OpenTelemetryMiddleware | None:
        """The installed middleware (``None`` when not instrumented)."""
        return self._middleware
