"""The test project (``tests/project``) as it runs in production, driven over HTTP: served
over WSGI (``manage.py runserver``, a threaded WSGI server) and ASGI (daphne), with a
``manage.py flowrra worker`` process on Redis, the ORM on PostgreSQL. Sync views submit
with ``task.delay()`` and wait with ``wait_for_result_sync``; async views ``await``;
``delay_on_commit`` queues only what commits; the worker survives its database connection
being killed between tasks; ``manage.py flowrra status`` and ``scheduler`` work; and on
Django 6.0+ the project's Django Tasks run on the worker through FlowrraBackend."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import django
import httpx
import pytest
from conftest import PROJECT, project_env, terminate_backend

pytestmark = pytest.mark.usefixtures("database", "redis_url")

#: The commands the docs show, as this module runs them.
WORKER = ["python", "manage.py", "flowrra", "worker", "--threads", "1"]
STATUS = ["python", "manage.py", "flowrra", "status", "--json"]
SCHEDULER = ["python", "manage.py", "flowrra", "scheduler", "--store"]
ASGI_APP = "myproject.asgi:application"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _command(argv: list[str]) -> list[str]:
    return [sys.executable, *argv[1:]] if argv[0] == "python" else argv


@dataclass
class Project:
    """The running project: its two servers' URLs, and where each process logs."""

    wsgi: str
    asgi: str
    logs: Path

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text()[-3000:]}" for log in sorted(self.logs.glob("*"))
        )


