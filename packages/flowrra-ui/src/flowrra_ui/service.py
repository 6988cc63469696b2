"""The web UI's JSON API, without a web framework: one :class:`UIService` per mounted UI
(it closes over its app, so two mounts never share state), a table of :data:`ROUTES`,
:func:`dispatch`, which the FastAPI, Quart and Django adapters call with what they parsed
from the request, and :func:`websocket_refusal`, which they call before accepting the live
stream. Every path, status code, body shape and access rule lives here once.

Who may see what is decided here too, so every adapter behaves the same:

- a mount is **guarded** (the adapter runs the host's auth hook before every request and
  before the WebSocket), **public** (the host opted in with ``public=True``: anyone who
  reaches it may read), or **private** (neither: the default). A private mount serves the
  page, which says how to add auth, and answers every API request and the WebSocket with
  401 and the same advice: no task data without a decision of the host.
- everything read goes through the mount's ``redact`` hook (:mod:`flowrra_ui.redaction`),
  which masks secrets by default.

Errors are :class:`ApiError` with a status and a message, rendered as
``{"error": message}``: 400 for bad input, 401 on a private mount, 403 for a write on a
read-only UI or a cross-site request, 404 for an unknown id or name, 415 for a write not
sent as JSON, 501 for the dead letters of a broker that keeps none that can be worked
(not a :class:`~flowrra.protocols.DeadLetters`), 503 when the result store, broker or
schedule store is down.

The operator's actions (the dead letters: listing them, requeueing, purging; running a
schedule now) are for those who may write, as retries and schedule changes are: a
read-only mount answers them 403, the listing of dead letters included.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from flowrra import dead_letters
from flowrra.cancellation import CancelOutcome
from flowrra.cursors import MAX_CURSOR
from flowrra.events import TaskEvent
from flowrra.exceptions import (
    BackendError,
    BrokerError,
    ScheduleError,
    ScheduleNotFoundError,
    ScheduleStoreError,
    TaskNotRegisteredError,
)
from flowrra.monitor import CHUNK, Monitor
from flowrra.protocols import Cancellation, DeadLetters
from flowrra.task import TaskStatus
from flowrra_ui.live import READY, stream_events
from flowrra_ui.redaction import Redact, redact_secrets

if TYPE_CHECKING:
    from flowrra.app import Flowrra
    from flowrra.protocols import AppScheduler

__all__ = [
    "PRIVATE",
    "READY",
    "ROUTES",
    "Access",
    "ApiError",
    "LiveTransport",
    "Route",
    "UIService",
    "dispatch",
    "event_json",
    "openapi_operation",
    "stream_events",
    "websocket_refusal",
]

logger = logging.getLogger("flowrra.ui")

#: ``"guarded"``, ``"public"`` or ``"private"``: see the module docs.
Access = Literal["guarded", "public", "private"]
#: How an adapter streams live events to the page (``/api/meta``'s ``live``).
LiveTransport = Literal["websocket", "sse"]

PRIVATE = (
    "this Flowrra UI is private: it shows no task data until it is given an auth hook "
    "(FastAPI: create_router(app, dependencies=[Depends(your_auth)]); Quart: "
    "create_blueprint(app, auth=your_auth); Django guards it by itself), or is opened "
    "to anyone who can reach it with public=True (read-only). See 'Auth' in the Web UI docs."
)
WRITES_DISABLED = (
    "this UI is read-only: mount it with an auth hook (FastAPI: dependencies=[...], Quart: "
    "auth=..., Django: staff members by default) to enable retries, schedule changes and "
    "the dead letters"
)


class ApiError(Exception):
    """A request the API refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}, got {value}")
    return value


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


#: Ids one dead-letter request may name.
MAX_IDS = 1000


def _chosen_ids(body: Any) -> list[str] | None:
    """The dead letters a requeue or purge names: ``{"ids": [...]}`` (those tasks) or
    ``{"all": true}`` (``None``: every one). Anything else is refused, an empty body too,
    so that no request works on every dead letter without saying so."""
    data = body if isinstance(body, dict) else {}
    ids = data.get("ids")
    if data.get("all") is True and ids is None:
        return None
    if (
        isinstance(ids, list)
        and 0 < len(ids) <= MAX_IDS
        and all(isinstance(i, str) and i for i in ids)
        and "all" not in data
    ):
        return ids
    raise ApiError(
        400,
        f'name the dead letters: {{"ids": ["<task id>", ...]}} (1 to {MAX_IDS} ids) or '
        '{"all": true}',
    )


