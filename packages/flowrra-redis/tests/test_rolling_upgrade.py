"""Rolling upgrades on Redis: workers and producers of the previous wire format (1, no
version marker) and of this one (2) share a queue and a result store, in both directions.

The previous release runs from git (``git archive`` of :data:`PREVIOUS_FORMAT`) in worker
and client processes of its own; the tests that need no git history use the bytes its
encoder wrote, kept here."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import redis
from apps import redis_app
from conftest import APPS, Workers
from flowrra_redis.broker import priority_key
from flowrra_redis.codec import decode_result, encode_message, encode_result

from flowrra import Flowrra, TaskStatus
from flowrra.task import TaskMessage, TaskResult

PREVIOUS_FORMAT = "320fd7d1bbcbbe6c8ea139b40068e77e3fdc6506"
"""The code before the wire format had a version (format 1): its workers, producers and
readers stand for the previous release."""
OLD_APPS = "packages/flowrra-redis/tests/apps"

ID = "0123456789abcdef0123456789abcdef"
# What flowrra-redis wrote for a message and its PENDING record in format 1, byte for byte.
FORMAT_1_MESSAGE = (
    '{"id":"0123456789abcdef0123456789abcdef","name":"wire.add","args":[2,[3,"\\u00e9"]],'
    '"kwargs":{"extra":4},"priority":5,"attempt":0,"eta":null,"submitted_at":1765000000.25}'
)
FORMAT_1_PENDING = (
    '["0123456789abcdef0123456789abcdef","pending","wire.add",null,null,1765000000.25,null,'
    'null,0,[2,[3,"\\u00e9"]],{"extra":4},null,5]'
)


def format_1_reader(data: str | bytes) -> dict[str, Any]:
    """How the previous release read a record (``decode_result`` at PREVIOUS_FORMAT): it
    unpacks exactly 13 items, and fails on any other length."""
    (tid, status, _n, value, _e, _s, _st, _f, retries, _a, _k, _t, _p) = json.loads(data)
    return {"task_id": tid, "status": status, "result": value, "retries": retries}


def submitted(app: Flowrra, sync_redis: redis.Redis, body: str) -> None:
    """Submit message ``body`` as format 1 did: its record (FORMAT_1_PENDING), then the
    message in the queue as the broker's ENQUEUE puts it, and a worker woken."""
    sync_redis.set(app.backend.keys.result(ID), FORMAT_1_PENDING)  # type: ignore[attr-defined]
    keys = app.broker.keys  # type: ignore[attr-defined]
    sync_redis.zadd(keys.queue, {f"{priority_key(5)}{0:016d}00000000|{body}": 0})
    sync_redis.rpush(keys.wake, "1")


def adder(make_app: Any) -> Flowrra:
    """An app with the task the messages above name."""
    app: Flowrra = make_app()

    @app.task(name="wire.add")
    async def add(a: int, b: list[Any], extra: int) -> dict[str, int]:
        return {"sum": a + b[0] + extra}

    return app


async def test_format_1_messages_and_records_are_run_and_read(
    make_app: Any, sync_redis: redis.Redis
) -> None:
    app = adder(make_app)
    submitted(app, sync_redis, FORMAT_1_MESSAGE)
    async with app.producer():
        pending = await app.get_result(ID)
    assert pending is not None and pending.status is TaskStatus.PENDING
    assert (pending.args, pending.kwargs, pending.priority) == ((2, [3, "é"]), {"extra": 4}, 5)
    async with app:
        done = await app.wait_for_result(ID, timeout=10)
    assert done.status is TaskStatus.SUCCESS and done.result == {"sum": 9}
    assert done.submitted_at == pending.submitted_at and done.priority == 5


async def test_fields_of_a_later_format_are_ignored(make_app: Any, sync_redis: redis.Redis) -> None:
    """A message and a record from a release with more fields: this one reads its own."""
    app = adder(make_app)
    later = {**json.loads(FORMAT_1_MESSAGE), "v": 3, "headers": {"trace": "t"}, "queue": "q"}
    submitted(app, sync_redis, json.dumps(later))
    async with app:
        done = await app.wait_for_result(ID, timeout=10)
    assert done.result == {"sum": 9}
    record = json.loads(encode_result(done))
    stored = json.dumps([*record, {"v": 3, "queue": "q", "cancelled_by": "x"}, [1]])
    sync_redis.set(app.backend.keys.result(ID), stored)  # type: ignore[attr-defined]
    async with app.producer():
        assert await app.get_result(ID) == done


def test_the_previous_release_reads_what_this_one_writes() -> None:
    """Every record this release writes is format 1's 13 items; a message is format 1's
    object with ``"v"`` added, which format 1's reader (``from_dict``) ignores."""
    message = TaskMessage(
        ID, "wire.add", (2, [3, "é"]), {"extra": 4}, priority=5, submitted_at=1765000000.25
    )
    assert json.loads(encode_message(message)) == {**json.loads(FORMAT_1_MESSAGE), "v": 2}
    assert encode_result(TaskResult.pending(message)) == FORMAT_1_PENDING
    records = [
        TaskResult.running(message, started=1.5),
        TaskResult.succeeded(message, [1, "x"], started=1.5, finished=2.5),
        TaskResult.retrying(message, "E: x", started=1.5, traceback="tb"),
        TaskResult.failed(message, "E: y", finished=2.5),
    ]
    for made in records:
        read = format_1_reader(encode_result(made))
        assert read == {
            "task_id": ID,
            "status": made.status.value,
            "result": made.result,
            "retries": 0,
        }
        assert decode_result(encode_result(made)) == made
    with pytest.raises(ValueError, match="too many values"):  # why records stay 13 items
        format_1_reader(json.dumps([*json.loads(FORMAT_1_PENDING), {"v": 2}]))


