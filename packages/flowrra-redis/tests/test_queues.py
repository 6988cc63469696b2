"""Named queues across worker processes on a real Redis: ``flowrra worker -Q`` takes only
its queues, a queue nobody takes waits, a dead worker's task comes back to its own queue,
``flowrra status`` shows each queue, and bad ``-Q`` input is refused."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import APPS, Workers

from flowrra import Flowrra, TaskStatus

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def queues_app() -> object:
    """The module (its tasks are registered with the producer by each test, which submits
    with ``producer.submit``: a handle's own ``submit`` goes to the app it was made by)."""
    from apps import queues_app

    return queues_app


async def _results(producer: Flowrra, ids: list[str]) -> list[object]:
    done = await asyncio.gather(*(producer.wait_for_result(i, timeout=60) for i in ids))
    assert all(r.status is TaskStatus.SUCCESS for r in done), done
    return [r.result for r in done]


async def _stats(producer: Flowrra) -> dict[str, dict[str, object]]:
    return await producer.broker.queue_stats()  # type: ignore[attr-defined, no-any-return]


async def test_each_worker_takes_only_its_queues(
    producer: Flowrra, workers: Workers, queues_app: object
) -> None:
    mail, report = queues_app.mail, queues_app.report  # type: ignore[attr-defined]
    for handle in (mail, report):
        producer.registry.register(handle)
    reports = workers.start("-Q", "reports", app="queues_app:app")
    mails = [await producer.submit(mail, f"m{n}") for n in range(10)]
    sent_to_reports = [await producer.submit(mail, f"x{n}", queue="reports") for n in range(5)]
    assert set(await _results(producer, sent_to_reports)) == {reports.pid}
    reported = [await producer.submit(report, f"r{n}") for n in range(10)]
    assert set(await _results(producer, reported)) == {reports.pid}
    stats = await _stats(producer)
    assert stats["emails"]["queued"] == 10, stats  # nobody takes emails yet: they wait
    waiting = [await producer.get_result(i) for i in mails]
    assert all(r is not None and r.status is TaskStatus.PENDING for r in waiting)
    emails = workers.start("-Q", "emails", app="queues_app:app")
    assert set(await _results(producer, mails)) == {emails.pid}
    assert (await _stats(producer))["emails"]["queued"] == 0
    record = await producer.get_result(mails[0])
    assert record is not None and record.queue == "emails"  # the record names its queue
    moved = await producer.get_result(sent_to_reports[0])
    assert moved is not None and moved.queue == "reports"


async def test_a_dead_workers_task_comes_back_to_its_queue(
    producer: Flowrra, workers: Workers, queues_app: object
) -> None:
    mail = queues_app.mail  # type: ignore[attr-defined]
    producer.registry.register(mail)
    first = workers.start("-Q", "emails", lease=1.0, app="queues_app:app")
    task_id = await producer.submit(mail, "slow", 30.0)
    deadline = time.monotonic() + 30
    while (await _stats(producer))["emails"]["leased"] != 1:
        assert time.monotonic() < deadline, "the task was never taken"
        await asyncio.sleep(0.05)
    first.kill()
    first.wait()
    # a worker of another queue never takes it; one of its own queue does, after the lease
    workers.start("-Q", "reports", lease=1.0, app="queues_app:app")
    second = workers.start("-Q", "emails", lease=1.0, app="queues_app:app")
    record = await producer.wait_for_result(task_id, timeout=60)
    assert (record.status, record.result) == (TaskStatus.SUCCESS, second.pid)


def _cli(workers: Workers, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowrra", *args],
        cwd=APPS,
        env=workers.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_status_shows_each_queue_and_what_each_worker_takes(
    producer: Flowrra, workers: Workers, queues_app: object
) -> None:
    report = queues_app.report  # type: ignore[attr-defined]
    producer.registry.register(report)
    await producer.submit(report, "later", priority=3)
    await producer.submit(report, "sooner", priority=-2)
    await producer.submit(report, "delayed", delay=60)
    workers.start("-Q", "emails:2,default", app="queues_app:app")
    deadline = time.monotonic() + 30
    while True:
        status = json.loads(_cli(workers, "status", "queues_app:app", "--json").stdout)
        if status["workers"]:
            break
        assert time.monotonic() < deadline, "no heartbeat"
        await asyncio.sleep(0.2)
    assert status["by_queue"]["reports"] == {
        "queued": 2,
        "delayed": 1,
        "leased": 0,
        "priorities": {"-2": 1, "3": 1},
    }
    assert status["workers"][0]["queues"] == ["emails", "default"]
    text = _cli(workers, "status", "queues_app:app").stdout
    assert "reports" in text and "[-2: 1, 3: 1]" in text and "queues=emails,default" in text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-Q", "two words"], "is not a queue name"),
        (["-Q", "emails:lots"], "the weight after ':' is a whole number"),
        (["-Q", "emails,emails"], "a queue is named twice"),
        (["--strict"], "give -Q too"),
    ],
)
def test_bad_queue_arguments_exit_2(workers: Workers, args: list[str], says: str) -> None:
    done = _cli(workers, "worker", "queues_app:app", *args)
    assert done.returncode == 2 and says in done.stderr, done.stderr


