"""The contract every UI adapter passes: the same paths, status codes and bodies under
FastAPI, Quart and Django, auth and cross-site protection included.

Subclass :class:`UIApiContract` in an adapter's tests and provide four fixtures:

- ``ui_app``: the Flowrra app of :func:`make_ui_app`, started;
- ``client``: a :data:`Client` for a mount **with** an auth hook, sending credentials;
- ``stranger``: a :data:`Client` for that same mount, **without** credentials;
- ``readonly``: a :data:`Client` for a mount **without** an auth hook.

A :data:`Client` is ``await client(method, path, json_body, headers) -> (status, body)``,
with ``path`` relative to the mount point (``/api/stats``) and ``body`` what
:func:`decoded_body` makes of the answer: the decoded JSON, or the raw bytes of anything
else (the page and its files).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flowrra import Flowrra
from flowrra_ui.assets import serve_asset

__all__ = ["Client", "UIApiContract", "decoded_body", "make_ui_app", "running_ui_app"]

Client = Callable[[str, str, Any, dict[str, str] | None], Awaitable[tuple[int, Any]]]


def decoded_body(content_type: str | None, raw: bytes) -> Any:
    """An answer's body as a :data:`Client` returns it: JSON decoded, anything else raw."""
    if (content_type or "").startswith("application/json"):
        return json.loads(raw)
    return raw


def make_ui_app(folder: Path, url: str | None = None) -> Flowrra:
    """An app with an ``add`` task, a ``boom`` task that fails, and a scheduler on a SQLite
    file in ``folder`` (start it with ``async with app``). With ``url`` (a Redis URL), its
    broker and backend are there: processes making it with the same arguments share the
    queue, the results and the schedules."""
    app = Flowrra.from_urls(broker=url, backend=url)

    @app.task(max_retries=0)
    async def add(a: int, b: int) -> int:
        """Adds two numbers."""
        return a + b

    @app.task(max_retries=0)
    async def boom(text: str) -> None:
        raise RuntimeError(text)

    app.create_scheduler(f"sqlite:///{folder / 'ui-schedules.db'}")
    return app


@contextlib.asynccontextmanager
async def running_ui_app(folder: Path) -> AsyncIterator[Flowrra]:
    """:func:`make_ui_app`, started; stopped with its scheduler's store at the end (the
    ``ui_app`` fixture of every adapter's tests)."""
    app = make_ui_app(folder)
    async with app:
        yield app
    await app.scheduler.stop()


async def _get(client: Client, path: str) -> tuple[int, Any]:
    return await client("GET", path, None, None)


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
        assert status == 200 and [t["name"] for t in tasks] == ["add", "boom"]
        status, add = await _get(client, "/api/tasks/add")
        assert status == 200 and add["doc"] == "Adds two numbers."
        status, page = await _get(client, "/api/executions?status=failed&limit=5")
        assert status == 200 and [e["task_id"] for e in page["items"]] == [bad]
        status, detail = await _get(client, f"/api/executions/{bad}")
        assert status == 200 and detail["error"] == "RuntimeError: <script>alert('x')</script>"
        assert (await _get(client, "/api/schedules")) == (200, [])
        status, meta = await _get(client, "/api/meta")
        assert status == 200 and meta["writable"] is True and meta["scheduler"] is True
        assert (await _get(client, "/api/workers")) == (200, [])  # embedded: no heartbeats

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
        assert await ui_app.scheduler.list() == []

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
        assert await ui_app.scheduler.list() == []

    async def test_without_an_auth_hook_the_ui_is_read_only(
        self, ui_app: Flowrra, readonly: Client
    ) -> None:
        assert (await readonly("GET", "/api/tasks", None, None))[0] == 200
        status, meta = await readonly("GET", "/api/meta", None, None)
        assert meta["writable"] is False and "read-only" in meta["hint"]
        status, body = await readonly(
            "POST", "/api/schedules/cron", {"task_name": "add", "cron": "0 9 * * *"}, None
        )
        assert status == 403 and "read-only" in body["error"]
        assert await ui_app.scheduler.list() == []

    async def test_cross_site_writes_are_refused(self, ui_app: Flowrra, client: Client) -> None:
        status, _ = await client(
            "POST",
            "/api/schedules/cron",
            {"task_name": "add", "cron": "0 9 * * *"},
            {"Origin": "https://evil.example"},
        )
        assert status == 403
        assert await ui_app.scheduler.list() == []