# -- the previous release itself, from git ---------------------------------------------------


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where flowrra-core, flowrra-redis and the test apps of :data:`PREVIOUS_FORMAT` are
    (``apps`` with this release's ``wire_client.py`` added)."""
    root = Path(__file__).resolve().parents[3]
    paths = [f"packages/{name}/src" for name in ("flowrra-core", "flowrra-redis")]
    try:
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", PREVIOUS_FORMAT, *paths, OLD_APPS],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"no git history with the previous release ({PREVIOUS_FORMAT}): {exc}")
    where = tmp_path_factory.mktemp("previous-release")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later
            tar.extraction_filter = tarfile.data_filter
        tar.extractall(where)
    shutil.copy(APPS / "wire_client.py", where / OLD_APPS)
    return where


class PreviousRelease:
    """Worker processes and a client (``apps/wire_client.py``) of the previous release."""

    def __init__(self, redis_url: str, prefix: str, where: Path) -> None:
        self.apps = where / OLD_APPS
        self.workers = Workers(redis_url, prefix)
        paths = [where / "packages" / name / "src" for name in ("flowrra-core", "flowrra-redis")]
        self.workers.env["PYTHONPATH"] = os.pathsep.join(map(str, [*paths, self.apps]))

    def start_worker(self) -> None:
        self.workers.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "flowrra", "worker", "redis_app:app"],
                cwd=self.apps,
                env=self.workers.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )

    def client(self, *argv: str) -> Any:
        done = subprocess.run(
            [sys.executable, "wire_client.py", *argv],
            cwd=self.apps,
            env=self.workers.env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


async def submit(producer: Flowrra, label: str, numbers: range) -> list[str]:
    """What :meth:`PreviousRelease.client` ``submit`` does, with this release."""
    ids = [await producer.submit(redis_app.record, n) for n in numbers]
    return [*ids, await producer.submit(redis_app.fails_once, label)]


def expected(label: str, numbers: range) -> list[tuple[str, Any, int]]:
    """(status, result, retries) of :func:`submit`'s tasks once run."""
    return [("success", n, 0) for n in numbers] + [("success", f"{label} ok after 2 runs", 1)]


async def outcomes(producer: Flowrra, ids: list[str]) -> list[tuple[str, Any, int]]:
    results = [await producer.wait_for_result(i, timeout=30) for i in ids]
    return [(r.status.value, r.result, r.retries) for r in results]


async def test_a_rolling_upgrade_from_the_previous_format(
    producer: Flowrra,
    workers: Workers,
    redis_url: str,
    prefix: str,
    previous_release: Path,
) -> None:
    """Old worker, then new worker; each runs what old and new producers submit, and old
    and new readers read every record."""
    old = PreviousRelease(redis_url, prefix, previous_release)
    ran: dict[str, list[tuple[str, Any, int]]] = {}
    ids: dict[str, list[str]] = {}
    try:
        old.start_worker()  # the previous release's worker runs both formats' messages
        ids["new-1"] = await submit(producer, "new-1", range(10))
        ids["old-1"] = old.client("submit", "old-1", *map(str, range(100, 110)))
        ran["new-1"] = await outcomes(producer, ids["new-1"])
        ran["old-1"] = await outcomes(producer, ids["old-1"])  # format 1 records, read here
    finally:
        old.workers.stop_all()
    workers.start()  # this release's worker, with messages of both formats
    ids["new-2"] = await submit(producer, "new-2", range(200, 210))
    ids["old-2"] = old.client("submit", "old-2", *map(str, range(300, 310)))
    ran["new-2"] = await outcomes(producer, ids["new-2"])
    ran["old-2"] = await outcomes(producer, ids["old-2"])
    workers.stop_all()
    assert ran == {
        "new-1": expected("new-1", range(10)),
        "old-1": expected("old-1", range(100, 110)),
        "new-2": expected("new-2", range(200, 210)),
        "old-2": expected("old-2", range(300, 310)),
    }
    # The previous release reads every record, this release's worker's included...
    for label, task_ids in ids.items():
        read = old.client("wait", *task_ids)
        assert [(r["status"], r["result"], r["retries"]) for r in read] == ran[label]
    # ...and a PENDING record this release's submit wrote.
    queued = await producer.submit(redis_app.record, 999)
    [pending] = old.client("get", queued)
    assert pending["status"] == "pending" and pending["args"] == [999]


def test_what_older_readers_make_of_a_cancelled_record() -> None:
    """A CANCELLED record is ``"failed"`` in format 1's 13 fields, and ``"cancelled"`` in
    the trailing object. A reader of format 2 before cancellation (it reads the 13 and
    ignores names it does not know in the object) sees a complete FAILED task whose error
    says it was cancelled, and the STORE script of such a worker (which reads the status
    at the record's head) never overwrites it. A reader of format 1 fails on it, as on
    any record with a 14th item (headers, progress): that was already so."""
    pending = decode_result(FORMAT_1_PENDING)
    cancelled = TaskResult.cancelled(pending, "by a test", finished=1765000001.5)
    text = encode_result(cancelled)
    fields = json.loads(text)
    assert fields[1] == "failed" and fields[4] == "TaskCancelled: by a test"
    assert text.startswith(f'["{ID}","failed"')  # what STORE's complete() reads
    with pytest.raises(ValueError, match="too many values"):
        format_1_reader(text)
    assert decode_result(text).status is TaskStatus.CANCELLED
