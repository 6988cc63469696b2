"""The middleware in process: the in-memory broker, a private registry."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest
from conftest import free_port, parse, value
from flowrra_prometheus import PrometheusMiddleware, metrics_middleware, serve
from prometheus_client import CollectorRegistry, generate_latest

from flowrra import Flowrra, Retry, TaskStatus
from flowrra.context import TaskContext
from flowrra.task import TaskMessage, TaskResult

pytestmark = pytest.mark.timeout(60)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_counts_histograms_and_gauges_of_an_embedded_app() -> None:
    registry = CollectorRegistry()
    app = Flowrra()
    metrics = app.add_middleware(PrometheusMiddleware(registry=registry))
    runs: dict[str, int] = {}

    @app.task()
    async def ok(n: int) -> int:
        return n

    @app.task(max_retries=0)
    async def boom() -> None:
        raise ValueError("boom")

    @app.task(max_retries=2)
    async def asks_again(label: str) -> int:
        runs[label] = runs.get(label, 0) + 1
        if runs[label] < 3:
            raise Retry(delay=0.01)
        return runs[label]

    # Queued before the worker starts: the gauge reads them from the broker.
    for i in range(4):
        await ok.submit(i)
    assert await metrics.sample_queue_depth(app) == {"queued": 4}
    assert sample(registry, "flowrra_queue_depth", state="queued") == 4
    assert sample(registry, "flowrra_tasks_submitted_total", task_name="ok") == 4

    async with app:
        ids = [await boom.submit(), await asks_again.submit("x")]
        await app.join(timeout=30)
        results = [await app.wait_for_result(i, timeout=30) for i in ids]
        assert [r.status for r in results] == [TaskStatus.FAILED, TaskStatus.SUCCESS]
        await metrics.sample_queue_depth(app)

    assert sample(registry, "flowrra_queue_depth", state="queued") == 0
    assert sample(registry, "flowrra_tasks_succeeded_total", task_name="ok") == 4
    assert sample(registry, "flowrra_tasks_failed_total", task_name="boom") == 1
    assert sample(registry, "flowrra_tasks_retried_total", task_name="asks_again") == 2
    assert sample(registry, "flowrra_tasks_succeeded_total", task_name="asks_again") == 1
    assert sample(registry, "flowrra_tasks_failed_total", task_name="asks_again") == 0
    assert sample(registry, "flowrra_task_duration_seconds_count", task_name="asks_again") == 3
    assert sample(registry, "flowrra_task_queue_wait_seconds_count", task_name="ok") == 4
    for name in ("ok", "boom", "asks_again"):
        assert sample(registry, "flowrra_tasks_in_flight", task_name=name) == 0
    assert metrics._samplers == {}  # the sampler stopped with the worker

    # The same, as Prometheus text (what /metrics serves).
    text = generate_latest(registry).decode()
    assert value(parse(text), "flowrra_tasks_failed_total", task_name="boom") == 1


def _context(*, submitted: float, eta: float | None, started: float) -> TaskContext:
    message = TaskMessage("id", "job", eta=eta, submitted_at=submitted)
    return TaskContext(message, None, started)


def test_queue_wait_runs_from_the_submit_or_the_eta_if_later() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMiddleware(registry=registry)
    metrics.before_attempt(_context(submitted=100.0, eta=None, started=102.5))
    assert sample(registry, "flowrra_task_queue_wait_seconds_sum", task_name="job") == 2.5
    metrics.before_attempt(_context(submitted=100.0, eta=150.0, started=151.0))  # a retry
    assert sample(registry, "flowrra_task_queue_wait_seconds_sum", task_name="job") == 3.5
    metrics.before_attempt(_context(submitted=100.0, eta=50.0, started=101.0))  # eta passed
    assert sample(registry, "flowrra_task_queue_wait_seconds_sum", task_name="job") == 4.5
    metrics.before_attempt(_context(submitted=100.0, eta=None, started=99.0))  # clock skew
    assert sample(registry, "flowrra_task_queue_wait_seconds_sum", task_name="job") == 4.5
    assert sample(registry, "flowrra_tasks_in_flight", task_name="job") == 4


def test_dead_letters_are_counted_by_message_name() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMiddleware(registry=registry)
    metrics.on_dead_letter(TaskMessage("id", "gone"), "not registered")
    metrics.on_dead_letter(TaskMessage("", ""), "undecodable")
    assert sample(registry, "flowrra_tasks_dead_lettered_total", task_name="gone") == 1
    assert sample(registry, "flowrra_tasks_dead_lettered_total", task_name="") == 1


def test_a_failed_attempt_record_counts_as_failed() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMiddleware(registry=registry)
    context = _context(submitted=1.0, eta=None, started=2.0)
    failed = TaskResult.failed(context.message, "E: x", started=2.0, finished=3.0)
    metrics.before_attempt(context)
    metrics.after_attempt(context, failed, RuntimeError("x"))
    assert sample(registry, "flowrra_tasks_failed_total", task_name="job") == 1
    assert sample(registry, "flowrra_tasks_in_flight", task_name="job") == 0


def test_an_attempt_interrupted_by_the_stop_is_no_outcome() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMiddleware(registry=registry)
    context = _context(submitted=1.0, eta=None, started=2.0)
    running = TaskResult.running(context.message, started=2.0)
    metrics.before_attempt(context)
    metrics.after_attempt(context, running, asyncio.CancelledError())
    assert sample(registry, "flowrra_tasks_in_flight", task_name="job") == 0
    for name in ("succeeded", "failed", "retried"):
        assert sample(registry, f"flowrra_tasks_{name}_total", task_name="job") == 0
    assert sample(registry, "flowrra_task_duration_seconds_count", task_name="job") == 0


def test_middleware_of_one_registry_share_its_metrics() -> None:
    registry = CollectorRegistry()
    first = PrometheusMiddleware(registry=registry)
    second = PrometheusMiddleware(registry=registry)
    assert first.metrics is second.metrics
    other = PrometheusMiddleware(registry=registry, namespace="jobs")
    assert other.metrics is not first.metrics
    other.on_dead_letter(TaskMessage("id", "x"), "r")
    assert sample(registry, "jobs_tasks_dead_lettered_total", task_name="x") == 1
    with pytest.raises(ValueError, match="other buckets"):
        PrometheusMiddleware(registry=registry, duration_buckets=(1.0, float("inf")))
    with pytest.raises(ValueError, match="queue_depth_interval"):
        PrometheusMiddleware(registry=registry, queue_depth_interval=0)


async def test_serve_adds_the_middleware_once_and_serves_its_registry() -> None:
    registry = CollectorRegistry()
    app = Flowrra()
    metrics = app.add_middleware(PrometheusMiddleware(registry=registry))
    assert metrics_middleware(app) is metrics  # not a second one

    @app.task()
    async def ok() -> None:
        return None

    port = free_port()
    server, _thread = serve(app, port, "127.0.0.1")
    try:
        async with app:
            await app.wait_for_result(await ok.submit(), timeout=30)
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert response.status_code == 200
        samples = parse(response.text)
        assert value(samples, "flowrra_tasks_succeeded_total", task_name="ok") == 1
        assert value(samples, "flowrra_tasks_submitted_total", task_name="ok") == 1
    finally:
        server.shutdown()
        server.server_close()
    assert len(app.middleware) == 1


# -- the command line ----------------------------------------------------------------------

BLOCKED = """
import sys
from importlib.abc import MetaPathFinder

