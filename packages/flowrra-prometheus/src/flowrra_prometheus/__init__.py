"""flowrra-prometheus: Prometheus metrics of Flowrra tasks, as middleware.

::

    $ flowrra worker tasks:app --metrics-port 9464     # serves http://0.0.0.0:9464/metrics

or, in code::

    from flowrra_prometheus import PrometheusMiddleware, serve

    app.add_middleware(PrometheusMiddleware())   # producers count what they submit
    serve(app, 9464)                             # a worker that embeds its own server

The metrics (``namespace`` ``flowrra``), labelled by ``task_name``:

- ``flowrra_tasks_submitted_total``, ``flowrra_tasks_succeeded_total``,
  ``flowrra_tasks_failed_total`` (for good), ``flowrra_tasks_retried_total`` (attempts that
  failed and were retried), ``flowrra_tasks_dead_lettered_total`` (counters);
- ``flowrra_task_duration_seconds`` (each attempt's run time) and
  ``flowrra_task_queue_wait_seconds`` (from when the attempt was due, its submission or its
  eta, to its start) (histograms);
- ``flowrra_tasks_in_flight`` (attempts running) and ``flowrra_queue_depth`` (by ``state``
  instead: the broker's queued, delayed, leased and dead messages, sampled while the worker
  runs) (gauges).

With ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus-client's multi-process mode is used:
every worker process writes its values there, and :func:`serve` serves their sum.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from flowrra_prometheus._version import __version__
from flowrra_prometheus.middleware import (
    DURATION_BUCKETS,
    WAIT_BUCKETS,
    PrometheusMiddleware,
    multiprocess_dir,
)

__all__ = [
    "DURATION_BUCKETS",
    "WAIT_BUCKETS",
    "PrometheusMiddleware",
    "__version__",
    "metrics_middleware",
    "multiprocess_dir",
    "multiprocess_registry",
    "serve",
]


def metrics_middleware(app: Any) -> PrometheusMiddleware:
    """``app``'s :class:`PrometheusMiddleware` (the first, if it has several); one with the
    defaults is added if it has none."""
    for middleware in app.middleware.middleware:
        if isinstance(middleware, PrometheusMiddleware):
            return middleware
    middleware = PrometheusMiddleware()
    app.add_middleware(middleware)
    return middleware


def multiprocess_registry(path: str | None = None) -> CollectorRegistry:
    """A registry that collects the values of every process writing to ``path`` (default
    ``PROMETHEUS_MULTIPROC_DIR``): what a multi-process deployment serves."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    return registry


def serve(app: Any, port: int, host: str = "0.0.0.0") -> tuple[Any, Any]:
    """Serve ``app``'s metrics on ``http://host:port/metrics`` from a daemon thread,
    adding a :class:`PrometheusMiddleware` to ``app`` if it has none (call it before the
    worker starts). In multi-process mode (``PROMETHEUS_MULTIPROC_DIR``) it serves every
    process's values, summed. Returns prometheus-client's ``(server, thread)``: call
    ``server.shutdown()`` to stop it."""
    middleware = metrics_middleware(app)
    registry = multiprocess_registry() if multiprocess_dir() is not None else middleware.registry
    server, thread = start_http_server(port, host, registry)
    return server, thread
