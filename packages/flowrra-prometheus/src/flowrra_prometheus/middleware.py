"""The middleware that keeps the metrics (see the package docs for the list)."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from flowrra.middleware import Middleware
from flowrra.monitor import Monitor
from flowrra.task import TaskStatus

if TYPE_CHECKING:
    from flowrra.context import TaskContext
    from flowrra.task import TaskMessage, TaskResult

__all__ = [
    "DURATION_BUCKETS",
    "WAIT_BUCKETS",
    "PrometheusMiddleware",
    "multiprocess_dir",
]

logger = logging.getLogger("flowrra.prometheus")

#: Task run time buckets, in seconds: from 5 ms to 10 minutes.
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    float("inf"),
)
#: Queue wait buckets, in seconds: from 5 ms to an hour.
WAIT_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    float("inf"),
)

_SUCCESS = TaskStatus.SUCCESS
_RETRYING = TaskStatus.RETRYING
_RUNNING = TaskStatus.RUNNING
_now = time.time


def multiprocess_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR`` if it is set (prometheus-client's multi-process mode),
    else ``None``."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _PerTask(NamedTuple):
    """One task name's children of every metric (``labels()`` once per name, not per
    attempt)."""

    submitted: Any
    succeeded: Any
    failed: Any
    retried: Any
    duration: Any
    wait: Any
    in_flight: Any


class _Metrics:
    """The metric objects of one (registry, namespace): made once, shared by every
    :class:`PrometheusMiddleware` of that pair (a registry refuses a name twice)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        namespace: str,
        duration_buckets: Sequence[float],
        wait_buckets: Sequence[float],
    ) -> None:
        self.buckets = (tuple(duration_buckets), tuple(wait_buckets))
        ns = namespace
        label = ["task_name"]
        self.submitted = Counter(
            "tasks_submitted", "Tasks submitted (queued).", label, namespace=ns, registry=registry
        )
        self.succeeded = Counter(
            "tasks_succeeded",
            "Task attempts that succeeded.",
            label,
            namespace=ns,
            registry=registry,
        )
        self.failed = Counter(
            "tasks_failed",
            "Tasks that failed for good (no retry left).",
            label,
            namespace=ns,
            registry=registry,
        )
        self.retried = Counter(
            "tasks_retried",
            "Task attempts that failed and were retried.",
            label,
            namespace=ns,
            registry=registry,
        )
        self.dead_lettered = Counter(
            "tasks_dead_lettered",
            "Messages dead-lettered because they could never run.",
            label,
            namespace=ns,
            registry=registry,
        )
        self.duration = Histogram(
            "task_duration_seconds",
            "Run time of each task attempt.",
            label,
            namespace=ns,
            registry=registry,
            buckets=duration_buckets,
        )
        self.wait = Histogram(
            "task_queue_wait_seconds",
            "Time from when an attempt was due (submitted, or its eta) to its start.",
            label,
            namespace=ns,
            registry=registry,
            buckets=wait_buckets,
        )
        # Multi-process mode: the sum over live processes, and the latest sample of any.
        self.in_flight = Gauge(
            "tasks_in_flight",
            "Task attempts running now.",
            label,
            namespace=ns,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.queue_depth = Gauge(
            "queue_depth",
            "Messages in the broker by state (queued, delayed, leased, dead), as last sampled.",
            ["state"],
            namespace=ns,
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.tasks: dict[str, _PerTask] = {}

    def of(self, name: str) -> _PerTask:
        children = self.tasks.get(name)
        if children is None:
            children = self.tasks[name] = _PerTask(
                self.submitted.labels(name),
                self.succeeded.labels(name),
                self.failed.labels(name),
                self.retried.labels(name),
                self.duration.labels(name),
                self.wait.labels(name),
                self.in_flight.labels(name),
            )
        return children


_metrics: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Metrics]] = (
    weakref.WeakKeyDictionary()
)
_marked_at_exit: set[int] = set()


def _mark_dead(pid: int) -> None:
    """At exit (of the process that registered it, not of a forked child): drop this
    process's live gauges from the multi-process directory."""
    if os.getpid() != pid:
        return
    path = multiprocess_dir()
    if path is not None and os.path.isdir(path):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


