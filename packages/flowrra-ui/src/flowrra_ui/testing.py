"""The contract every UI adapter passes: the same paths, status codes and bodies under
FastAPI, Quart and Django, auth, privacy, masking and cross-site protection included.

Subclass :class:`UIApiContract` in an adapter's tests and provide these fixtures:

- ``ui_app``: the Flowrra app of :func:`make_ui_app`, started;
- ``client``: a :data:`Client` for a mount **with** an auth hook, sending credentials
  (default masking of secrets);
- ``stranger``: a :data:`Client` for that same mount, **without** credentials;
- ``readonly``: a :data:`Client` for a read-only mount anyone the adapter lets in may read
  (FastAPI and Quart: ``public=True``; Django: ``writable=False``);
- ``private``: a :data:`Client` for a mount given neither an auth hook nor ``public=True``,
  or ``None`` where the adapter has no such mount (Django: always guarded);
- ``redacted``: a :data:`Client` for a mount with credentials and
  ``redact=redact_for_tests``;
- ``websocket``: a :data:`WebSocketProbe` opening ``/ws`` on those mounts;
- ``live``: a :data:`LiveSocket` opening ``/ws`` of the ``client`` mount;
- ``redis_ui``: a :class:`RedisMount`: an app on Redis (:func:`redis_ui_app`, a fresh key
  prefix, no worker) and a :data:`Client` for a mount of it with an auth hook, sending
  credentials (what the dead-letter tests need: the in-memory broker keeps none that can
  be worked).

A :data:`Client` is ``await client(method, path, json_body, headers) -> (status, body)``,
with ``path`` relative to the mount point (``/api/stats``) and ``body`` what
:func:`decoded_body` makes of the answer: the decoded JSON, or the raw bytes of anything
else (the page and its files). A write whose ``json_body`` is ``None`` is sent as the page
sends it: ``Content-Type: application/json`` and an empty body (``headers`` given win).

A :data:`WebSocketProbe` is ``await websocket(mount, origin) -> first message or None``:
it opens ``<mount>/ws`` of the mount the fixture of that name (``"client"``,
``"stranger"``, ``"readonly"``, ``"private"``) serves, with that fixture's credentials and
with ``Origin: origin`` (:data:`SAME_ORIGIN`: the origin of the server itself; ``None``: no
``Origin`` header, as a non-browser client), and returns the first message decoded, or
``None`` when the server refused the handshake.

A :data:`LiveSocket` is ``async with live() as receive:``: it opens ``<mount>/ws`` of the
``client`` mount, with its credentials (and no ``Origin``); ``await receive()`` is the next
message, decoded (the first is ``{"type": "ready"}``); the socket is closed at the end.
A message may carry several task events (``{"type": "events", "events": [...]}``):
:func:`frame_events` gives the task events of any message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowrra import Flowrra, current_task
from flowrra.protocols import AppScheduler
from flowrra.task import TaskMessage, TaskStatus
from flowrra_ui.assets import serve_asset
from flowrra_ui.live import EVENTS
from flowrra_ui.redaction import REDACTED, SECRET_KEYS, redact_keys

__all__ = [
    "SAME_ORIGIN",
    "Client",
    "LiveSocket",
    "PrivateRedis",
    "RedisMount",
    "UIApiContract",
    "WebSocketProbe",
    "dead_letter",
    "decoded_body",
    "frame_events",
    "make_ui_app",
    "open_gate",
    "private_redis",
    "redact_for_tests",
    "redis_test_url",
    "redis_ui_app",
    "running_ui_app",
    "scheduler_of",
]

Client = Callable[[str, str, Any, dict[str, str] | None], Awaitable[tuple[int, Any]]]
WebSocketProbe = Callable[[str, str | None], Awaitable[Any]]
LiveSocket = Callable[[], AbstractAsyncContextManager[Callable[[], Awaitable[Any]]]]

#: The ``origin`` a :data:`WebSocketProbe` replaces with the server's own origin.
SAME_ORIGIN = "same-origin"
EVIL_ORIGIN = "https://evil.example"

#: Secrets the masking tests pass to tasks; no answer may contain one of them.
_SECRETS = ("hunter2", "sk_live_51Hx", "Bearer abc.def", "p4ss", "tok-9", "cookie-v")


def frame_events(message: Any) -> list[dict[str, Any]]:
    """The task events one decoded live message carries, in order: itself (a task event),
    those of an ``{"type": "events"}`` frame, or none (``ready`` and the other messages
    with a ``type``)."""
    if not isinstance(message, dict):
        raise TypeError(f"a live message is a JSON object, got {message!r}")
    if "type" not in message:
        return [message]
    if message["type"] == EVENTS:
        events: list[dict[str, Any]] = message["events"]
        return events
    return []


def scheduler_of(app: Flowrra) -> AppScheduler:
    """``app.scheduler``, which the test made (``app.create_scheduler()``)."""
    assert app.scheduler is not None, "the test app has no scheduler"
    return app.scheduler


def decoded_body(content_type: str | None, raw: bytes) -> Any:
    """An answer's body as a :data:`Client` returns it: JSON decoded, anything else raw."""
    if (content_type or "").startswith("application/json"):
        return json.loads(raw)
    return raw