class NoPrometheus(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "flowrra_prometheus" or name.startswith("flowrra_prometheus."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoPrometheus())
from flowrra.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _flowrra(*argv: str, code: str = BLOCKED) -> subprocess.CompletedProcess[str]:
    from conftest import APPS

    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        cwd=APPS,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_metrics_port_without_the_package_says_what_to_install() -> None:
    done = _flowrra("worker", "memory_app:app", "--metrics-port", str(free_port()))
    assert done.returncode == 2, done
    assert "pip install flowrra[prometheus]" in done.stderr
    assert "Traceback" not in done.stderr
    assert "worker ready" not in done.stderr + done.stdout  # it never started


def test_the_core_command_does_not_import_prometheus() -> None:
    code = (
        "import sys, flowrra, flowrra.cli\n"
        "flowrra.cli.build_parser()\n"
        "assert 'flowrra_prometheus' not in sys.modules\n"
        "assert 'prometheus_client' not in sys.modules\n"
    )
    done = _flowrra(code=code)
    assert done.returncode == 0, done.stderr


def test_a_metrics_port_in_use_is_a_clear_error() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _flowrra(
            "worker",
            "memory_app:app",
            "--metrics-port",
            str(port),
            "--metrics-host",
            "127.0.0.1",
            code="import sys; from flowrra.cli import main; sys.exit(main(sys.argv[1:]))",
        )
    assert done.returncode == 2, done
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
