"""Fixtures of the metrics tests: a real Redis (``FLOWRRA_TEST_REDIS_URL``, default the
local one, database 9), a fresh key prefix per test, and ``flowrra worker --metrics-port``
processes with a way to scrape them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from flowrra_redis import RedisBackend, RedisBroker
from prometheus_client.parser import text_string_to_metric_families

from flowrra import Flowrra

REDIS_URL = os.environ.get("FLOWRRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
APPS = Path(__file__).parent / "apps"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Prometheus text as ``{(sample name, sorted labels): value}``."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value, 0 if absent (a counter not yet incremented)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(port: int) -> Samples:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    response.raise_for_status()
    return parse(response.text)


def wait_for(port: int, check: Any, timeout: float = 30.0) -> Samples:
    """Scrape ``port`` until ``check(samples)`` is true (a hang guard, not a timing
    assertion); returns the samples that passed."""
    deadline = time.monotonic() + timeout
    last: Samples | BaseException = {}
    while time.monotonic() < deadline:
        try:
            samples = scrape(port)
        except httpx.HTTPError as exc:
            last = exc
        else:
            last = samples
            if check(samples):
                return samples
        time.sleep(0.1)
    raise AssertionError(f"the scrape never passed the check; last: {last!r}")


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
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix(sync_redis: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    yield name
    for pattern in (f"{{{name}}}*", f"{name}:*"):
        keys = list(sync_redis.scan_iter(match=pattern, count=1000))
        if keys:
            sync_redis.delete(*keys)


@pytest.fixture
async def producer(redis_url: str, prefix: str) -> AsyncIterator[Flowrra]:
    """An app that submits to the workers' queue but runs nothing."""
    app = Flowrra(
        broker=RedisBroker(redis_url, prefix=prefix),
        backend=RedisBackend(redis_url, prefix=prefix),
    )
    from apps import metrics_app  # the same task names as the workers

    for handle in metrics_app.app.registry:
        app.registry.register(handle)
    async with app.producer():
        yield app


class Workers:
    """Starts ``flowrra worker metrics_app:app`` processes and stops them at the end."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.env = {
            **os.environ,
            "FLOWRRA_TEST_REDIS_URL": redis_url,
            "FLOWRRA_TEST_PREFIX": prefix,
            "PYTHONPATH": str(APPS),
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.procs: list[subprocess.Popen[str]] = []
        self._logs: dict[int, Any] = {}

    def start(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        # Into a file, not a pipe, which would fill up and block the worker.
        log = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (closed at the end)
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowrra", "worker", "metrics_app:app", *extra],
            cwd=APPS,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.procs.append(proc)
        self._logs[proc.pid] = log
        return proc

    def output(self, proc: subprocess.Popen[str]) -> str:
        log = self._logs[proc.pid]
        log.seek(0)
        return log.read()  # type: ignore[no-any-return]

    def stop(self, proc: subprocess.Popen[str], timeout: float = 15.0) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def close(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        for log in self._logs.values():
            log.close()


@pytest.fixture
def workers(redis_url: str, prefix: str) -> Iterator[Workers]:
    pool = Workers(redis_url, prefix)
    yield pool
    pool.close()


def pytest_configure(config: pytest.Config) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    os.environ.setdefault("FLOWRRA_TEST_REDIS_URL", REDIS_URL)
    os.environ.setdefault("FLOWRRA_TEST_PREFIX", "t-import")