def make_ui_app(folder: Path, url: str | None = None) -> Flowrra:
    """An app with an ``add`` task, a ``boom`` task that fails, an ``echo`` task returning
    what it was given, a ``slow`` task that reports the progress of each of its
    ``steps`` (``[fraction, message]``) and waits after each until the file
    ``<gate>-<step number>`` exists, and a scheduler on a SQLite file in ``folder`` (start it with
    ``async with app``). With ``url`` (a Redis URL), its broker and backend are there:
    processes making it with the same arguments share the queue, the results and the
    schedules."""
    app = Flowrra.from_urls(broker=url, backend=url)

    @app.task(max_retries=0)
    async def add(a: int, b: int) -> int:
        """Adds two numbers."""
        return a + b

    @app.task(max_retries=0)
    async def boom(text: str, **context: Any) -> None:
        raise RuntimeError(text)

    @app.task(max_retries=0)
    async def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
        """Returns its arguments."""
        return {"args": list(args), "kwargs": kwargs}

    @app.task(max_retries=0)
    def slow(steps: list[list[Any]], gate: str) -> str:
        """Reports progress step by step, each time waiting for a file."""
        task = current_task()  # a plain def task: it runs in a thread of the worker
        for number, (fraction, message) in enumerate(steps):
            task.set_progress(fraction, message)
            deadline = time.monotonic() + 120  # a hang guard: the test opens the gate
            while not Path(f"{gate}-{number}").exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nobody opened {gate}-{number}")
                time.sleep(0.05)
        return "done"

    app.create_scheduler(f"sqlite:///{folder / 'ui-schedules.db'}")
    return app


@contextlib.asynccontextmanager
async def running_ui_app(folder: Path) -> AsyncIterator[Flowrra]:
    """:func:`make_ui_app`, started; stopped with its scheduler's store at the end (the
    ``ui_app`` fixture of every adapter's tests)."""
    app = make_ui_app(folder)
    async with app:
        yield app
    await scheduler_of(app).stop()


