"""Fixtures of the Redis tests: a real server (``FLOWRRA_TEST_REDIS_URL``, default the local
one, database 9), a fresh key prefix per test, and worker processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flowrra_redis import RedisBackend, RedisBroker
from redis.backoff import NoBackoff
from redis.retry import Retry

from flowrra import Flowrra
from flowrra.testing import SECRET

sys.path.insert(0, str(Path(__file__).parent / "apps"))
from local_servers import LocalCluster, LocalSentinel, sync_client

REDIS_URL = os.environ.get("FLOWRRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
APPS = Path(__file__).parent / "apps"


def _unavailable(message: str) -> None:
    """Skip the test, or fail it under ``FLOWRRA_REQUIRE_SERVICES=1``."""
    if os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.ConnectionError as exc:
        _unavailable(f"Redis at {REDIS_URL} is unreachable: {exc}")
    return REDIS_URL


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A Redis Cluster of the test run's own: three masters, three replicas, on free
    ports (``apps/local_servers.py``). Tests that fail it over leave it working."""
    try:
        cluster = LocalCluster(tmp_path_factory.mktemp("cluster"))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        _unavailable(f"cannot start a local Redis Cluster: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_sentinel(tmp_path: Path) -> Iterator[LocalSentinel]:
    """A master, its replica and three sentinels of the test's own."""
    try:
        sentinel = LocalSentinel(tmp_path)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        _unavailable(f"cannot start a local Redis Sentinel: {exc}")
    yield sentinel
    sentinel.stop()


@pytest.fixture(scope="session", params=["single", "cluster"])
def any_redis_url(request: pytest.FixtureRequest) -> str:
    """The shared server's URL, then the local cluster's: a module whose ``redis_url``
    returns this runs each of its tests on both."""
    if request.param == "single":
        return str(request.getfixturevalue("redis_url"))
    return str(request.getfixturevalue("redis_cluster").url)


@pytest.fixture
def unreachable_url() -> str:
    """A Redis URL with a password (:data:`flowrra.testing.SECRET`) for a port of this
    machine that nothing listens on: every connection is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://flowrra:{SECRET}@127.0.0.1:{port}/3"


class RedisServers:
    """redis-server processes of a test's own (for what must not be done to the shared
    server: an eviction policy, a restart, a stall), each on a free port, in the test's
    temporary directory, with nothing saved unless asked (``SAVE``)."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, *options: str, port: int | None = None) -> str:
        """Start one (on ``port``, or a free one) and return its URL once it accepts
        commands, or answers ``LOADING`` (still reading its data set)."""
        if port is None:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        proc = subprocess.Popen(
            [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs[port] = proc
        client = redis.Redis(port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except (redis.BusyLoadingError, redis.AuthenticationError):
                break  # loading, or up and asking for a password (--requirepass)
            except redis.ConnectionError:
                assert proc.poll() is None, "redis-server exited"
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        client.close()
        return f"redis://127.0.0.1:{port}/0"

    def pause(self, url: str) -> None:
        """SIGSTOP the server at ``url``: it accepts connections, and answers nothing."""
        self.procs[_port(url)].send_signal(signal.SIGSTOP)

    def resume(self, url: str) -> None:
        """SIGCONT the server at ``url``: it runs what it was sent meanwhile."""
        self.procs[_port(url)].send_signal(signal.SIGCONT)

    def kill(self, url: str) -> None:
        """SIGKILL the server at ``url`` (what it did not ``SAVE`` is lost)."""
        proc = self.procs.pop(_port(url))
        proc.kill()
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()
        self.procs.clear()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServers]:
    """Start redis-server processes of the test's own; all are killed at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    servers = RedisServers(binary, tmp_path)
    yield servers
    servers.stop_all()


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = sync_client(redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix(sync_redis: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    yield name
    for pattern in (f"{{{name}}}*", f"{name}:*", f"{{{name}:s*"):  # shards: {name:s1}
        keys = list(sync_redis.scan_iter(match=pattern, count=1000))
        if keys:
            sync_redis.delete(*keys)


@pytest.fixture
def make_app(redis_url: str, prefix: str) -> Callable[..., Flowrra]:
    def build(lease_seconds: float = 30.0) -> Flowrra:
        return Flowrra(
            broker=RedisBroker(redis_url, prefix=prefix, lease_seconds=lease_seconds),
            backend=RedisBackend(redis_url, prefix=prefix),
        )

    return build


@pytest.fixture
async def producer(make_app: Callable[..., Flowrra]) -> AsyncIterator[Flowrra]:
    """An app that submits and waits but runs nothing (it is never started)."""
    app = make_app()
    from apps import redis_app  # the same task names as the workers

    for handle in redis_app.app.registry:
        app.registry.register(handle)
    async with app.producer():
        yield app
    assert not app.is_running  # it never ran anything itself


class Workers:
    """Starts ``flowrra worker redis_app:app`` processes (or another app of ``apps/``) and
    stops them at the end."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.env = {
            **os.environ,
            "FLOWRRA_TEST_REDIS_URL": redis_url,
            "FLOWRRA_TEST_PREFIX": prefix,
            # The caller's PYTHONPATH after the apps: workers run the code under test
            # (a worktree's sources), not whatever the environment installed.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(APPS), os.environ.get("PYTHONPATH")])),
        }
        self.procs: list[subprocess.Popen[str]] = []
        self._logs: dict[int, Any] = {}

    def start(
        self,
        *extra: str,
        lease: float = 30.0,
        url: str | None = None,
        app: str = "redis_app:app",
    ) -> subprocess.Popen[str]:
        env = {**self.env, "FLOWRRA_TEST_LEASE": str(lease)}
        if url is not None:
            env["FLOWRRA_TEST_REDIS_URL"] = url
        # Into a file, not a pipe: a worker logs a line per task at INFO, and a pipe nobody
        # reads until the end fills up and blocks it.
        log = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (closed with the pool)
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowrra", "worker", app, *extra],
            cwd=APPS,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.procs.append(proc)
        self._logs[proc.pid] = log
        return proc

    def output(self, proc: subprocess.Popen[str]) -> str:
        """What ``proc`` has written so far (stdout and stderr)."""
        log = self._logs[proc.pid]
        log.seek(0)
        return log.read()  # type: ignore[no-any-return]

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                # Said, not hidden: a test reading the worker's last line then shows why.
                print(f"worker {proc.pid} had not stopped 30 s after SIGTERM: killed")
                proc.kill()
                proc.wait()

    def close(self) -> None:
        self.stop_all()
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