async def test_every_process_of_a_supervised_worker_takes_its_queues(
    producer: Flowrra, workers: Workers, queues_app: object
) -> None:
    mail, report = queues_app.mail, queues_app.report  # type: ignore[attr-defined]
    for handle in (mail, report):
        producer.registry.register(handle)
    supervisor = workers.start("--processes", "2", "-Q", "emails", app="queues_app:app")
    reports = [await producer.submit(report, f"r{n}") for n in range(5)]
    pids = set(await _results(producer, [await producer.submit(mail, f"m{n}") for n in range(40)]))
    assert supervisor.pid not in pids and 1 <= len(pids) <= 2, pids
    stats = await _stats(producer)
    assert stats["reports"]["queued"] == 5, stats  # no child took the other queue
    waiting = [await producer.get_result(i) for i in reports]
    assert all(r is not None and r.status is TaskStatus.PENDING for r in waiting)


async def test_two_processes_two_queues_and_a_reload_on_a_source_edit(
    make_app: Callable[..., Flowrra], workers: Workers, tmp_path: Path
) -> None:
    """``flowrra worker --processes 2 -Q a,b --reload``: both processes take from a and b
    (never c), and an edit of the app's source restarts them on the new code."""
    pytest.importorskip("watchfiles")
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(APPS / "reload_app.py", source)
    producer = make_app()
    for name, queue in (("in_a", "a"), ("in_b", "b"), ("in_c", "c")):
        producer.task(name=name, queue=queue)(_remote)
    workers.procs.append(_start_reloading(source, workers.env))  # SIGTERM at the end

    async def ran(version: int) -> set[int]:
        """Submit to a and b until both processes answered with ``version``."""
        pids: set[int] = set()
        deadline = time.monotonic() + 60
        while len(pids) < 2:
            assert time.monotonic() < deadline, f"version {version} never ran in 2 processes"
            ids = [await producer.submit(name) for name in ("in_a", "in_b") * 8]
            for result in await _results(producer, ids):
                got_version, pid = result  # type: ignore[misc]
                if got_version == version:
                    pids.add(pid)
        return pids

    async with producer.producer():
        left = await producer.submit("in_c")
        old = await ran(1)
        app_file = source / "reload_app.py"
        app_file.write_text(app_file.read_text().replace("VERSION = 1", "VERSION = 2"))
        new = await ran(2)
        assert not old & new, "the processes were restarted"
        record = await producer.get_result(left)
        assert record is not None and record.status is TaskStatus.PENDING, "c is not taken"
        assert (await _stats(producer))["c"]["queued"] == 1


def _start_reloading(source: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = ["worker", "reload_app:app", "--processes", "2", "-Q", "a,b", "--reload"]
    return subprocess.Popen(
        [sys.executable, "-m", "flowrra", *command, "-c", "4"],
        cwd=source,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _remote() -> list[int]:
    """Stands for the worker's tasks in the producer (it never runs them)."""
    raise AssertionError("the producer does not run tasks")