def _message_fields(raw: Any, truncated: bool) -> dict[str, Any]:
    """What a dead letter's raw message shows: its ``args``, ``kwargs``, ``headers``,
    ``priority`` and ``attempt``, read from the JSON of the message (after the
    ``<priority key><sequence>|`` a Redis queue member starts with), or ``None`` each when
    it cannot be read (cut to the broker's byte bound, or not JSON). The raw text itself is
    never shown: it holds every argument, unmasked."""
    fields: dict[str, Any] = dict.fromkeys(("args", "kwargs", "headers", "priority", "attempt"))
    if not isinstance(raw, str) or truncated:
        return fields
    message: Any = None
    for candidate in (raw.partition("|")[2], raw):
        try:
            message = json.loads(candidate)
        except ValueError:
            continue
        break
    if not isinstance(message, dict):
        return fields
    for key in fields:
        fields[key] = message.get(key)
    if fields["headers"] is None:
        fields["headers"] = {}
    return fields


class UIService:
    """What the UI's endpoints do, for one app, and who may see them.

    ``guarded``: the adapter runs the host's auth hook before every request and before the
    WebSocket. ``public``: the host opted in to an open UI (a warning is logged: anyone
    who reaches it reads every task). Neither: the mount is private (see the module docs);
    both is a mistake (``ValueError``). ``writable`` allows retries and schedule changes
    (default: on a guarded mount only); otherwise they are refused with 403. ``redact``
    is applied to everything read (:mod:`flowrra_ui.redaction`; ``None``: nothing masked).
    ``live`` says how the adapter streams live events (:mod:`flowrra_ui.live`), for the
    page to connect the same way: ``"websocket"`` (``<mount>/ws``) or ``"sse"``
    (Server-Sent Events, ``<mount>/events``).
    """

    def __init__(
        self,
        app: Flowrra,
        *,
        guarded: bool = False,
        public: bool = False,
        writable: bool | None = None,
        redact: Redact | None = redact_secrets,
        sample: int = 1000,
        live: LiveTransport = "websocket",
    ) -> None:
        if guarded and public:
            raise ValueError(
                "public=True opens the UI to everyone; it cannot be combined with an auth "
                "hook (drop one of them)"
            )
        self.app = app
        self.access: Access = "guarded" if guarded else "public" if public else "private"
        wanted = guarded if writable is None else writable
        self.writable = wanted and self.access != "private"
        if live not in ("websocket", "sse"):
            raise ValueError(f"live must be 'websocket' or 'sse', got {live!r}")
        self.live: LiveTransport = live
        self.redact = redact
        self.monitor = Monitor(app, sample=sample)
        if self.access == "public":
            logger.warning(
                "The Flowrra UI is public (public=True): anyone who can reach it sees every "
                "task's name, arguments, result and error%s%s. Give it an auth hook instead "
                "unless something in front of it (a proxy, a middleware) checks who comes in.",
                " (values under secret-looking keys masked)" if redact is not None else "",
                ", and may retry tasks and change schedules" if self.writable else "",
            )

    def _shown(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` as this mount shows it: through its ``redact`` hook."""
        return self.redact(record) if self.redact is not None else record

    # -- reads ---------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        """What the page needs to know about this mount: who may see it, whether it accepts
        changes (and, if not, how to enable them), whether the app has a scheduler, and
        how live events come (``live``: ``"websocket"`` or ``"sse"``)."""
        from flowrra_ui._version import __version__

        return {
            "access": self.access,
            "writable": self.writable,
            "hint": None if self.writable else WRITES_DISABLED,
            "scheduler": self.app.scheduler is not None,
            "dead_letters": isinstance(self.app.broker, DeadLetters),
            "cancel": isinstance(self.app.broker, Cancellation),
            "live": self.live,
            "version": __version__,
        }

    async def workers(self) -> list[dict[str, Any]]:
        return await self.monitor.workers()

    async def queues(self) -> dict[str, dict[str, Any]]:
        return await self.monitor.queue_stats()

    async def stats(self, query: Mapping[str, str]) -> dict[str, Any]:
        minutes = _int(query, "minutes", 15, 1, 240)
        stats = await self.monitor.stats(minutes=minutes)
        stats["recent_failures"] = [self._shown(r) for r in stats["recent_failures"]]
        return stats

    async def health(self) -> dict[str, Any]:
        checks: dict[str, str] = {}
        try:
            await self.app.backend.list(limit=1)
            checks["backend"] = "ok"
        except Exception as exc:
            checks["backend"] = f"down: {exc}"
        try:
            await self.monitor.queues()
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"down: {exc}"
        if self.app.scheduler is not None:
            try:
                await self.monitor.schedules()
                checks["scheduler"] = "ok"
            except Exception as exc:
                checks["scheduler"] = f"down: {exc}"
        healthy = all(value == "ok" for value in checks.values())
        body = {"status": "ok" if healthy else "unavailable", "checks": checks}
        if not healthy:
            raise ApiError(503, f"unavailable: {checks}")
        return body

    def tasks(self) -> list[dict[str, Any]]:
        return self.monitor.tasks()

    def task(self, name: str) -> dict[str, Any]:
        for info in self.monitor.tasks():
            if info["name"] == name:
                return info
        raise ApiError(404, f"no registered task named {name!r}")

    async def executions(self, query: Mapping[str, str]) -> dict[str, Any]:
        status = query.get("status") or None
        if status is not None and status not in {s.value for s in TaskStatus}:
            raise ApiError(400, f"status must be one of {[s.value for s in TaskStatus]}")
        limit = _int(query, "limit", 50, 1, 500)
        if "offset" in query:
            raise ApiError(400, "offset is not accepted: page with the next_cursor of each page")
        cursor = query.get("cursor") or None
        if cursor is not None and len(cursor) > MAX_CURSOR:
            raise ApiError(400, f"cursor must be at most {MAX_CURSOR} characters")
        task_name = query.get("task") or None
        if task_name is not None and len(task_name) > 1000:
            raise ApiError(400, "task must be at most 1000 characters")
        try:
            items, next_cursor = await self.monitor.executions_page(
                status=status, task_name=task_name, limit=limit, cursor=cursor
            )
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        shown: list[dict[str, Any]] = []
        for start in range(0, len(items), CHUNK):  # a large page yields to the loop
            if start:
                await asyncio.sleep(0)
            shown += [self._shown(item) for item in items[start : start + CHUNK]]
        return {"items": shown, "limit": limit, "next_cursor": next_cursor}

    async def execution(self, task_id: str) -> dict[str, Any]:
        found = await self.monitor.execution(task_id)
        if found is None:
            raise ApiError(404, f"no task with id {task_id!r}")
        return self._shown(found)

    async def schedules(self) -> list[dict[str, Any]]:
        return [self._shown(schedule) for schedule in await self.monitor.schedules()]

    def event(self, event: TaskEvent) -> dict[str, Any]:
        """A live task event as this mount sends it: :func:`event_json`, redacted."""
        return self._shown(event_json(event))

    # -- writes --------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if not self.writable:
            raise ApiError(403, WRITES_DISABLED)

    def _scheduler(self) -> AppScheduler:
        scheduler = self.app.scheduler
        if scheduler is None:
            raise ApiError(
                404, "this app has no scheduler: call app.create_scheduler() where the app is made"
            )
        return scheduler

    async def retry(self, task_id: str) -> dict[str, Any]:
        """Submit a failed or cancelled task again, with the same arguments and priority."""
        self._check_writable()
        record = await self.app.backend.get(task_id)
        if record is None:
            raise ApiError(404, f"no task with id {task_id!r}")
        if record.status is not TaskStatus.FAILED and record.status is not TaskStatus.CANCELLED:
            raise ApiError(
                400, f"only failed or cancelled tasks can be retried; this one is {record.status}"
            )
        try:
            handle = self.app.registry.get_or_raise(record.task_name or "")
        except TaskNotRegisteredError as exc:
            raise ApiError(400, str(exc)) from None
        new_id = await handle.with_options(priority=record.priority).submit(
            *record.args, **record.kwargs
        )
        return {"task_id": new_id, "retry_of": task_id}

    async def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel a task (see ``app.cancel``): ``{"task_id", "outcome", "cancelled"}``, where
        ``outcome`` is ``removed``, ``signalled``, ``already_complete`` or ``unknown`` (404)."""
        self._check_writable()
        if not isinstance(self.app.broker, Cancellation):
            raise ApiError(501, f"{type(self.app.broker).__name__} cannot cancel tasks")
        outcome = await self.app.cancel(task_id, "cancelled from the web UI")
        if outcome is CancelOutcome.UNKNOWN:
            raise ApiError(404, f"no task with id {task_id!r}")
        return {"task_id": task_id, "outcome": outcome.value, "cancelled": outcome.done}

    async def create_schedule(self, kind: str, body: Any) -> dict[str, Any]:
        self._check_writable()
        scheduler = self._scheduler()
        data = _object(body)
        common = {
            key: data[key]
            for key in ("args", "kwargs", "enabled", "description", "priority")
            if key in data
        }
        if "args" in common and not isinstance(common["args"], list):
            raise ApiError(400, "args must be a JSON array")
        if "kwargs" in common and not isinstance(common["kwargs"], dict):
            raise ApiError(400, "kwargs must be a JSON object")
        task_name = data.get("task_name")
        if not isinstance(task_name, str) or not task_name:
            raise ApiError(400, "task_name is required")
        if kind == "cron":
            schedule_id = await scheduler.schedule_cron(
                task_name, data.get("cron", ""), timezone=data.get("timezone", "UTC"), **common
            )
        elif kind == "interval":
            interval: Any = data.get("interval")  # the scheduler checks it
            schedule_id = await scheduler.schedule_interval(task_name, interval, **common)
        else:
            schedule_id = await scheduler.schedule_once(
                task_name, _instant(data.get("run_at")), **common
            )
        made = await scheduler.get(schedule_id)
        if made is None:
            raise ApiError(404, f"schedule {schedule_id!r} was deleted as soon as it was made")
        return self._shown(made.to_dict())

    async def set_enabled(self, schedule_id: str, enabled: bool) -> dict[str, Any]:
        self._check_writable()
        scheduler = self._scheduler()
        changed = await (scheduler.enable if enabled else scheduler.disable)(schedule_id)
        return self._shown(changed.to_dict())

    async def delete_schedule(self, schedule_id: str) -> dict[str, Any]:
        self._check_writable()
        if not await self._scheduler().delete(schedule_id):
            raise ApiError(404, f"no schedule with id {schedule_id!r}")
        return {"deleted": schedule_id}

    async def run_schedule(self, schedule_id: str) -> dict[str, Any]:
        """Submit a schedule's task now, with its arguments and priority, as the scheduler
        does when it fires. The schedule itself is unchanged: its next run stays."""
        self._check_writable()
        schedule = await self._scheduler().get(schedule_id)
        if schedule is None:
            raise ApiError(404, f"no schedule with id {schedule_id!r}")
        try:
            handle = self.app.registry.get_or_raise(schedule.task_name)
        except TaskNotRegisteredError as exc:
            raise ApiError(400, str(exc)) from None
        task_id = await handle.with_options(priority=schedule.priority).submit(
            *schedule.args, **schedule.kwargs
        )
        return {"task_id": task_id, "schedule_id": schedule.id, "task_name": schedule.task_name}

    # -- dead letters (operators: those who may write) -----------------------------------

    def _dead_letters(self) -> DeadLetters:
        self._check_writable()
        broker = self.app.broker
        if not isinstance(broker, DeadLetters):
            raise ApiError(
                501,
                f"dead letters are not available for the broker {type(broker).__name__}: "
                "it keeps none that can be listed, requeued or purged from here (the Redis "
                "broker does)",
            )
        return broker

    def _dead_letter_shown(self, entry: dict[str, Any]) -> dict[str, Any]:
        """A dead letter as the UI shows it: its reason, id, task name, time, the size of
        what the broker kept and whether it was cut, whether it can be requeued, and the
        message's arguments and headers, through the mount's ``redact`` hook."""
        raw = entry.get("raw")
        truncated = bool(entry.get("truncated"))
        at = entry.get("at")
        shown = {
            "id": entry.get("id"),
            "task_name": entry.get("name"),
            "reason": entry.get("reason"),
            "at": (
                datetime.fromtimestamp(at, UTC).isoformat()
                if isinstance(at, int | float) and not isinstance(at, bool)
                else None
            ),
            "size": len(raw.encode()) if isinstance(raw, str) else 0,
            "truncated": truncated,
            "requeueable": bool(entry.get("requeueable")),
            **_message_fields(raw, truncated),
        }
        return self._shown(shown)

    async def dead_letter_list(self, query: Mapping[str, str]) -> dict[str, Any]:
        broker = self._dead_letters()
        limit = _int(query, "limit", 100, 1, 1000)
        entries = await broker.dead_letters(limit)
        return {"items": [self._dead_letter_shown(e) for e in entries], "limit": limit}

    async def _listed_ids(self) -> set[str]:
        entries = await self._dead_letters().dead_letters(limit=1_000_000)
        return {str(e["id"]) for e in entries if e.get("id")}

    async def requeue_dead_letters(self, body: Any) -> dict[str, Any]:
        """Queue again the dead letters named (``ids``, or ``all``), each task's record
        reset to PENDING first (:func:`flowrra.dead_letters.requeue`). Naming only ids
        that are not dead letters is 404; only ones that cannot be requeued (cut to the
        broker's byte bound, or unreadable) 400."""
        self._dead_letters()
        ids = _chosen_ids(body)
        queued = await dead_letters.requeue(self.app, ids)
        if ids is not None and not queued:
            if not set(ids) & await self._listed_ids():
                raise ApiError(404, f"no dead letter of the task(s) {', '.join(ids)}")
            raise ApiError(
                400,
                "these dead letters cannot be requeued (their message was cut to the "
                "broker's byte bound, or cannot be read): purge them instead",
            )
        skipped = [] if ids is None else [i for i in ids if i not in set(queued)]
        return {"requeued": queued, "skipped": skipped}

    async def purge_dead_letters(self, body: Any) -> dict[str, Any]:
        """Delete the dead letters named (``ids``, or ``all``); 404 when ids name none."""
        self._dead_letters()
        ids = _chosen_ids(body)
        purged = await dead_letters.purge(self.app, ids)
        if ids is not None and purged == 0:
            raise ApiError(404, f"no dead letter of the task(s) {', '.join(ids)}")
        return {"purged": purged}


def _instant(value: Any) -> datetime:
    """An ISO 8601 instant from a request. It must carry its offset: the client's local
    time is not the server's, so a bare one is refused rather than guessed."""
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None:
        raise ApiError(400, f"run_at must be an ISO 8601 instant, got {value!r}")
    if when.utcoffset() is None:
        raise ApiError(
            400,
            f"run_at must be an ISO 8601 instant with its offset (e.g. {value}Z or "
            f"{value}+01:00), got {value!r}",
        )
    return when


@dataclass(frozen=True)
class Route:
    """One endpoint: method, path pattern (``{name}`` matches one segment), whether it
    changes anything, and what it does given the service, the path parameters, the query
    string and the JSON body."""

    method: str
    path: str
    writes: bool
    summary: str
    handler: Callable[[UIService, dict[str, str], Mapping[str, str], Any], Awaitable[Any]]

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")


async def _sync(value: Any) -> Any:
    return value


ROUTES: list[Route] = [
    Route("GET", "/api/stats", False, "Totals, throughput, queues, workers, recent failures",
          lambda s, p, q, b: s.stats(q)),
    Route("GET", "/api/meta", False, "Whether this UI accepts changes, and has a scheduler",
          lambda s, p, q, b: _sync(s.meta())),
    Route("GET", "/api/workers", False, "Workers alive, from their heartbeats",
          lambda s, p, q, b: s.workers()),
    Route("GET", "/api/queues", False, "Each named queue's depths, and its messages by priority",
          lambda s, p, q, b: s.queues()),
    Route("GET", "/api/health", False, "Whether the broker, backend and scheduler answer",
          lambda s, p, q, b: s.health()),
    Route("GET", "/api/tasks", False, "Registered tasks and their options",
          lambda s, p, q, b: _sync(s.tasks())),
    Route("GET", "/api/tasks/{name}", False, "One registered task",
          lambda s, p, q, b: _sync(s.task(p["name"]))),
    Route("GET", "/api/executions", False,
          "Recent executions, newest first, a page at a time (status, task, limit, cursor)",
          lambda s, p, q, b: s.executions(q)),
    Route("GET", "/api/executions/{task_id}", False,
          "One execution with its headers, progress and traceback",
          lambda s, p, q, b: s.execution(p["task_id"])),
    Route("POST", "/api/executions/{task_id}/retry", True,
          "Submit a failed or cancelled task again",
          lambda s, p, q, b: s.retry(p["task_id"])),
    Route("POST", "/api/executions/{task_id}/cancel", True,
          "Cancel a queued, delayed or running task",
          lambda s, p, q, b: s.cancel(p["task_id"])),
    Route("GET", "/api/schedules", False, "Every schedule with its next run",
          lambda s, p, q, b: s.schedules()),
    Route("POST", "/api/schedules/cron", True, "Create a cron schedule",
          lambda s, p, q, b: s.create_schedule("cron", b)),
    Route("POST", "/api/schedules/interval", True, "Create an interval schedule",
          lambda s, p, q, b: s.create_schedule("interval", b)),
    Route("POST", "/api/schedules/once", True, "Create a one-time schedule",
          lambda s, p, q, b: s.create_schedule("once", b)),
    Route("PUT", "/api/schedules/{schedule_id}/enable", True, "Enable a schedule",
          lambda s, p, q, b: s.set_enabled(p["schedule_id"], True)),
    Route("PUT", "/api/schedules/{schedule_id}/disable", True, "Disable a schedule",
          lambda s, p, q, b: s.set_enabled(p["schedule_id"], False)),
    Route("DELETE", "/api/schedules/{schedule_id}", True, "Delete a schedule",
          lambda s, p, q, b: s.delete_schedule(p["schedule_id"])),
    Route("POST", "/api/schedules/{schedule_id}/run", True,
          "Submit a schedule's task now (its next run is unchanged)",
          lambda s, p, q, b: s.run_schedule(p["schedule_id"])),
    Route("GET", "/api/dead-letters", False,
          "The newest dead letters, masked (for those who may write)",
          lambda s, p, q, b: s.dead_letter_list(q)),
    Route("POST", "/api/dead-letters/requeue", True,
          "Queue dead letters again ({\"ids\": [...]} or {\"all\": true})",
          lambda s, p, q, b: s.requeue_dead_letters(b)),
    Route("POST", "/api/dead-letters/purge", True,
          "Delete dead letters ({\"ids\": [...]} or {\"all\": true})",
          lambda s, p, q, b: s.purge_dead_letters(b)),
]  # fmt: skip


def _same_origin(origin: str, host: str | None) -> bool:
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()


def _is_json(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == "application/json"


def _lower(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {k.lower(): v for k, v in (headers or {}).items()}


def websocket_refusal(
    service: UIService, headers: Mapping[str, str] | None
) -> tuple[int, str] | None:
    """Why the live stream's handshake must be refused, as ``(HTTP status, message)``, or
    ``None`` to accept it. Adapters call this before ``accept`` (after the host's auth
    hook): a private mount refuses (401), and so does a handshake whose ``Origin`` (which
    browsers always send) names another site than the ``Host`` it was sent to (403): a
    page elsewhere cannot read the stream with the visitor's cookies. ``headers`` are the
    handshake's."""
    if service.access == "private":
        return 401, PRIVATE
    head = _lower(headers)
    origin = head.get("origin")
    if origin is not None and not _same_origin(origin, head.get("host")):
        return 403, f"cross-site WebSocket refused (Origin {origin})"
    return None


async def dispatch(
    service: UIService,
    method: str,
    path: str,
    query: Mapping[str, str] | None = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """Answer one API request: ``(status, JSON body)``. ``path`` is relative to the mount
    point (``/api/stats``), ``body`` the raw request body, ``headers`` the request headers
    with lower-case names. Never raises for a request's fault; adapters render the body as
    JSON with that status.

    On a private mount every request is answered 401 with :data:`PRIVATE` (and
    ``"access": "private"``, which the page reads).

    Cross-site protection for the adapters without their own (Django has CSRF too): a
    write must be sent as JSON (``Content-Type: application/json``, with or without a
    body), which a plain HTML form cannot send and which a script elsewhere cannot send
    without the browser asking this server first (CORS), and an ``Origin`` header, when
    present, must name this host."""
    if service.access == "private":
        return 401, {"error": PRIVATE, "access": "private"}
    head = _lower(headers)
    allowed = []
    for route in ROUTES:
        match = route.pattern.match(path)
        if match is None:
            continue
        if route.method != method.upper():
            allowed.append(route.method)
            continue
        try:
            if route.writes:
                origin = head.get("origin")
                if origin is not None and not _same_origin(origin, head.get("host")):
                    raise ApiError(403, f"cross-site request refused (Origin {origin})")
            payload: Any = None
            if (route.writes or body) and not _is_json(head.get("content-type")):
                raise ApiError(415, "send the request as JSON (Content-Type: application/json)")
            if body:
                try:
                    payload = json.loads(body)
                except ValueError:
                    raise ApiError(400, "the request body is not valid JSON") from None
            return 200, await route.handler(service, match.groupdict(), query or {}, payload)
        except ApiError as exc:
            return exc.status, {"error": exc.message}
        except ScheduleNotFoundError as exc:
            return 404, {"error": str(exc)}
        except (ScheduleError, ValueError) as exc:
            return 400, {"error": str(exc)}
        except (ScheduleStoreError, BackendError, BrokerError, OSError) as exc:
            return 503, {"error": f"unavailable: {exc}"}
    if allowed:
        return 405, {"error": f"{method.upper()} is not allowed here; use {', '.join(allowed)}"}
    return 404, {"error": f"no API endpoint {path!r}"}


def event_json(event: TaskEvent) -> dict[str, Any]:
    """A task event as the live stream sends it. ``progress`` is what a RUNNING task last
    reported (``{"fraction": 0.5, "message": "..."}``; ``None`` if nothing), each report
    being an event of its own."""
    return {
        "task_id": event.task_id,
        "task_name": event.task_name,
        "status": event.status.value,
        "retries": event.retries,
        "at": event.at.isoformat() if event.at is not None else None,
        "error": event.error,
        "progress": None if event.progress is None else event.progress._asdict(),
    }


_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
_SCHEDULE_COMMON: dict[str, Any] = {
    "task_name": {"type": "string", "description": "a registered task"},
    "args": {"type": "array", "items": {}},
    "kwargs": {"type": "object"},
    "enabled": {"type": "boolean", "default": True},
    "description": {"type": "string"},
    "priority": {"type": "integer", "default": 0},
}
_BODIES: dict[str, dict[str, Any]] = {
    "/api/schedules/cron": {
        "cron": {"type": "string", "example": "0 9 * * *"},
        "timezone": {"type": "string", "default": "UTC", "example": "Europe/Paris"},
    },
    "/api/schedules/interval": {"interval": {"type": "number", "exclusiveMinimum": 0}},
    "/api/schedules/once": {"run_at": {"type": "string", "format": "date-time"}},
}
_ID_BODY: dict[str, Any] = {
    "type": "object",
    "description": 'the task ids of the dead letters, or {"all": true} for every one',
    "properties": {
        "ids": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_IDS},
        "all": {"type": "boolean", "enum": [True]},
    },
}
_ID_BODIES = ("/api/dead-letters/requeue", "/api/dead-letters/purge")
_QUERIES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "/api/stats": [("minutes", {"type": "integer", "minimum": 1, "maximum": 240, "default": 15})],
    "/api/dead-letters": [
        ("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
    ],
    "/api/executions": [
        ("status", {"type": "string", "enum": [s.value for s in TaskStatus]}),
        ("task", {"type": "string"}),
        ("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
        (
            "cursor",
            {
                "type": "string",
                "maxLength": MAX_CURSOR,
                "description": "the next_cursor of the page before (none: the first)",
            },
        ),
    ],
}


def openapi_operation(route: Route) -> dict[str, Any]:
    """The OpenAPI description of a route's parameters, body and answers, for adapters
    whose framework publishes an OpenAPI document (FastAPI)."""
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", route.path)
    ]
    parameters += [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in _QUERIES.get(route.path, [])
    ]
    errors = {
        str(code): {
            "description": text,
            "content": {"application/json": {"schema": _ERROR}},
        }
        for code, text in [
            (400, "bad input"),
            (401, "a private UI (no auth hook, not public=True)"),
            (403, "read-only UI or cross-site request"),
            (404, "unknown id or name"),
            *([(415, "not sent as application/json")] if route.writes else []),
            *(
                [(501, "the broker keeps no dead letters that can be worked")]
                if route.path.startswith("/api/dead-letters")
                else []
            ),
            (503, "a store or the broker is down"),
        ]
    }
    operation: dict[str, Any] = {"parameters": parameters, "responses": errors}
    if route.path in _ID_BODIES:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ID_BODY}},
        }
    fields = _BODIES.get(route.path)
    if fields is not None:
        required = ["task_name", next(iter(fields))]
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {**_SCHEDULE_COMMON, **fields},
                        "required": required,
                    }
                }
            },
        }
    return operation
