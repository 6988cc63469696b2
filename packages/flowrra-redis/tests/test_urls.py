"""Redis URLs as users write them: ``unix://`` sockets against a real ``redis-server`` of
the test's own (with ``?db=`` and ``?prefix=``), and the URL handed to redis-py keeping
every part but Flowrra's own parameters."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from apps import redis_app
from flowrra_redis import RedisBackend, RedisBroker
from flowrra_redis.connection import _without_flowrra_params

from flowrra import Flowrra, TaskStatus


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("unix:///run/redis.sock?db=1", "unix:///run/redis.sock?db=1"),
        ("unix:///run/redis.sock?db=1&prefix=shop", "unix:///run/redis.sock?db=1"),
        ("unix:///run/redis.sock?prefix=shop", "unix:///run/redis.sock"),
        (
            "unix://user:s3cret@/run/redis.sock?prefix=shop&db=2&password=p%26w",
            "unix://user:s3cret@/run/redis.sock?db=2&password=p%26w",
        ),
        ("redis://u:p@h:1/2?prefix=a&ssl_cert_reqs=none", "redis://u:p@h:1/2?ssl_cert_reqs=none"),
        ("rediss://h:6380/0?prefix=a", "rediss://h:6380/0"),
        ("redis://h:1/0?prefixes=kept&prefix=a", "redis://h:1/0?prefixes=kept"),
        ("redis://h:1/0#frag?prefix=kept", "redis://h:1/0#frag?prefix=kept"),
    ],
)
def test_only_flowrras_own_parameters_leave_the_url(url: str, expected: str) -> None:
    assert _without_flowrra_params(url) == expected


@pytest.fixture
def unix_redis() -> Iterator[str]:
    """A redis-server of this test's own listening on a unix socket only (no TCP port);
    its socket path (kept short: sockets allow about 100 bytes)."""
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1":
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    folder = Path(tempfile.mkdtemp(prefix="flowrra-redis-"))
    sock = folder / "redis.sock"
    args = [server, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, cwd=folder, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                _ping(sock)
                break
            except OSError:
                assert proc.poll() is None, "redis-server on a unix socket exited"
                assert time.monotonic() < deadline, "redis-server on a unix socket did not start"
                time.sleep(0.05)
        yield str(sock)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _ping(sock: Path) -> None:
    """PING over a plain socket: redis-py 8.0's sync client cannot open a unix socket (it
    asks a unix connection for its host; the asyncio one, which Flowrra uses, can)."""
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(1)
        probe.connect(str(sock))
        probe.sendall(b"PING\r\n")
        assert probe.recv(16) == b"+PONG\r\n"


async def _keys(sock: str, db: int) -> set[str]:
    client = aioredis.Redis(unix_socket_path=sock, db=db)
    try:
        return {key.decode() async for key in client.scan_iter(count=1000)}
    finally:
        await client.aclose()


async def test_unix_socket_url_in_process(unix_redis: str) -> None:
    url = f"unix://{unix_redis}?db=1&prefix=shop"
    app = Flowrra.from_urls(broker=url, backend=url)
    assert isinstance(app.broker, RedisBroker) and isinstance(app.backend, RedisBackend)

    @app.task()
    async def add(a: int, b: int) -> int:
        return a + b

    async with app:
        task_id = await app.submit(add, 2, 3)
        result = await app.wait_for_result(task_id, timeout=30)
    await app.close()
    assert result.status is TaskStatus.SUCCESS and result.result == 5
    in_db1 = await _keys(unix_redis, 1)
    assert f"{{shop}}:result:{task_id}" in in_db1
    assert all(key.startswith("{shop}:") for key in in_db1)
    assert await _keys(unix_redis, 0) == set()


async def test_unix_socket_url_with_a_worker_process(
    unix_redis: str, workers: Any, prefix: str
) -> None:
    url = f"unix://{unix_redis}?db=1"
    # The worker (redis_app) takes its prefix from the environment, this app from the URL.
    producer = Flowrra.from_urls(broker=f"{url}&prefix={prefix}", backend=f"{url}&prefix={prefix}")
    for handle in redis_app.app.registry:
        producer.registry.register(handle)
    try:
        workers.start("-c", "2", url=url)
        async with producer.producer():
            task_id = await producer.submit(redis_app.record, 7)
            result = await producer.wait_for_result(task_id, timeout=60)
    finally:
        workers.stop_all()
    assert result.status is TaskStatus.SUCCESS and result.result == 7
    in_db1 = await _keys(unix_redis, 1)
    assert f"{{{prefix}}}:result:{task_id}" in in_db1
    assert f"{prefix}:ran" in in_db1  # written by the worker's own client, on the same URL
    assert await _keys(unix_redis, 0) == set()