def redis_test_url() -> str:
    """``$FLOWRRA_TEST_REDIS_URL`` (default the local server's db 9), checked: the test is
    skipped when it does not answer, or fails with ``FLOWRRA_REQUIRE_SERVICES=1``."""
    import redis

    url = os.environ.get("FLOWRRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.ConnectionError as exc:
        if os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis at {url} is unreachable: {exc}")
        pytest.skip(f"Redis at {url} is unreachable: {exc}")
    return url


@contextlib.asynccontextmanager
async def redis_ui_app(folder: Path) -> AsyncIterator[tuple[Flowrra, str]]:
    """:func:`make_ui_app` on Redis (:func:`redis_test_url`, under a key prefix of its
        own), connected as a producer (no worker: a test runs what it queues with an app of its
        own on the same URL), with its schedules in ``folder`` (created; not the ``ui_app``'s
    folder): ``(app, url)``. The prefix's
        keys are deleted at the end (the ``redis_ui`` fixture of every adapter's tests)."""
    import redis

    base = redis_test_url()
    prefix = f"flowrra-ui-api-{uuid.uuid4().hex[:8]}"
    url = f"{base}{'&' if '?' in base else '?'}prefix={prefix}"
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    app = make_ui_app(folder, url)
    try:
        async with app.producer():
            yield app, url
    finally:
        await scheduler_of(app).stop()
        client = redis.Redis.from_url(base)
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


class PrivateRedis:
    """A ``redis-server`` of a test's own on a free port (no persistence), which the test
    may :meth:`kill` and :meth:`start` again on the same port: Redis going away and
    coming back, without touching the shared server."""

    def __init__(self, folder: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (again) and wait until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("no redis-server on PATH: the outage tests start one of their own")
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(self.folder)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2) as connection,
            ):
                connection.sendall(b"PING\r\n")
                if connection.recv(16).startswith(b"+PONG"):
                    return
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server (its clients' connections drop at once)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None


@contextlib.contextmanager
def private_redis(folder: Path) -> Iterator[PrivateRedis]:
    """A :class:`PrivateRedis`, started; killed at the end."""
    server = PrivateRedis(folder)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@dataclass
class RedisMount:
    """The ``redis_ui`` fixture: ``app`` from :func:`redis_ui_app` (on ``url``) and
    ``client``, a :data:`Client` for a mount of it with an auth hook, with credentials."""

    app: Flowrra
    client: Client
    url: str


async def dead_letter(
    app: Flowrra,
    task_name: str,
    *args: Any,
    reason: str,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> str:
    """Submit ``task_name`` to ``app``'s Redis broker, due in an hour, and move its message
    to the dead letters with ``reason``, as a worker does with a message it cannot run (no
    worker takes it first, so a test decides what is dead-lettered even with one running).
    Returns the task's id; its message, requeued, is due at once."""
    handle = app.registry.get_or_raise(task_name)
    task_id: str = await handle.with_options(delay=3600, headers=headers).submit(*args, **kwargs)
    broker: Any = app.broker  # a flowrra_redis.RedisBroker
    delayed = broker.keys.delayed
    for member in await broker.client.zrange(delayed, 0, -1):
        text = member.decode() if isinstance(member, bytes) else str(member)
        if f'"id":"{task_id}"' in text:
            break
    else:
        raise AssertionError(f"the message of {task_id} is not among the delayed ones")
    assert await broker.client.zrem(delayed, member) == 1
    message = TaskMessage(task_id, task_name)
    message.receipt = member
    await broker.dead_letter(message, reason)
    return task_id


def open_gate(gate: str | Path, step: int) -> None:
    """Let the ``slow`` task waiting at ``step`` (0 for the first) of ``gate`` go on."""
    Path(f"{gate}-{step}").touch()


def redact_for_tests(record: dict[str, Any]) -> dict[str, Any]:
    """The ``redact=`` hook of the contract's ``redacted`` mount: the default masking, the
    key ``card`` too, and every error message and traceback replaced by ``"[hidden]"``."""
    masked = redact_keys((*SECRET_KEYS, "card"))(record)
    for field in ("error", "traceback"):
        if masked.get(field):
            masked[field] = "[hidden]"
    return masked


async def _get(client: Client, path: str) -> tuple[int, Any]:
    return await client("GET", path, None, None)


def _no_secret_in(answer: Any, where: str) -> None:
    text = json.dumps(answer)
    for secret in _SECRETS:
        assert secret not in text, f"{secret!r} shown by {where}: {text}"


class UIApiContract:
    """See the module docs."""

    async def test_reads(self, ui_app: Flowrra, client: Client) -> None:
        ok = await ui_app.submit("add", 1, 2)
        bad = await ui_app.submit("boom", "<script>alert('x')</script>")
        for task_id in (ok, bad):
            await ui_app.wait_for_result(task_id, timeout=10)
        status, stats = await _get(client, "/api/stats")
        assert status == 200
        assert stats["totals"]["success"] == 1 and stats["totals"]["failed"] == 1
        assert {"throughput", "queues", "workers", "recent_failures"} <= set(stats)
        status, health = await _get(client, "/api/health")
        assert status == 200 and health["status"] == "ok"
        status, tasks = await _get(client, "/api/tasks")
        assert status == 200 and [t["name"] for t in tasks] == ["add", "boom", "echo", "slow"]
        status, add = await _get(client, "/api/tasks/add")
        assert status == 200 and add["doc"] == "Adds two numbers."
        status, page = await _get(client, "/api/executions?status=failed&limit=5")
        assert status == 200 and [e["task_id"] for e in page["items"]] == [bad]
        status, page = await _get(client, "/api/executions?task=add")
        assert status == 200 and [e["task_id"] for e in page["items"]] == [ok]
        status, detail = await _get(client, f"/api/executions/{bad}")
        assert status == 200 and detail["error"] == "RuntimeError: <script>alert('x')</script>"
        assert (await _get(client, "/api/schedules")) == (200, [])
        status, meta = await _get(client, "/api/meta")
        assert status == 200 and meta["writable"] is True and meta["scheduler"] is True
        assert meta["access"] == "guarded"
        assert (await _get(client, "/api/workers")) == (200, [])  # embedded: no heartbeats
        status, queues = await _get(client, "/api/queues")
        assert status == 200 and queues["default"]["queued"] == 0, queues

    async def test_the_dashboard_page_and_its_files(self, client: Client) -> None:
        status, page = await _get(client, "/")
        assert status == 200 and b'<script src="static/app.js"' in page
        for name in ("app.js", "app.css", "favicon.svg"):
            status, body = await _get(client, f"/static/{name}")
            assert (status, body) == (200, serve_asset(name)[2]), name
        for name in ("service.py", "..%2Fservice.py", "index.htm"):
            status, _ = await _get(client, f"/static/{name}")
            assert status == 404, name

    async def test_unknown_names_are_404_and_bad_input_400(self, client: Client) -> None:
        for path in ["/api/tasks/nope", "/api/executions/nope"]:
            status, body = await _get(client, path)
            assert status == 404 and body["error"], path
        for query in ["status=finished", "limit=0", "limit=x", "offset=-2"]:
            status, body = await _get(client, f"/api/executions?{query}")
            assert status == 400 and body["error"], query
        status, body = await client("PUT", "/api/schedules/nope/enable", None, None)
        assert status == 404 and body["error"]

    async def test_queue_depths_by_queue_and_priority(self, redis_ui: RedisMount) -> None:
        """On Redis, through this adapter: each named queue's depths and its due messages
        by priority, lowest (the first to run) first; nothing takes them (no worker)."""
        app, client = redis_ui.app, redis_ui.client
        for priority in (5, 5, 0, -1):
            await app.submit("add", 1, 1, priority=priority)
        await app.submit("add", 2, 2, queue="emails", priority=3)
        await app.submit("add", 3, 3, queue="emails", delay=60)  # delayed: not by priority
        status, queues = await _get(client, "/api/queues")
        assert status == 200, queues
        assert queues["default"] == {
            "queued": 4,
            "delayed": 0,
            "leased": 0,
            "priorities": {"-1": 1, "0": 1, "5": 2},
        }, queues
        assert list(queues["default"]["priorities"]) == ["-1", "0", "5"]
        assert queues["emails"] == {
            "queued": 1,
            "delayed": 1,
            "leased": 0,
            "priorities": {"3": 1},
        }, queues
        status, stats = await _get(client, "/api/stats")
        assert status == 200 and stats["queues"]["queued"] == 5, stats["queues"]

    async def test_cursor_pages_give_each_execution_once_while_tasks_arrive(
        self, ui_app: Flowrra, client: Client, redis_ui: RedisMount
    ) -> None:
        """In memory and on Redis (its indexes), through this adapter: pages by
        ``next_cursor`` until it is null, a task submitted between pages."""
        for app, mount in ((ui_app, client), (redis_ui.app, redis_ui.client)):
            there = [await app.submit("add", n, 1) for n in range(7)]
            seen: list[str] = []
            path = "/api/executions?limit=3&task=add"
            for _ in range(10):
                status, page = await _get(mount, path)
                assert status == 200 and set(page) == {"items", "limit", "next_cursor"}, page
                seen += [item["task_id"] for item in page["items"]]
                await app.submit("add", 0, 0)  # newer: before the cursor, not shown
                if page["next_cursor"] is None:
                    break
                path = f"/api/executions?limit=3&task=add&cursor={page['next_cursor']}"
            there_seen = [task_id for task_id in seen if task_id in there]
            assert sorted(there_seen) == sorted(there), f"not each once: {seen}"
            assert len(seen) == len(set(seen)), f"an execution twice: {seen}"

    async def test_a_hostile_cursor_is_400(self, client: Client, redis_ui: RedisMount) -> None:
        hostile = [
            "%00",
            "x" * 5000,
            "not-a-cursor",
            "awpuYW4KeA",  # a keyset cursor holding NaN
            "bgo5OTk5OTk5OTk5",  # an offset cursor, to 10**10
            "awox",  # a keyset cursor without its task id
            "%F0%9F%92%A3",
        ]
        for mount in (client, redis_ui.client):
            for cursor in hostile:
                status, body = await _get(mount, f"/api/executions?cursor={cursor}")
                assert status == 400 and "cursor" in body["error"], (cursor, status, body)
            status, body = await _get(mount, "/api/executions?offset=100")
            assert status == 400 and "next_cursor" in body["error"]

    async def test_stats_are_exact_counts(self, ui_app: Flowrra, client: Client) -> None:
        for n in range(5):
            await ui_app.wait_for_result(await ui_app.submit("add", n, 1), timeout=10)
        for _ in range(2):
            await ui_app.wait_for_result(await ui_app.submit("boom", "x"), timeout=10)
        status, stats = await _get(client, "/api/stats?minutes=3")
        assert status == 200 and stats["exact"] is True
        assert stats["totals"]["success"] == 5 and stats["totals"]["failed"] == 2
        assert sum(m["completed"] for m in stats["throughput"]) == 7
        assert sum(m["failed"] for m in stats["throughput"]) == 2

    async def test_schedule_lifecycle(self, ui_app: Flowrra, client: Client) -> None:
        status, made = await client(
            "POST",
            "/api/schedules/cron",
            {"task_name": "add", "cron": "0 9 * * *", "args": [1, 2], "timezone": "Asia/Tokyo"},
            None,
        )
        assert status == 200 and made["timezone"] == "Asia/Tokyo" and made["next_run_at"]
        status, every = await client(
            "POST", "/api/schedules/interval", {"task_name": "add", "interval": 30}, None
        )
        assert status == 200
        run_at = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
        status, once = await client(
            "POST", "/api/schedules/once", {"task_name": "add", "run_at": run_at}, None
        )
        assert status == 200 and once["schedule_type"] == "one_time"
        status, off = await client("PUT", f"/api/schedules/{made['id']}/disable", None, None)
        assert status == 200 and off["enabled"] is False
        status, on = await client("PUT", f"/api/schedules/{made['id']}/enable", None, None)
        assert status == 200 and on["enabled"] is True
        status, gone = await client("DELETE", f"/api/schedules/{every['id']}", None, None)
        assert status == 200 and gone == {"deleted": every["id"]}
        status, listed = await _get(client, "/api/schedules")
        assert status == 200 and {s["id"] for s in listed} == {made["id"], once["id"]}

    async def test_bad_schedules_are_400_with_the_schedulers_message(
        self, ui_app: Flowrra, client: Client
    ) -> None:
        cases = [
            ("cron", {"task_name": "add", "cron": "nonsense"}, "invalid cron"),
            ("cron", {"task_name": "nope", "cron": "0 9 * * *"}, "not registered"),
            ("interval", {"task_name": "add", "interval": 0}, "positive"),
            ("once", {"task_name": "add", "run_at": "2001-01-01T00:00:00+00:00"}, "past"),
        ]
        for kind, body, message in cases:
            status, answer = await client("POST", f"/api/schedules/{kind}", body, None)
            assert status == 400 and message in answer["error"], (kind, body, answer)
        assert await scheduler_of(ui_app).list() == []

    async def test_retry_of_a_failed_task(self, ui_app: Flowrra, client: Client) -> None:
        bad = await ui_app.submit("boom", "once more")
        await ui_app.wait_for_result(bad, timeout=10)
        status, body = await client("POST", f"/api/executions/{bad}/retry", None, None)
        assert status == 200 and body["retry_of"] == bad
        again = await ui_app.wait_for_result(body["task_id"], timeout=10)
        assert again.task_name == "boom" and list(again.args) == ["once more"]

    async def test_without_credentials_nothing_is_served(
        self, ui_app: Flowrra, stranger: Client
    ) -> None:
        for method, path, body in [
            ("GET", "/", None),
            ("GET", "/static/app.js", None),
            ("GET", "/api/stats", None),
            ("GET", "/api/tasks", None),
            ("POST", "/api/schedules/cron", {"task_name": "add", "cron": "0 9 * * *"}),
            ("DELETE", "/api/schedules/x", None),
        ]:
            status, _ = await stranger(method, path, body, None)
            # Django sends an anonymous visitor of the page to its login page
            assert status in (401, 403) or (path == "/" and status == 302), (path, status)
        assert await scheduler_of(ui_app).list() == []

    async def test_without_an_auth_hook_no_task_data_is_served(
        self, ui_app: Flowrra, private: Client | None
    ) -> None:
        if private is None:
            pytest.skip("this adapter has no mount without auth")
        secret = await ui_app.submit("echo", password="hunter2")
        await ui_app.wait_for_result(secret, timeout=10)
        status, page = await _get(private, "/")  # the page, which says how to add auth
        assert status == 200 and b'<script src="static/app.js"' in page
        assert (await _get(private, "/static/app.js"))[0] == 200
        for path in [
            "/api/meta",
            "/api/stats",
            "/api/workers",
            "/api/queues",
            "/api/health",
            "/api/tasks",
            "/api/tasks/echo",
            "/api/executions",
            f"/api/executions/{secret}",
            "/api/schedules",
            "/api/dead-letters",
        ]:
            status, body = await _get(private, path)
            assert status == 401, (path, status, body)
            assert "private" in body["error"] and "public=True" in body["error"], body
            _no_secret_in(body, path)
        status, body = await private(
            "POST", "/api/schedules/cron", {"task_name": "add", "cron": "0 9 * * *"}, None
        )
        assert status == 401 and "private" in body["error"]
        assert await scheduler_of(ui_app).list() == []

    async def test_a_read_only_mount_refuses_changes(
        self, ui_app: Flowrra, readonly: Client
    ) -> None:
        assert (await readonly("GET", "/api/tasks", None, None))[0] == 200
        status, meta = await readonly("GET", "/api/meta", None, None)
        assert meta["writable"] is False and "read-only" in meta["hint"]
        status, body = await readonly(
            "POST", "/api/schedules/cron", {"task_name": "add", "cron": "0 9 * * *"}, None
        )
        assert status == 403 and "read-only" in body["error"]
        assert await scheduler_of(ui_app).list() == []

    async def test_cross_site_writes_are_refused(self, ui_app: Flowrra, client: Client) -> None:
        status, _ = await client(
            "POST",
            "/api/schedules/cron",
            {"task_name": "add", "cron": "0 9 * * *"},
            {"Origin": EVIL_ORIGIN},
        )
        assert status == 403
        assert await scheduler_of(ui_app).list() == []

    async def test_writes_without_a_json_content_type_are_415(
        self, ui_app: Flowrra, client: Client
    ) -> None:
        """What an HTML form on another site can send (no Origin check applies when a
        browser leaves Origin out): a bodiless write with a form's content type."""
        made = await scheduler_of(ui_app).schedule_cron("add", "0 9 * * *")
        bad = await ui_app.submit("boom", "no retry")
        await ui_app.wait_for_result(bad, timeout=10)
        before = len((await _get(client, "/api/executions"))[1]["items"])
        for method, path in [
            ("PUT", f"/api/schedules/{made}/disable"),
            ("DELETE", f"/api/schedules/{made}"),
            ("POST", f"/api/executions/{bad}/retry"),
        ]:
            for content_type in ("application/x-www-form-urlencoded", "text/plain", ""):
                status, body = await client(method, path, None, {"Content-Type": content_type})
                assert status == 415, (method, path, content_type, status)
                assert "application/json" in body["error"]
        schedule = await scheduler_of(ui_app).get(made)
        assert schedule is not None and schedule.enabled is True
        assert len((await _get(client, "/api/executions"))[1]["items"]) == before

    async def test_secrets_are_masked_on_every_read(self, ui_app: Flowrra, client: Client) -> None:
        kwargs: dict[str, Any] = {
            "user": "ann",
            "password": "hunter2",
            "api_key": "sk_live_51Hx",
            "headers": {"Authorization": "Bearer abc.def", "Accept": "text/plain"},
            "accounts": [{"name": "db", "DB_PASSWD": "p4ss"}],
        }
        shown = await ui_app.submit("echo", "visible", {"Access-Token": "tok-9"}, **kwargs)
        failed = await ui_app.submit("boom", "denied", session_cookie="cookie-v", user="bob")
        for task_id in (shown, failed):
            await ui_app.wait_for_result(task_id, timeout=10)

        status, detail = await _get(client, f"/api/executions/{shown}")
        assert status == 200
        _no_secret_in(detail, "one execution")
        assert detail["args"] == ["visible", {"Access-Token": REDACTED}]
        assert detail["kwargs"]["user"] == "ann" and detail["kwargs"]["password"] == REDACTED
        assert detail["kwargs"]["headers"] == {"Authorization": REDACTED, "Accept": "text/plain"}
        assert detail["kwargs"]["accounts"] == [{"name": "db", "DB_PASSWD": REDACTED}]
        assert detail["result"]["kwargs"]["api_key"] == REDACTED  # a dict result too
        assert detail["result"]["kwargs"]["user"] == "ann"
        status, listed = await _get(client, "/api/executions")
        assert status == 200 and len(listed["items"]) == 2
        _no_secret_in(listed, "the executions")
        status, stats = await _get(client, "/api/stats")
        [failure] = stats["recent_failures"]
        assert failure["kwargs"] == {"session_cookie": REDACTED, "user": "bob"}
        _no_secret_in(stats, "the dashboard")

        schedule = {"task_name": "echo", "interval": 60, "kwargs": {"token": "tok-9", "n": 1}}
        status, made = await client("POST", "/api/schedules/interval", schedule, None)
        assert status == 200 and made["kwargs"] == {"token": REDACTED, "n": 1}
        status, listed = await _get(client, "/api/schedules")
        _no_secret_in(listed, "the schedules")
        stored = await scheduler_of(ui_app).get(made["id"])
        assert stored is not None and stored.kwargs == {"token": "tok-9", "n": 1}

        # What is masked is what is shown: a retry runs with the real arguments.
        status, retried = await client("POST", f"/api/executions/{failed}/retry", None, None)
        assert status == 200
        again = await ui_app.wait_for_result(retried["task_id"], timeout=10)
        assert again.kwargs == {"session_cookie": "cookie-v", "user": "bob"}

    async def test_headers_masked_by_name_and_progress_live_and_in_the_detail(
        self, ui_app: Flowrra, client: Client, live: LiveSocket, tmp_path: Path
    ) -> None:
        headers = {
            "Authorization": "Bearer abc.def",
            "X-Api-Key": "sk_live_51Hx",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        }
        gate = tmp_path / "slow-gate"
        slow = ui_app.registry.get_or_raise("slow")
        try:
            async with live() as receive:
                assert await receive() == {"type": "ready"}  # subscribed from here
                steps = [[0.5, "halfway"]]
                task_id = await slow.with_options(headers=headers).submit(steps, str(gate))
                async with asyncio.timeout(10):
                    while True:
                        events = frame_events(await receive())
                        for event in events:
                            assert event["task_id"] == task_id, event
                            assert event["status"] != "failed", event
                        if any(event["progress"] is not None for event in events):
                            break
                    event = next(event for event in events if event["progress"] is not None)
            assert event["task_id"] == task_id and event["status"] == "running"
            assert event["progress"] == {"fraction": 0.5, "message": "halfway"}
            _no_secret_in(event, "the live stream")

            status, detail = await _get(client, f"/api/executions/{task_id}")
            assert status == 200 and detail["status"] == "running"
            assert detail["progress"] == {"fraction": 0.5, "message": "halfway"}
            assert detail["headers"] == {
                **headers,
                "Authorization": REDACTED,
                "X-Api-Key": REDACTED,
            }
            _no_secret_in(detail, "one execution")
            status, listed = await _get(client, "/api/executions")
            assert status == 200 and listed["items"][0]["progress"]["fraction"] == 0.5
            _no_secret_in(listed, "the executions")
        finally:
            open_gate(gate, 0)  # the task ends, the test passed or not
        record = await ui_app.wait_for_result(task_id, timeout=10)
        assert record.headers["Authorization"] == "Bearer abc.def"  # stored as sent
        status, detail = await _get(client, f"/api/executions/{task_id}")
        assert status == 200 and detail["status"] == "success" and detail["result"] == "done"
        assert detail["headers"]["Authorization"] == REDACTED and detail["progress"] is None
        added = await ui_app.submit("add", 1, 2)
        await ui_app.wait_for_result(added, timeout=10)
        status, detail = await _get(client, f"/api/executions/{added}")
        assert status == 200 and detail["headers"] == {} and detail["progress"] is None

    async def test_a_redact_hook_decides_what_is_shown(
        self, ui_app: Flowrra, redacted: Client
    ) -> None:
        shown = await ui_app.submit("echo", card="4242 4242", password="hunter2", n=1)
        failed = await ui_app.submit("boom", "the card 4242 4242 was declined")
        for task_id in (shown, failed):
            await ui_app.wait_for_result(task_id, timeout=10)
        status, detail = await _get(redacted, f"/api/executions/{shown}")
        assert status == 200
        assert detail["kwargs"] == {"card": REDACTED, "password": REDACTED, "n": 1}
        status, detail = await _get(redacted, f"/api/executions/{failed}")
        assert status == 200 and detail["error"] == detail["traceback"] == "[hidden]"
        status, stats = await _get(redacted, "/api/stats")
        assert [f["error"] for f in stats["recent_failures"]] == ["[hidden]"]
        status, listed = await _get(redacted, "/api/executions")
        assert status == 200 and len(listed["items"]) == 2
        for item in listed["items"]:
            assert item["error"] in (None, "[hidden]") and item["traceback"] in (None, "[hidden]")
            assert "4242" not in json.dumps(item["kwargs"])

    async def test_the_websocket_checks_access_and_origin(
        self, websocket: WebSocketProbe, private: Client | None
    ) -> None:
        assert await websocket("client", SAME_ORIGIN) == {"type": "ready"}
        assert await websocket("client", None) == {"type": "ready"}  # not a browser
        assert await websocket("client", EVIL_ORIGIN) is None
        assert await websocket("stranger", SAME_ORIGIN) is None
        assert await websocket("readonly", SAME_ORIGIN) == {"type": "ready"}
        assert await websocket("readonly", EVIL_ORIGIN) is None
        if private is not None:
            assert await websocket("private", SAME_ORIGIN) is None

    # -- operator actions: run a schedule now, the dead letters ------------------------

    async def test_run_a_schedule_now(
        self, ui_app: Flowrra, client: Client, readonly: Client
    ) -> None:
        """A run-now submits the schedule's task with its arguments and priority, and leaves
        the schedule (its next run, its count of runs) as it was."""
        scheduler = scheduler_of(ui_app)
        made = await scheduler.schedule_cron(
            "echo", "0 9 * * *", args=[1, "two"], kwargs={"token": "tok-9", "n": 3}, priority=4
        )
        before = await scheduler.get(made)
        assert before is not None
        status, body = await client("POST", f"/api/schedules/{made}/run", None, None)
        assert status == 200 and body["schedule_id"] == made and body["task_name"] == "echo"
        record = await ui_app.wait_for_result(body["task_id"], timeout=10)
        assert record.status is TaskStatus.SUCCESS and record.priority == 4
        assert record.result == {"args": [1, "two"], "kwargs": {"token": "tok-9", "n": 3}}
        after = await scheduler.get(made)
        assert after is not None and after.next_run_at == before.next_run_at
        assert after.run_count == before.run_count and after.last_run_at == before.last_run_at
        status, shown = await client("GET", f"/api/executions/{body['task_id']}", None, None)
        assert status == 200 and shown["kwargs"]["token"] == REDACTED

        status, answer = await client("POST", "/api/schedules/nope/run", None, None)
        assert status == 404 and answer["error"]
        count = len((await client("GET", "/api/executions", None, None))[1]["items"])
        status, answer = await readonly("POST", f"/api/schedules/{made}/run", None, None)
        assert status == 403 and "read-only" in answer["error"]
        status, _ = await client(
            "POST", f"/api/schedules/{made}/run", None, {"Origin": EVIL_ORIGIN}
        )
        assert status == 403
        for content_type in ("application/x-www-form-urlencoded", "text/plain", ""):
            status, answer = await client(
                "POST", f"/api/schedules/{made}/run", None, {"Content-Type": content_type}
            )
            assert status == 415, (content_type, status)
        assert len((await client("GET", "/api/executions", None, None))[1]["items"]) == count

    async def test_dead_letters_are_listed_masked_requeued_and_purged(
        self, redis_ui: RedisMount, tmp_path: Path
    ) -> None:
        app, client = redis_ui.app, redis_ui.client
        status, meta = await _get(client, "/api/meta")
        assert status == 200 and meta["dead_letters"] is True
        assert (await _get(client, "/api/dead-letters")) == (200, {"items": [], "limit": 100})
        secret = await dead_letter(
            app,
            "echo",
            "visible",
            reason="RuntimeError: the payment service answered 503",
            headers={"Authorization": "Bearer abc.def", "X-Trace": "t-1"},
            password="hunter2",
            user="ann",
        )
        added = await dead_letter(app, "add", 1, 2, reason="because add")
        doomed = await dead_letter(app, "add", 5, 5, reason="because <b>markup</b>")

        status, listed = await _get(client, "/api/dead-letters")
        assert status == 200 and listed["limit"] == 100
        assert [e["id"] for e in listed["items"]] == [doomed, added, secret]  # newest first
        _no_secret_in(listed, "the dead letters")
        entry = listed["items"][2]
        assert "raw" not in entry
        assert entry["task_name"] == "echo"
        assert entry["reason"] == "RuntimeError: the payment service answered 503"
        assert entry["args"] == ["visible"]
        assert entry["kwargs"] == {"password": REDACTED, "user": "ann"}
        assert entry["headers"] == {"Authorization": REDACTED, "X-Trace": "t-1"}
        assert entry["truncated"] is False and entry["requeueable"] is True
        assert entry["size"] > 0 and entry["priority"] == 0 and entry["attempt"] == 0
        assert datetime.fromisoformat(entry["at"]).tzinfo is not None
        assert listed["items"][0]["reason"] == "because <b>markup</b>"
        status, one = await _get(client, "/api/dead-letters?limit=1")
        assert status == 200 and [e["id"] for e in one["items"]] == [doomed]
        for query in ("limit=0", "limit=x", "limit=5000"):
            assert (await _get(client, f"/api/dead-letters?{query}"))[0] == 400, query

        status, body = await client("POST", "/api/dead-letters/requeue", {"ids": [added]}, None)
        assert status == 200 and body == {"requeued": [added], "skipped": []}
        record = await app.get_result(added)
        assert record is not None and record.status is TaskStatus.PENDING
        status, answer = await client("POST", "/api/dead-letters/requeue", {"ids": [added]}, None)
        assert status == 404 and answer["error"]  # requeued once
        bodies: list[Any] = [None, {}, {"ids": []}, {"ids": "x"}, {"all": False}, [added]]
        for bad in bodies:
            status, answer = await client("POST", "/api/dead-letters/requeue", bad, None)
            assert status == 400 and '"all": true' in answer["error"], (bad, status)
            status, answer = await client("POST", "/api/dead-letters/purge", bad, None)
            assert status == 400, (bad, status)

        status, body = await client("POST", "/api/dead-letters/purge", {"ids": [doomed]}, None)
        assert (status, body) == (200, {"purged": 1})
        status, answer = await client("POST", "/api/dead-letters/purge", {"ids": [doomed]}, None)
        assert status == 404
        status, body = await client("POST", "/api/dead-letters/requeue", {"all": True}, None)
        assert (status, body) == (200, {"requeued": [secret], "skipped": []})
        assert (await _get(client, "/api/dead-letters"))[1]["items"] == []

        # What was requeued runs, with its real arguments, in a worker on the same Redis.
        worker = make_ui_app(tmp_path, redis_ui.url)
        async with worker:
            assert (await worker.wait_for_result(added, timeout=10)).result == 3
            echoed = await worker.wait_for_result(secret, timeout=10)
        await scheduler_of(worker).stop()
        assert echoed.status is TaskStatus.SUCCESS
        assert echoed.result == {
            "args": ["visible"],
            "kwargs": {"password": "hunter2", "user": "ann"},
        }

        again = await dead_letter(app, "add", 0, 0, reason="once more")
        assert [e["id"] for e in (await _get(client, "/api/dead-letters"))[1]["items"]] == [again]
        status, body = await client("POST", "/api/dead-letters/purge", {"all": True}, None)
        assert (status, body) == (200, {"purged": 1})
        assert (await _get(client, "/api/dead-letters"))[1]["items"] == []

    async def test_dead_letters_are_for_writers_and_checked_like_every_write(
        self, redis_ui: RedisMount, readonly: Client, stranger: Client
    ) -> None:
        app, client = redis_ui.app, redis_ui.client
        kept = await dead_letter(app, "add", 1, 1, reason="kept")
        for who in (readonly, stranger):
            status, answer = await _get(who, "/api/dead-letters")
            assert status in (401, 403), status
            for action in ("requeue", "purge"):
                status, answer = await who(
                    "POST", f"/api/dead-letters/{action}", {"all": True}, None
                )
                assert status in (401, 403), (action, status)
        status, answer = await _get(readonly, "/api/dead-letters")
        assert status == 403 and "read-only" in answer["error"]
        for action in ("requeue", "purge"):
            path = f"/api/dead-letters/{action}"
            status, _ = await client("POST", path, {"all": True}, {"Origin": EVIL_ORIGIN})
            assert status == 403, action
            for content_type in ("application/x-www-form-urlencoded", "text/plain", ""):
                status, answer = await client("POST", path, None, {"Content-Type": content_type})
                assert status == 415, (action, content_type, status)
                assert "application/json" in answer["error"]
        status, listed = await _get(client, "/api/dead-letters")
        assert status == 200 and [e["id"] for e in listed["items"]] == [kept]

    async def test_dead_letters_of_a_broker_without_them_are_501(
        self, client: Client, readonly: Client
    ) -> None:
        """The in-memory broker keeps no dead letters that can be worked from the UI."""
        status, meta = await _get(client, "/api/meta")
        assert status == 200 and meta["dead_letters"] is False
        status, answer = await _get(client, "/api/dead-letters")
        assert status == 501 and "not available" in answer["error"]
        for action in ("requeue", "purge"):
            path = f"/api/dead-letters/{action}"
            status, answer = await client("POST", path, {"all": True}, None)
            assert status == 501 and "not available" in answer["error"], action
            status, answer = await readonly("POST", path, {"all": True}, None)
            assert status == 403, action  # who may write is decided first