class PrometheusMiddleware(Middleware):
    """Prometheus metrics of an app's tasks, as middleware::

        app.add_middleware(PrometheusMiddleware())

    ``registry``: where the metrics are registered (default prometheus-client's global
    ``REGISTRY``); ``namespace``: their name prefix. Middleware sharing a registry and a
    namespace share the metrics. ``queue_depth_interval``: seconds between two readings of
    the broker's queue depths, while the app's worker runs.

    When ``PROMETHEUS_MULTIPROC_DIR`` is set, prometheus-client keeps the values in files
    there, and :func:`flowrra_prometheus.serve` serves the sum over every process that
    writes to it; a process that exits cleanly removes its in-flight and queue depth
    gauges from it.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        namespace: str = "flowrra",
        *,
        queue_depth_interval: float = 5.0,
        duration_buckets: Sequence[float] = DURATION_BUCKETS,
        wait_buckets: Sequence[float] = WAIT_BUCKETS,
    ) -> None:
        if queue_depth_interval <= 0:
            raise ValueError(f"queue_depth_interval must be > 0, got {queue_depth_interval}")
        self.registry = registry if registry is not None else REGISTRY
        self.namespace = namespace
        self.queue_depth_interval = queue_depth_interval
        by_namespace = _metrics.setdefault(self.registry, {})
        metrics = by_namespace.get(namespace)
        if metrics is None:
            metrics = by_namespace[namespace] = _Metrics(
                self.registry, namespace, duration_buckets, wait_buckets
            )
        elif metrics.buckets != (tuple(duration_buckets), tuple(wait_buckets)):
            raise ValueError(
                f"the {namespace!r} metrics of this registry already exist with other buckets"
            )
        self.metrics = metrics
        self._samplers: dict[int, asyncio.Task[None]] = {}
        pid = os.getpid()
        if multiprocess_dir() is not None and pid not in _marked_at_exit:
            _marked_at_exit.add(pid)
            atexit.register(_mark_dead, pid)

    def __repr__(self) -> str:
        return f"PrometheusMiddleware(namespace={self.namespace!r})"

    # -- producer side --------------------------------------------------------------------

    def after_submit(self, message: TaskMessage, exception: BaseException | None) -> None:
        if exception is None:
            self.metrics.of(message.name).submitted.inc()

    # -- worker side ----------------------------------------------------------------------

    def before_attempt(self, task: TaskContext) -> None:
        children = self.metrics.of(task.name)
        children.in_flight.inc()
        message = task.message
        due = message.submitted_at
        eta = message.eta
        if eta is not None and eta > due:
            due = eta
        wait = task.started - due
        children.wait.observe(wait if wait > 0.0 else 0.0)

    def after_attempt(
        self, task: TaskContext, result: TaskResult, exception: BaseException | None
    ) -> None:
        children = self.metrics.of(task.name)
        children.in_flight.dec()
        status = result.status
        if status is _RUNNING:
            return  # interrupted by the worker's stop: no outcome, and no full run time
        duration = _now() - task.started
        children.duration.observe(duration if duration > 0.0 else 0.0)
        if status is _SUCCESS:
            children.succeeded.inc()
        elif status is _RETRYING:
            children.retried.inc()
        else:
            children.failed.inc()

    def on_dead_letter(self, message: TaskMessage, reason: str) -> None:
        self.metrics.dead_lettered.labels(message.name).inc()

    # -- queue depth ----------------------------------------------------------------------

    async def sample_queue_depth(self, app: Any) -> dict[str, int]:
        """Read ``app``'s queue depths from its broker (as ``flowrra status`` does) into
        the ``queue_depth`` gauge; returns them."""
        depths = await Monitor(app).queues()
        gauge = self.metrics.queue_depth
        for state, count in depths.items():
            gauge.labels(state).set(count)
        return depths

    async def _sample_forever(self, app: Any) -> None:
        failing = False
        while True:
            try:
                await self.sample_queue_depth(app)
            except Exception as exc:
                if not failing:  # once per streak of failures, not every interval
                    logger.warning("cannot read the queue depths of %r: %s", app.broker, exc)
                failing = True
            else:
                failing = False
            await asyncio.sleep(self.queue_depth_interval)

    def on_worker_start(self, app: Any) -> None:
        key = id(app)
        if key not in self._samplers:
            self._samplers[key] = asyncio.get_running_loop().create_task(
                self._sample_forever(app), name="flowrra-prometheus queue depth"
            )

    async def on_worker_stop(self, app: Any) -> None:
        sampler = self._samplers.pop(id(app), None)
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