class Processes:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        env = {**os.environ, **project_env()}
        process = subprocess.Popen(
            _command(argv), cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> int:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def stop_all(self) -> None:
        for process in reversed(self.running):
            self.stop(process)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s: {process.args!r}")


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    running = Processes(tmp_path_factory.mktemp("logs"))
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture(scope="module")
def project(processes: Processes) -> Project:
    wsgi_port, asgi_port = _free_port(), _free_port()
    processes.start("worker", WORKER)
    wsgi = processes.start(
        "wsgi", ["python", "manage.py", "runserver", f"127.0.0.1:{wsgi_port}", "--noreload"]
    )
    asgi = processes.start(
        "asgi",
        ["python", "-m", "daphne", "-b", "127.0.0.1", "-p", str(asgi_port), ASGI_APP],
    )
    _wait_for_port(wsgi_port, wsgi)
    _wait_for_port(asgi_port, asgi)
    return Project(f"http://127.0.0.1:{wsgi_port}", f"http://127.0.0.1:{asgi_port}", processes.logs)


def eventually(check: Callable[[], Any], timeout: float = 15) -> Any:
    """``check()``'s first truthy value, asked every 0.1 s for ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def post(url: str, **data: Any) -> Any:
    response = httpx.post(url, data=data, timeout=20)
    assert response.status_code == 200, response.text
    return response.json()


def get(url: str) -> Any:
    response = httpx.get(url, timeout=20)
    assert response.status_code == 200, response.text
    return response.json()


def task_status(project: Project, task_id: str) -> Any:
    return eventually(
        lambda: (
            (body := get(f"{project.wsgi}/tasks/{task_id}/"))["status"] in ("success", "failed")
            and body
        )
    )


def test_sync_views_over_wsgi(project: Project) -> None:
    created = post(f"{project.wsgi}/orders/", item="book")
    assert len(created["task"]) == 32  # delay() returned the id: the worker ships it
    done = task_status(project, created["task"])
    assert done == {"status": "success", "result": "shipped"}, project.log_tail()
    assert get(f"{project.wsgi}/orders/{created['order']}/")["status"] == "shipped"

    again = post(f"{project.wsgi}/orders/{created['order']}/ship-now/")
    assert again == {"status": "success", "result": "shipped"}  # wait_for_result_sync


def test_async_views_over_asgi(project: Project) -> None:
    created = post(f"{project.asgi}/async/orders/", item="lamp")
    assert created["result"] == "confirmed", project.log_tail()
    assert get(f"{project.asgi}/orders/{created['order']}/")["status"] == "confirmed"


def test_sync_views_over_asgi_too(project: Project) -> None:
    """Django runs a sync view in a thread under ASGI: ``delay()`` works there as well."""
    created = post(f"{project.asgi}/orders/", item="pen")
    assert task_status(project, created["task"])["result"] == "shipped", project.log_tail()


def test_only_committed_transactions_queue_their_task(project: Project) -> None:
    assert post(f"{project.wsgi}/notes/", text="declined", fail="1") == {"queued": False}
    assert post(f"{project.wsgi}/notes/", text="paid") == {"queued": True}
    notes = eventually(lambda: "paid" in (n := get(f"{project.wsgi}/notes/")["notes"]) and n)
    assert notes and "paid" in notes, project.log_tail()
    assert "declined" not in notes
    queues = json.loads(run_manage(STATUS).stdout)["queues"]
    assert queues["queued"] == queues["delayed"] == 0  # nothing left that could still run


@pytest.mark.parametrize(
    ("pid_view", "order_view"), [("db-pid", "orders"), ("async/db-pid", "async/orders")]
)
def test_the_worker_survives_its_connection_being_killed(
    project: Project, pid_view: str, order_view: str
) -> None:
    """Persistent connections (CONN_MAX_AGE): the connection the worker's task used is
    still open after it, and is killed before the next task, which succeeds."""
    base = project.asgi if order_view.startswith("async") else project.wsgi
    pid = post(f"{base}/{pid_view}/")["pid"]
    assert isinstance(pid, int), project.log_tail()
    assert terminate_backend(pid)

    created = post(f"{base}/{order_view}/", item="after the kill")
    if "result" in created:
        assert created["result"] == "confirmed", project.log_tail()
    else:
        assert task_status(project, created["task"])["status"] == "success", project.log_tail()
    assert post(f"{base}/{pid_view}/")["pid"] not in (pid, None)


def run_manage(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(argv),
        cwd=PROJECT,
        env={**os.environ, **project_env()},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_status_sees_the_worker(project: Project) -> None:
    done = run_manage(STATUS)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["broker"].startswith("RedisBroker(")
    (worker,) = status["workers"]
    assert worker["concurrency"] == 8  # FLOWRRA["EXECUTOR"]["num_workers"]
    assert "ship" in worker["tasks"] and "confirm" in worker["tasks"]


def test_the_scheduler_fires_for_the_worker(
    project: Project, processes: Processes, tmp_path: Path
) -> None:
    import asyncio

    from flowrra_django import get_app

    store = f"sqlite:///{tmp_path / 'schedules.db'}"

    async def schedule() -> None:
        scheduler = get_app().create_scheduler(store)
        await scheduler.schedule_interval("record_note", 0.5, args=["tick"])
        await scheduler.store.close()

    asyncio.run(schedule())
    scheduler = processes.start("scheduler", [*SCHEDULER, store])
    try:
        notes = eventually(lambda: "tick" in get(f"{project.wsgi}/notes/")["notes"])
    finally:
        assert processes.stop(scheduler) == 0
    assert notes, project.log_tail()


needs_django_tasks = pytest.mark.skipif(django.VERSION < (6, 0), reason="django.tasks: 6.0+")


def report(project: Project, result_id: str) -> Any:
    return eventually(
        lambda: (
            (body := get(f"{project.wsgi}/reports/{result_id}/"))["status"]
            in ("SUCCESSFUL", "FAILED")
            and body
        )
    )


@needs_django_tasks
def test_django_tasks_run_on_the_worker(project: Project) -> None:
    post(f"{project.wsgi}/orders/", item="for the report")
    counted = post(f"{project.wsgi}/reports/count/", status="new")
    assert counted["status"] == "READY"
    done = report(project, counted["id"])
    assert done["status"] == "SUCCESSFUL", project.log_tail()
    assert done["task"] == "reports.tasks.count_orders"
    assert isinstance(done["return_value"], int)

    summary = httpx.post(
        f"{project.asgi}/reports/summary/", data={"item": ["ab", "cde"]}, timeout=20
    ).json()
    assert report(project, summary["id"])["return_value"] == {"items": 2, "letters": 5}

    failed = post(f"{project.wsgi}/reports/fail/", message="no such report")
    assert report(project, failed["id"]) == {
        "status": "FAILED",
        "task": "reports.tasks.fail",
        "error": "builtins.LookupError",
    }


@needs_django_tasks
def test_run_after_waits_on_the_worker(project: Project) -> None:
    started = time.monotonic()
    deferred = post(f"{project.wsgi}/reports/count/", status="new", delay="2")
    assert get(f"{project.wsgi}/reports/{deferred['id']}/")["status"] == "READY"
    assert report(project, deferred["id"])["status"] == "SUCCESSFUL"
    assert time.monotonic() - started >= 2
