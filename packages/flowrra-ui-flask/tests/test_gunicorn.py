"""The extension for real: gunicorn (threads) serving plain ``def`` views that submit with
``task.delay()`` and wait with ``wait_for_result_sync()``, a ``flask flowrra worker``
process running the tasks in the Flask app context, ``flask flowrra status``, and the
UI's event stream through gunicorn, all on Redis."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flowrra_ui.testing import frame_events

SERVED = Path(__file__).parent / "served"
REDIS_URL = os.environ.get("FLOWRRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
FLASK = str(Path(sys.executable).with_name("flask"))


def _no_control_socket() -> list[str]:
    """gunicorn 24+ opens a control socket at ~/.gunicorn/gunicorn.ctl, one path for every
    server of the user: servers running side by side (tests) must not share it."""
    from gunicorn import config  # type: ignore[import-untyped,unused-ignore]

    names = {setting.name for setting in config.KNOWN_SETTINGS}
    return ["--no-control-socket"] if "control_socket_disable" in names else []


@pytest.fixture(scope="module")
def redis_prefix() -> Iterator[str]:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.ConnectionError as exc:
        if os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis at {REDIS_URL} is unreachable: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable: {exc}")
    prefix = f"flowrra-flask-{uuid.uuid4().hex[:8]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def env(redis_prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "FLASK_TEST_REDIS_URL": f"{REDIS_URL}?prefix={redis_prefix}",
        "FLASK_APP": "flask_ext_app",
        "PYTHONPATH": os.pathsep.join([str(SERVED), os.environ.get("PYTHONPATH", "")]),
    }


@pytest.fixture(scope="module")
def server(env: dict[str, str]) -> Iterator[str]:
    """gunicorn with threads serving flask_ext_app, and `flask flowrra worker`."""
    port = _free_port()
    worker = subprocess.Popen([FLASK, "flowrra", "worker", "--grace", "5"], cwd=SERVED, env=env)
    web = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "flask_ext_app:web", "-b", f"127.0.0.1:{port}"),
            *("--worker-class", "gthread", "--threads", "8", "--graceful-timeout", "2"),
            *_no_control_socket(),
        ],
        cwd=SERVED,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert web.poll() is None and worker.poll() is None, "gunicorn or the worker exited"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            assert time.monotonic() < deadline, "gunicorn does not listen"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(web)
        _stop(worker)
    assert worker.returncode == 0  # drained on SIGTERM


def _call(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=30) as r:
        return json.loads(r.read())


def test_views_submit_with_delay_and_tasks_run_in_the_app_context(server: str) -> None:
    assert _call(f"{server}/extension") == {"same": True}
    task_id = _call(f"{server}/greet/async", {"name": "Ada"})["task_id"]
    assert _call(f"{server}/result/{task_id}") == {
        "status": "success",
        "result": {"greeting": "hello from the app context, Ada", "app": "flask_ext_app"},
    }
    for _ in range(3):  # each request on another gunicorn thread, one loop for them all
        task_id = _call(f"{server}/greet/thread", {"name": "Grace"})["task_id"]
        assert _call(f"{server}/result/{task_id}") == {
            "status": "success",
            "result": {
                "greeting": "hello from the app context, Grace",
                "in_thread": True,
                "g_is_fresh": True,
            },
        }


def test_flask_flowrra_status(server: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        [FLASK, "flowrra", "status", "--json"],
        cwd=SERVED,
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    status = json.loads(done.stdout)
    assert len(status["workers"]) == 1 and "queues" in status


def test_flask_flowrra_help_lists_the_commands(env: dict[str, str]) -> None:
    done = subprocess.run(
        [FLASK, "flowrra", "--help"], cwd=SERVED, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0
    for command in ("worker", "scheduler", "status", "dead-letters"):
        assert command in done.stdout.decode()


def test_live_events_stream_through_gunicorn(server: str) -> None:
    with urllib.request.urlopen(f"{server}/flowrra/events", timeout=30) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.readline() == b'data: {"type": "ready"}\n'
        assert stream.readline() == b"\n"
        task_id = _call(f"{server}/greet/async", {"name": "Lin"})["task_id"]
        seen = []
        while "success" not in seen:
            line = stream.readline()
            if line.startswith(b"data: "):
                for event in frame_events(json.loads(line[len(b"data: ") :])):
                    assert event["task_id"] == task_id
                    seen.append(event["status"])
    assert seen == ["pending", "running", "success"]
