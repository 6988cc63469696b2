"""The UI's JSON API through dispatch(), as every adapter calls it: paths, status codes,
body shapes, bad input, and the read-only default."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flowrra_ui import ROUTES, UIService, dispatch
from flowrra_ui.testing import running_ui_app

from flowrra import Flowrra


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Flowrra]:
    async with running_ui_app(tmp_path) as app:
        yield app


async def call(service: UIService, method: str, path: str, body: Any = None, **query: str):
    raw = None if body is None else json.dumps(body).encode()
    return await dispatch(
        service, method, path, query, raw, {"Content-Type": "application/json", "Host": "ui"}
    )


async def test_reads(app: Flowrra) -> None:
    ui = UIService(app)
    ok = await app.submit("add", 1, 2)
    bad = await app.submit("boom", "<b>bold</b>")
    for task_id in (ok, bad):
        await app.wait_for_result(task_id, timeout=10)

    status, stats = await call(ui, "GET", "/api/stats", minutes="5")
    assert status == 200 and stats["totals"]["success"] == 1 and stats["totals"]["failed"] == 1
    assert await call(ui, "GET", "/api/health") == (
        200,
        {"status": "ok", "checks": {"backend": "ok", "broker": "ok", "scheduler": "ok"}},
    )
    status, tasks = await call(ui, "GET", "/api/tasks")
    assert [t["name"] for t in tasks] == ["add", "boom"]
    status, add = await call(ui, "GET", "/api/tasks/add")
    assert status == 200 and add["doc"] == "Adds two numbers."
    assert (await call(ui, "GET", "/api/tasks/nope"))[0] == 404

    status, page = await call(ui, "GET", "/api/executions", status="failed")
    assert status == 200 and [e["task_id"] for e in page["items"]] == [bad]
    status, detail = await call(ui, "GET", f"/api/executions/{bad}")
    assert detail["error"] == "RuntimeError: <b>bold</b>" and "Traceback" in detail["traceback"]
    assert (await call(ui, "GET", "/api/executions/unknown"))[0] == 404


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"status": "finished"}, "status must be one of"),
        ({"limit": "0"}, "limit must be between"),
        ({"limit": "many"}, "limit must be an integer"),
        ({"offset": "-1"}, "offset must be between"),
    ],
)
async def test_bad_queries_are_400(app: Flowrra, query: dict[str, str], message: str) -> None:
    status, body = await dispatch(UIService(app), "GET", "/api/executions", query)
    assert status == 400 and message in body["error"]


async def test_unknown_paths_and_methods(app: Flowrra) -> None:
    ui = UIService(app)
    assert (await call(ui, "GET", "/api/nothing"))[0] == 404
    status, body = await call(ui, "DELETE", "/api/stats")
    assert status == 405 and "GET" in body["error"]


async def test_writes_are_refused_without_auth(app: Flowrra) -> None:
    ui = UIService(app)  # read-only, as an adapter mounts it without an auth hook
    for method, path in [
        ("POST", "/api/schedules/cron"),
        ("PUT", "/api/schedules/x/enable"),
        ("DELETE", "/api/schedules/x"),
        ("POST", "/api/executions/x/retry"),
    ]:
        status, body = await call(ui, method, path, {"task_name": "add", "cron": "0 9 * * *"})
        assert status == 403 and "read-only" in body["error"], path
    assert await app.scheduler.list() == []
    assert {r.path for r in ROUTES if r.writes} >= {"/api/schedules/cron"}


async def test_schedules_create_enable_disable_delete(app: Flowrra) -> None:
    ui = UIService(app, writable=True)
    status, made = await call(
        ui,
        "POST",
        "/api/schedules/cron",
        {"task_name": "add", "cron": "0 9 * * *", "args": [1, 2], "timezone": "Europe/Paris"},
    )
    assert status == 200 and made["next_run_at"] and made["timezone"] == "Europe/Paris"
    at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await call(ui, "POST", "/api/schedules/once", {"task_name": "add", "run_at": at}))[
        0
    ] == 200
    status, every = await call(
        ui, "POST", "/api/schedules/interval", {"task_name": "add", "interval": 60}
    )
    assert status == 200
    assert len((await call(ui, "GET", "/api/schedules"))[1]) == 3

    status, off = await call(ui, "PUT", f"/api/schedules/{every['id']}/disable")
    assert status == 200 and off["enabled"] is False
    status, on = await call(ui, "PUT", f"/api/schedules/{every['id']}/enable")
    assert status == 200 and on["enabled"] is True
    assert await call(ui, "DELETE", f"/api/schedules/{every['id']}") == (
        200,
        {"deleted": every["id"]},
    )
    assert (await call(ui, "DELETE", f"/api/schedules/{every['id']}"))[0] == 404
    assert (await call(ui, "PUT", "/api/schedules/unknown/enable"))[0] == 404


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        ("cron", {"task_name": "add", "cron": "nonsense"}, "invalid cron"),
        ("cron", {"task_name": "nope", "cron": "0 9 * * *"}, "not registered"),
        ("cron", {"cron": "0 9 * * *"}, "task_name is required"),
        ("cron", ["not", "an", "object"], "JSON object"),
        ("interval", {"task_name": "add", "interval": -1}, "positive"),
        ("interval", {"task_name": "add", "interval": 5, "args": "x"}, "args must be"),
        ("once", {"task_name": "add", "run_at": "tomorrow"}, "ISO 8601"),
        ("once", {"task_name": "add", "run_at": "2020-01-01T00:00:00+00:00"}, "in the past"),
        ("once", {"task_name": "add", "run_at": "2031-01-01T09:00:00"}, "with its offset"),
        ("once", {"task_name": "add", "run_at": 1924936800}, "ISO 8601"),
    ],
)
async def test_bad_schedules_are_400_and_write_nothing(
    app: Flowrra, kind: str, body: Any, message: str
) -> None:
    status, answer = await call(
        UIService(app, writable=True), "POST", f"/api/schedules/{kind}", body
    )
    assert status == 400 and message in answer["error"]
    assert await app.scheduler.list() == []


async def test_retry_submits_a_failed_task_again(app: Flowrra) -> None:
    ui = UIService(app, writable=True)
    ok = await app.submit("add", 2, 3)
    bad = await app.submit("boom", "again", priority=4)
    for task_id in (ok, bad):
        await app.wait_for_result(task_id, timeout=10)
    status, body = await call(ui, "POST", f"/api/executions/{bad}/retry")
    assert status == 200 and body["retry_of"] == bad and body["task_id"] != bad
    again = await app.wait_for_result(body["task_id"], timeout=10)
    assert again.task_name == "boom" and list(again.args) == ["again"] and again.priority == 4
    status, body = await call(ui, "POST", f"/api/executions/{ok}/retry")
    assert status == 400 and "only failed tasks" in body["error"]
    assert (await call(ui, "POST", "/api/executions/unknown/retry"))[0] == 404


async def test_store_down_is_503(tmp_path: Path) -> None:
    app = Flowrra()

    @app.task()
    async def job() -> None:
        return None

    app.create_scheduler("sqlite:////nonexistent-dir/for/sure/ui.db")
    ui = UIService(app, writable=True)
    status, body = await call(ui, "GET", "/api/schedules")
    assert status == 503 and "nonexistent-dir" in body["error"]
    status, body = await call(ui, "GET", "/api/health")
    assert status == 503


async def test_writes_need_json_and_a_matching_origin(app: Flowrra) -> None:
    ui = UIService(app, writable=True)
    form = b"task_name=add&cron=0+9+*+*+*"
    status, body = await dispatch(
        ui, "POST", "/api/schedules/cron", {}, form, {"Content-Type": "text/plain", "Host": "ui"}
    )
    assert status == 415
    good = json.dumps({"task_name": "add", "cron": "0 9 * * *"}).encode()
    head = {"content-type": "application/json", "host": "ui.example:8000"}
    status, _ = await dispatch(
        ui, "POST", "/api/schedules/cron", {}, good, {**head, "origin": "https://evil.example"}
    )
    assert status == 403
    assert await app.scheduler.list() == []
    status, _ = await dispatch(
        ui, "POST", "/api/schedules/cron", {}, good, {**head, "origin": "http://ui.example:8000"}
    )
    assert status == 200
    status, body = await dispatch(ui, "POST", "/api/schedules/cron", {}, b"{oops", head)
    assert status == 400 and "not valid JSON" in body["error"]
