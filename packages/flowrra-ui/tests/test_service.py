"""The UI's JSON API through dispatch(), as every adapter calls it: paths, status codes,
body shapes, bad input, the private default, masking, and the live stream's rules."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flowrra_ui import PRIVATE, REDACTED, ROUTES, UIService, dispatch, websocket_refusal
from flowrra_ui.redaction import SECRET_KEYS, redact_keys, redact_secrets
from flowrra_ui.service import READY, event_json, stream_events
from flowrra_ui.testing import frame_events, running_ui_app

from flowrra import Flowrra
from flowrra.events import TaskEvent
from flowrra.task import Progress, TaskStatus


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
    ui = UIService(app, public=True)
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
    assert [t["name"] for t in tasks] == ["add", "boom", "echo", "slow"]
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
        ({"offset": "50"}, "offset is not accepted"),
        ({"cursor": "x" * 5000}, "cursor must be at most"),
        ({"cursor": "not-one"}, "not a cursor this server made"),
        ({"cursor": "bgoxMA"}, "not a cursor of this listing"),  # an offset cursor
        ({"cursor": "awpuYW4KeA"}, "not a cursor this server made"),  # NaN score
        ({"task": "t" * 1001}, "task must be at most"),
    ],
)
async def test_bad_queries_are_400(app: Flowrra, query: dict[str, str], message: str) -> None:
    status, body = await dispatch(UIService(app, guarded=True), "GET", "/api/executions", query)
    assert status == 400 and message in body["error"]


async def test_unknown_paths_and_methods(app: Flowrra) -> None:
    ui = UIService(app, guarded=True)
    assert (await call(ui, "GET", "/api/nothing"))[0] == 404
    status, body = await call(ui, "DELETE", "/api/stats")
    assert status == 405 and "GET" in body["error"]


async def test_a_public_mount_refuses_writes(app: Flowrra) -> None:
    ui = UIService(app, public=True)  # read-only, as public=True mounts it
    for method, path in [
        ("POST", "/api/schedules/cron"),
        ("PUT", "/api/schedules/x/enable"),
        ("DELETE", "/api/schedules/x"),
        ("POST", "/api/executions/x/retry"),
        ("POST", "/api/executions/x/cancel"),
    ]:
        status, body = await call(ui, method, path, {"task_name": "add", "cron": "0 9 * * *"})
        assert status == 403 and "read-only" in body["error"], path
    assert await app.scheduler.list() == []
    assert {r.path for r in ROUTES if r.writes} >= {"/api/schedules/cron"}


async def test_schedules_create_enable_disable_delete(app: Flowrra) -> None:
    ui = UIService(app, guarded=True)
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
        UIService(app, guarded=True), "POST", f"/api/schedules/{kind}", body
    )
    assert status == 400 and message in answer["error"]
    assert await app.scheduler.list() == []


async def test_retry_submits_a_failed_task_again(app: Flowrra) -> None:
    ui = UIService(app, guarded=True)
    ok = await app.submit("add", 2, 3)
    bad = await app.submit("boom", "again", priority=4)
    for task_id in (ok, bad):
        await app.wait_for_result(task_id, timeout=10)
    status, body = await call(ui, "POST", f"/api/executions/{bad}/retry")
    assert status == 200 and body["retry_of"] == bad and body["task_id"] != bad
    again = await app.wait_for_result(body["task_id"], timeout=10)
    assert again.task_name == "boom" and list(again.args) == ["again"] and again.priority == 4
    status, body = await call(ui, "POST", f"/api/executions/{ok}/retry")
    assert status == 400 and "only failed or cancelled tasks" in body["error"]
    assert (await call(ui, "POST", "/api/executions/unknown/retry"))[0] == 404


async def test_cancel_a_waiting_task_then_submit_it_again(app: Flowrra) -> None:
    ui = UIService(app, guarded=True)
    later = await app.submit("add", 1, 2, delay=60)
    status, body = await call(ui, "POST", f"/api/executions/{later}/cancel")
    assert status == 200 and body == {"task_id": later, "outcome": "removed", "cancelled": True}
    record = await app.wait_for_result(later, timeout=5)
    assert record.status is TaskStatus.CANCELLED
    assert "cancelled from the web UI" in (record.error or "")
    status, body = await call(ui, "POST", f"/api/executions/{later}/cancel")
    assert status == 200 and body["outcome"] == "already_complete" and not body["cancelled"]
    assert (await call(ui, "POST", "/api/executions/unknown/cancel"))[0] == 404
    status, body = await call(ui, "POST", f"/api/executions/{later}/retry")
    assert status == 200
    assert (await app.wait_for_result(body["task_id"], timeout=10)).result == 3
    status, meta = await call(ui, "GET", "/api/meta")
    assert meta["cancel"] is True


async def test_store_down_is_503(tmp_path: Path) -> None:
    app = Flowrra()

    @app.task()
    async def job() -> None:
        return None

    app.create_scheduler("sqlite:////nonexistent-dir/for/sure/ui.db")
    ui = UIService(app, guarded=True)
    status, body = await call(ui, "GET", "/api/schedules")
    assert status == 503 and "nonexistent-dir" in body["error"]
    status, body = await call(ui, "GET", "/api/health")
    assert status == 503


async def test_writes_need_json_and_a_matching_origin(app: Flowrra) -> None:
    ui = UIService(app, guarded=True)
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
    made = await app.scheduler.schedule_cron("add", "0 9 * * *")
    for content_type in ["application/x-www-form-urlencoded", "multipart/form-data", "", None]:
        bodiless = {"host": "ui"} if content_type is None else {"content-type": content_type}
        status, _ = await dispatch(ui, "PUT", f"/api/schedules/{made}/disable", {}, b"", bodiless)
        assert status == 415, content_type
    schedule = await app.scheduler.get(made)
    assert schedule is not None and schedule.enabled
    status, _ = await dispatch(
        ui, "PUT", f"/api/schedules/{made}/disable", {}, b"", {"Content-Type": "application/json"}
    )
    assert status == 200  # the page's bodiless write


async def test_a_mount_is_private_by_default(
    app: Flowrra, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flowrra.ui"):
        ui = UIService(app)
    assert ui.access == "private" and not ui.writable and caplog.records == []
    refused = (401, {"error": PRIVATE, "access": "private"})
    for route in ROUTES:
        path = route.path.format(name="add", task_id="x", schedule_id="x")
        body = {"task_name": "add", "cron": "0 9 * * *"} if route.writes else None
        assert await call(ui, route.method, path, body) == refused, path
    assert (await call(ui, "GET", "/api/nothing"))[0] == 401
    assert "public=True" in PRIVATE and "dependencies=" in PRIVATE and "auth=" in PRIVATE
    assert websocket_refusal(ui, {"Host": "ui"}) == (401, PRIVATE)
    assert UIService(app, writable=True).access == "private"  # writable alone opens nothing
    assert await app.scheduler.list() == []


def test_public_is_an_explicit_choice_with_a_warning(
    app: Flowrra, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flowrra.ui"):
        ui = UIService(app, public=True)
    assert ui.access == "public" and ui.writable is False
    [warning] = caplog.records
    assert warning.name == "flowrra.ui" and "public=True" in warning.getMessage()
    with pytest.raises(ValueError, match="public=True"):
        UIService(app, guarded=True, public=True)
    assert UIService(app, guarded=True).writable is True
    assert UIService(app, guarded=True, writable=False).writable is False


def test_websocket_refusal_compares_origin_and_host(app: Flowrra) -> None:
    ui = UIService(app, guarded=True)
    assert websocket_refusal(ui, {"Host": "ui.example:8000"}) is None  # not a browser
    same = {"Host": "ui.example:8000", "Origin": "https://ui.example:8000"}
    assert websocket_refusal(ui, same) is None
    for origin in ["https://evil.example", "https://ui.example", "null"]:
        refusal = websocket_refusal(ui, {"host": "ui.example:8000", "origin": origin})
        assert refusal is not None and refusal[0] == 403 and origin in refusal[1], origin
    assert websocket_refusal(ui, {"origin": "https://ui.example:8000"}) is not None  # no Host


def test_event_json_carries_a_running_tasks_progress() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    running = TaskEvent("t", "slow", TaskStatus.RUNNING, 0, at, progress=Progress(0.25, "a"))
    assert event_json(running) == {
        "task_id": "t",
        "task_name": "slow",
        "status": "running",
        "retries": 0,
        "at": "2026-01-02T03:04:05+00:00",
        "error": None,
        "progress": {"fraction": 0.25, "message": "a"},
    }
    assert event_json(TaskEvent("t", "slow", TaskStatus.SUCCESS, 0, at))["progress"] is None


def test_redact_secrets_masks_by_key_at_any_depth() -> None:
    record = {
        "task_id": "t",
        "error": "password rejected",  # the UI's own text: not looked at
        "args": ["plain", {"Password": "a", "nested": [{"x-api-key": "b"}]}, ("c", {"tok": 1})],
        "kwargs": {
            "API_KEY": "d",
            "apiKey": "e",
            "db_passwd": "f",
            "client_secret": "g",
            "Authorization": {"scheme": "Bearer"},  # the whole value
            "set-cookie": "h",
            "refresh_token": "i",
            "private.key": "j",
            "credentials": ["k"],
            "passphrase": "l",
            "user": "ann",
        },
        "result": {"session": {"csrf_token": "m", "user": "ann"}},
        "headers": {"Authorization": "n", "X-Api-Key": "o", "Cookie": "p", "traceparent": "q"},
        "progress": {"fraction": 0.5, "message": "token refreshed"},  # the UI's own
    }
    before = json.dumps(record)
    masked = redact_secrets(record)
    assert json.dumps(record) == before  # the argument is left as it was
    assert masked["error"] == "password rejected" and masked["task_id"] == "t"
    assert masked["args"] == [
        "plain",
        {"Password": REDACTED, "nested": [{"x-api-key": REDACTED}]},
        ["c", {"tok": 1}],
    ]
    assert {k for k, v in masked["kwargs"].items() if v != REDACTED} == {"user"}
    assert masked["result"] == {"session": {"csrf_token": REDACTED, "user": "ann"}}
    assert masked["headers"] == {
        "Authorization": REDACTED,
        "X-Api-Key": REDACTED,
        "Cookie": REDACTED,
        "traceparent": "q",
    }
    assert masked["progress"] == record["progress"]
    assert redact_secrets({"result": "token"}) == {"result": "token"}  # values are not keys
    assert "api_key" in SECRET_KEYS and "cookie" in SECRET_KEYS
    custom = redact_keys(["SSN"])
    assert custom({"kwargs": {"ssn": 1, "password": 2}}) == {
        "kwargs": {"ssn": REDACTED, "password": 2}
    }


async def test_every_read_and_the_live_stream_go_through_redact(app: Flowrra) -> None:
    seen: list[str] = []

    def hide(record: dict[str, Any]) -> dict[str, Any]:
        seen.append(str(record.get("task_id") or record.get("id")))
        return {**record, "error": "[hidden]" if record.get("error") else None, "seen": True}

    ui = UIService(app, guarded=True, redact=hide)
    sent: list[dict[str, Any]] = []
    ready = asyncio.Event()
    gone = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message == READY:
            ready.set()

    async def receive() -> Any:
        await gone.wait()
        return None

    streaming = asyncio.create_task(stream_events(ui, send, receive))
    await asyncio.wait_for(ready.wait(), 10)
    bad = await app.submit("boom", "secret text")
    await app.wait_for_result(bad, timeout=10)
    await asyncio.sleep(0.1)
    gone.set()
    await asyncio.wait_for(streaming, 10)
    events = [event for message in sent for event in frame_events(message)]
    assert [e["status"] for e in events] == ["pending", "running", "failed"]
    assert all(e["seen"] for e in events) and events[-1]["error"] == "[hidden]"

    assert (await call(ui, "GET", f"/api/executions/{bad}"))[1]["error"] == "[hidden]"
    assert (await call(ui, "GET", "/api/executions"))[1]["items"][0]["seen"] is True
    assert (await call(ui, "GET", "/api/stats"))[1]["recent_failures"][0]["seen"] is True
    status, made = await call(
        ui, "POST", "/api/schedules/interval", {"task_name": "add", "interval": 9}
    )
    assert status == 200 and made["seen"] is True
    assert (await call(ui, "GET", "/api/schedules"))[1][0]["seen"] is True
    assert (await call(ui, "PUT", f"/api/schedules/{made['id']}/disable"))[1]["seen"] is True
    plain = UIService(app, guarded=True, redact=None)
    record = (await call(plain, "GET", f"/api/executions/{bad}"))[1]
    assert record["error"] == "RuntimeError: secret text" and "seen" not in record
