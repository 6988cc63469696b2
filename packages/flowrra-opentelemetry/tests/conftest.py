"""Fixtures of the OpenTelemetry tests: the producer's tracing (an SDK provider with an
in-memory exporter, instrumented for the test and uninstrumented after), a real Redis
(``FLOWRRA_TEST_REDIS_URL``, default the local one, database 9) with a key prefix of the
test's own, and ``flowrra worker otel_app:app`` processes that write their spans to a file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flowrra_opentelemetry import FlowrraInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

REDIS_URL = os.environ.get("FLOWRRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
WORKER_APP = Path(__file__).parent / "otel_worker"


def pytest_configure(config: pytest.Config) -> None:
    sys.path.insert(0, str(WORKER_APP))  # otel_tasks, for the producer's registry


class Tracing:
    """The test process's tracing: ``tracer`` makes the "web request" spans, ``spans()``
    is what was exported."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("the web application")
        self.instrumentor = FlowrraInstrumentor()

    def spans(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    """The producer's tracing, instrumented (``instrument(tracer_provider=...)``)."""
    setup = Tracing()
    setup.instrumentor.instrument(tracer_provider=setup.provider)
    yield setup
    if setup.instrumentor.is_instrumented_by_opentelemetry:
        setup.instrumentor.uninstrument()


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.ConnectionError as exc:
        message = f"Redis at {REDIS_URL} is unreachable: {exc}"
        if os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return REDIS_URL


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"t-otel-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    for pattern in (f"{{{name}}}*", f"{name}:*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    client.close()


class Worker:
    """A ``flowrra worker otel_app:app`` process (``auto``: run under
    ``opentelemetry-instrument`` instead of instrumenting itself), its spans in a file."""

    def __init__(self, redis_url: str, prefix: str, directory: Path, auto: bool) -> None:
        self.spans_path = directory / "spans.jsonl"
        self.spans_path.touch()
        env = {
            **os.environ,
            "FLOWRRA_TEST_REDIS_URL": redis_url,
            "FLOWRRA_TEST_PREFIX": prefix,
            "FLOWRRA_TEST_SPANS": str(self.spans_path),
            "PYTHONPATH": str(WORKER_APP),
        }
        command = [sys.executable, "-m", "flowrra", "worker", "otel_app:app"]
        if auto:
            env["FLOWRRA_TEST_AUTO"] = "1"
            script = Path(sys.executable).with_name("opentelemetry-instrument")
            command = [
                str(script)
                if script.exists()
                else shutil.which("opentelemetry-instrument") or "opentelemetry-instrument",
                *command,
            ]
        # Into a file, not a pipe that nobody reads until the end.
        self.log = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            command, cwd=WORKER_APP, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()  # type: ignore[no-any-return]

    def spans(self) -> list[dict[str, Any]]:
        text = self.spans_path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def wait_for_spans(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """The worker's spans once ``done(spans)`` (a hang guard, not a timing check)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if done(spans):
                return spans
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"the worker's spans never arrived: {spans}\n--- worker output ---\n"
                    + self.output()
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def start_worker(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(auto: bool = False) -> Worker:
        worker = Worker(redis_url, prefix, tmp_path, auto)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
