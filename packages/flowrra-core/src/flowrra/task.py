"""What travels and what is recorded: the task message, its status, and its result.

A :class:`TaskMessage` is what a broker carries from ``submit`` to a worker. A
:class:`TaskResult` is what the result backend holds about one task id: its current status
and, once complete, its return value or error. Both are built by name (keyword arguments,
or the named constructors such as :meth:`TaskResult.running`) and cross process
boundaries as JSON-ready data; nothing is ever unpickled.

The wire format and its versions (see the docs, "Wire format and rolling upgrades"):

- A message is the object of :meth:`TaskMessage.to_dict`, with ``"v"``, the format version
  (:data:`WIRE_FORMAT`). Format 1 (before the marker) is the same object without ``"v"``.
  New fields are new keys; readers ignore keys they do not know.
- A record is the list of :meth:`TaskResult.to_wire`: the 13 fields of format 1, in their
  order, for ever. Fields added later go in a 14th item, an object with ``"v"`` and the
  new fields by name, written only when the record carries one of them, so a reader that
  knows only the 13 (which fails on any other length) reads every record that fits in
  them. Readers ignore names in that object they do not know, and items after it.
  Format 2's object holds ``"headers"`` (text to text), ``"progress"`` (the list
  ``[fraction, message]``; see :meth:`TaskResult.extension`) and ``"queue"`` (the named
  queue of a task not in the default one). A message's ``"headers"`` is
  an object of text to text, left out when empty.
- A CANCELLED record is written with the status ``"failed"`` in the 13 fields (its error
  says ``TaskCancelled: ...``) and ``"status": "cancelled"`` in the trailing object: a
  format-2 reader from before cancellation (and the Lua of its workers) sees a complete
  task that did not succeed, never an unknown status, and never overwrites it.
"""

from __future__ import annotations

import os as _os
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from itertools import count as _count
from random import getrandbits as _getrandbits
from types import MappingProxyType
from typing import Any, NamedTuple, overload

from flowrra.times import as_aware

__all__ = [
    "DEFAULT_QUEUE",
    "MAX_HEADERS_SIZE",
    "WIRE_FORMAT",
    "Progress",
    "Task",
    "TaskMessage",
    "TaskResult",
    "TaskStatus",
    "Timestamp",
    "new_task_id",
]

#: The version of the wire format this release writes: ``"v"`` in every message, and in
#: the trailing object of a record that has one. 1 was the format without a marker.
WIRE_FORMAT = 2
#: Fields of a record's list in format 1; what later formats add comes after them.
RECORD_FIELDS = 13
#: The queue a task goes to unless it (``@app.task(queue=...)``), the app's routes or the
#: submit names another.
DEFAULT_QUEUE = "default"


class Progress(NamedTuple):
    """What a running task reported of its progress (``set_progress``)."""

    #: From 0 (nothing done) to 1 (all done).
    fraction: float
    #: What it says it is doing, if anything.
    message: str | None = None


class TaskStatus(Enum):
    """Where a task is in its lifecycle.

    ``PENDING`` (queued) → ``RUNNING`` → ``SUCCESS`` | ``FAILED``, with ``RETRYING`` between
    a failed attempt and the next one. ``CANCELLED`` (``app.cancel``) ends a task in any
    of the first three, or ``RETRYING``. ``SUCCESS``, ``FAILED`` and ``CANCELLED`` are
    final (:attr:`TaskResult.is_complete`).
    """

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"

    # Members are singletons: hash them by identity, in C. Enum's own __hash__ is a Python
    # call, and records are looked up by status several times per task.
    __hash__ = object.__hash__


_STATUS_OF = {status.value: status for status in TaskStatus}
_PENDING = TaskStatus.PENDING
_RUNNING = TaskStatus.RUNNING
_SUCCESS = TaskStatus.SUCCESS
_FAILED = TaskStatus.FAILED
_RETRYING = TaskStatus.RETRYING
_CANCELLED = TaskStatus.CANCELLED
#: The status a CANCELLED record carries in format 1's fields (see the module docstring).
_CANCELLED_AS = TaskStatus.FAILED.value
_new = object.__new__
#: The headers of a message that has none: one shared read-only mapping, so a message
#: costs no dict of its own (middleware that adds headers is given a dict first).
NO_HEADERS: Mapping[str, str] = MappingProxyType({})


_register_at_fork = getattr(_os, "register_at_fork", None)
_process_bits = 0
_next_in_process = _count().__next__


def _new_process() -> None:
    """This process's 64 random bits of every id, and a sequence from a random start
    (at import, and again in a forked child, which would otherwise repeat its parent's)."""
    global _process_bits, _next_in_process
    _process_bits = _getrandbits(64) << 64
    _next_in_process = _count(_getrandbits(62)).__next__  # never reaches 2**64


_new_process()
if _register_at_fork is not None:  # POSIX
    _register_at_fork(after_in_child=_new_process)


def new_task_id() -> str:
    """A 128-bit id as 32 hex characters (the shape of ``uuid4().hex``): 64 random bits
    drawn once per process (again in a forked child), then a 64-bit sequence from a
    random start.

    Ids of one process are consecutive, so each joins Redis's sorted sets (the resend
    guard, the result indexes) next to the one before it rather than at a random place:
    a quarter less Redis CPU per task in a ``submit_many`` (bench/README.md, issue 16),
    at the cost of a random id. They are unique across processes and machines for all
    practical purposes (two processes' random parts match with a chance of 1 in 2**64),
    and identifiers, not secrets: a process's next id is guessable.
    """
    return (_process_bits | _next_in_process()).to_bytes(16).hex()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


Timestamp = datetime | float | None
"""What a :class:`TaskResult` accepts for a point in time: a datetime (naive means local
time, see :func:`flowrra.times.as_aware`), Unix seconds, or ``None``."""


def _seconds(value: Timestamp) -> float | None:
    if value is None or value.__class__ is float:
        return value
    if isinstance(value, datetime):
        return as_aware(value).timestamp()
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"a TaskResult timestamp is a datetime, Unix seconds or None, not {value!r}")


def _utc(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


class TaskResult:
    """The backend's record of one task: status, and the outcome once complete.

    ``retries`` counts the retries made so far (0 for a task that succeeded first time).
    ``headers`` are the message's (see :class:`TaskMessage`). ``progress`` is what a
    running task last reported with ``current_task().set_progress(...)``: a
    :class:`Progress` (``fraction`` from 0 to 1, ``message``), ``None`` until it does.
    ``error`` is ``"ExceptionType: message"``; ``traceback`` holds the formatted traceback
    of the last failed attempt. ``queue`` is the named queue of its message.

    ``submitted_at``, ``started_at`` and ``finished_at`` are timezone-aware UTC datetimes.
    They are kept as Unix seconds (``submitted_ts``, ``started_ts``, ``finished_ts``) and
    turned into datetimes when read: a worker records three results per task and most
    timestamps are never looked at, so the engine does not pay for datetimes nobody reads.
    The constructor and the setters take a datetime (a naive one is local time, as in
    0.1.8) or Unix seconds.

    Build one by name: ``TaskResult(task_id, status, result=..., error=...)`` (every field
    after ``status`` is keyword-only: two of the same type can never be swapped), or with
    the constructor named after the status, from the message it records:
    :meth:`pending`, :meth:`running`, :meth:`succeeded`, :meth:`retrying`, :meth:`failed`.
    """

    __slots__ = (
        "args",
        "error",
        "finished_ts",
        "headers",
        "kwargs",
        "priority",
        "progress",
        "queue",
        "result",
        "retries",
        "started_ts",
        "status",
        "submitted_ts",
        "task_id",
        "task_name",
        "traceback",
    )

    def __init__(
        self,
        task_id: str,
        status: TaskStatus,
        *,
        task_name: str | None = None,
        result: Any = None,
        error: str | None = None,
        submitted_at: Timestamp = None,
        started_at: Timestamp = None,
        finished_at: Timestamp = None,
        retries: int = 0,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        traceback: str | None = None,
        priority: int = 0,
        headers: Mapping[str, str] | None = None,
        progress: Progress | None = None,
        queue: str | None = None,
    ) -> None:
        self.task_id = task_id
        self.status = status
        self.task_name = task_name
        self.result = result
        self.error = error
        self.submitted_ts = (
            submitted_at
            if submitted_at is None or submitted_at.__class__ is float
            else _seconds(submitted_at)
        )
        self.started_ts = (
            started_at
            if started_at is None or started_at.__class__ is float
            else _seconds(started_at)
        )
        self.finished_ts = (
            finished_at
            if finished_at is None or finished_at.__class__ is float
            else _seconds(finished_at)
        )
        self.retries = retries
        self.args = args
        self.kwargs = kwargs if kwargs is not None else {}
        self.traceback = traceback
        self.priority = priority
        self.headers = headers if headers else NO_HEADERS
        self.progress = progress
        self.queue = queue or DEFAULT_QUEUE

    # -- named constructors: the record of a message in each status ------------------------

    @classmethod
    def pending(cls, message: TaskMessage) -> TaskResult:
        """``message`` is queued (what ``submit`` records)."""
        return _record_of(cls, message, _PENDING)

    @classmethod
    def running(cls, message: TaskMessage, *, started: float) -> TaskResult:
        """An attempt at ``message`` started at ``started`` (Unix seconds)."""
        return _record_of(cls, message, _RUNNING, started)

    @classmethod
    def succeeded(
        cls, message: TaskMessage, value: Any, *, started: float | None, finished: float
    ) -> TaskResult:
        """The attempt started at ``started`` returned ``value`` at ``finished``."""
        record = _record_of(cls, message, _SUCCESS, started, finished)
        record.result = value
        return record

    @classmethod
    def retrying(
        cls,
        message: TaskMessage,
        error: str,
        *,
        started: float | None,
        traceback: str | None = None,
    ) -> TaskResult:
        """The attempt started at ``started`` failed with ``error``; another one follows."""
        return _failure(_record_of(cls, message, _RETRYING, started), error, traceback)

    @classmethod
    def failed(
        cls,
        message: TaskMessage,
        error: str,
        *,
        finished: float,
        started: float | None = None,
        traceback: str | None = None,
    ) -> TaskResult:
        """``message`` failed for good with ``error`` at ``finished`` (``started``: when
        its last attempt started, if one did)."""
        return _failure(_record_of(cls, message, _FAILED, started, finished), error, traceback)

    @property
    def submitted_at(self) -> datetime | None:
        """When the task was submitted (UTC)."""
        return _utc(self.submitted_ts)

    @submitted_at.setter
    def submitted_at(self, value: Timestamp) -> None:
        self.submitted_ts = _seconds(value)

    @property
    def started_at(self) -> datetime | None:
        """When the latest attempt started running (UTC)."""
        return _utc(self.started_ts)

    @started_at.setter
    def started_at(self, value: Timestamp) -> None:
        self.started_ts = _seconds(value)

    @property
    def finished_at(self) -> datetime | None:
        """When the task completed (UTC); ``None`` until then."""
        return _utc(self.finished_ts)

    @finished_at.setter
    def finished_at(self, value: Timestamp) -> None:
        self.finished_ts = _seconds(value)

    @classmethod
    def cancelled(cls, record: TaskResult, reason: str, *, finished: float) -> TaskResult:
        """``record``'s task, CANCELLED at ``finished`` (Unix seconds): its error is
        ``"TaskCancelled: <reason>"``; what it has of the task is kept, its progress
        dropped."""
        copy = _new(cls)
        for name in cls.__slots__:
            setattr(copy, name, getattr(record, name))
        copy.status = _CANCELLED
        copy.result = None
        copy.error = f"TaskCancelled: {reason}"
        copy.traceback = None
        copy.finished_ts = finished
        copy.progress = None
        return copy

    @property
    def is_complete(self) -> bool:
        """True once the task succeeded, failed for good (no retry left) or was cancelled."""
        status = self.status
        return status is _SUCCESS or status is _FAILED or status is _CANCELLED

    @property
    def is_success(self) -> bool:
        """True if the task completed successfully."""
        return self.status is TaskStatus.SUCCESS

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (status as its string value, datetimes as ISO 8601)."""
        return {
            "task_id": self.task_id,
            "status": self.status.value,
            "task_name": self.task_name,
            "result": self.result,
            "error": self.error,
            "traceback": self.traceback,
            "submitted_at": _iso(self.submitted_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "retries": self.retries,
            "args": list(self.args),
            "kwargs": self.kwargs,
            "priority": self.priority,
            "headers": dict(self.headers),
            "progress": None if self.progress is None else self.progress._asdict(),
            "queue": self.queue,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskResult:
        """Rebuild a result from :meth:`to_dict` output (missing optional keys default)."""
        return cls(
            task_id=data["task_id"],
            status=TaskStatus(data["status"]),
            task_name=data.get("task_name"),
            result=data.get("result"),
            error=data.get("error"),
            traceback=data.get("traceback"),
            submitted_at=_from_iso(data.get("submitted_at")),
            started_at=_from_iso(data.get("started_at")),
            finished_at=_from_iso(data.get("finished_at")),
            retries=int(data.get("retries", 0)),
            args=tuple(data.get("args") or ()),
            kwargs=dict(data.get("kwargs") or {}),
            priority=int(data.get("priority", 0)),
            headers=_headers(data.get("headers")),
            progress=_progress(data.get("progress")),
            queue=data.get("queue") if isinstance(data.get("queue"), str) else None,
        )

    def to_wire(self) -> list[Any]:
        """The record as durable backends store it: the 13-item list of format 1 (times as
        Unix seconds), JSON-ready, then the object of format 2's fields when the record
        has one (see the module docstring)."""
        fields = [
            self.task_id,
            _CANCELLED_AS if self.status is _CANCELLED else self.status.value,
            self.task_name,
            self.result,
            self.error,
            self.submitted_ts,
            self.started_ts,
            self.finished_ts,
            self.retries,
            list(self.args),
            self.kwargs,
            self.traceback,
            self.priority,
        ]
        extension = self.extension()
        if extension is not None:
            fields.append(extension)
        return fields

    def extension(self) -> dict[str, Any] | None:
        """The fields after format 1's 13, as the trailing object of :meth:`to_wire`
        (``None`` when the record has none of them: the list stays format 1's)."""
        headers, progress, queue = self.headers, self.progress, self.queue
        if (
            not headers
            and progress is None
            and self.status is not _CANCELLED
            and queue == DEFAULT_QUEUE
        ):
            return None
        extension: dict[str, Any] = {"v": WIRE_FORMAT}
        if self.status is _CANCELLED:
            extension["status"] = _CANCELLED.value
        if headers:
            extension["headers"] = dict(headers)
        if progress is not None:
            extension["progress"] = list(progress)
        if queue != DEFAULT_QUEUE:
            extension["queue"] = queue
        return extension

    @classmethod
    def from_wire(cls, fields: list[Any]) -> TaskResult:
        """The record :meth:`to_wire` gave, in any format: the 13 fields of format 1 are
        read; what follows them (fields of later formats) is ignored. Raises ``TypeError``,
        ``ValueError`` or ``KeyError`` (an unknown status) on malformed input."""
        if fields.__class__ is not list:
            raise TypeError(f"a task record is a JSON list, not {type(fields).__name__}")
        extension = None
        if len(fields) != RECORD_FIELDS:
            if len(fields) < RECORD_FIELDS:
                raise ValueError(f"a task record has {RECORD_FIELDS} fields, not {len(fields)}")
            extension = fields[RECORD_FIELDS]
            fields = fields[:RECORD_FIELDS]
        record = _new(cls)
        (
            record.task_id,
            status,
            record.task_name,
            record.result,
            record.error,
            submitted,
            started,
            finished,
            record.retries,
            args,
            kwargs,
            record.traceback,
            record.priority,
        ) = fields
        record.status = _STATUS_OF[status]
        record.submitted_ts = (
            submitted if submitted is None or submitted.__class__ is float else _seconds(submitted)
        )
        record.started_ts = (
            started if started is None or started.__class__ is float else _seconds(started)
        )
        record.finished_ts = (
            finished if finished is None or finished.__class__ is float else _seconds(finished)
        )
        record.args = tuple(args)
        record.kwargs = kwargs if kwargs is not None else {}
        if extension.__class__ is dict:
            assert isinstance(extension, dict)
            record.headers = _headers(extension.get("headers"))
            record.progress = _progress(extension.get("progress"))
            if extension.get("status") == "cancelled" and record.status is _FAILED:
                record.status = _CANCELLED
            queue = extension.get("queue")
            record.queue = queue if queue.__class__ is str and queue else DEFAULT_QUEUE
        else:
            record.headers = NO_HEADERS
            record.progress = None
            record.queue = DEFAULT_QUEUE
        return record

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, TaskResult)
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return (
            f"TaskResult(task_id={self.task_id!r}, status={self.status}, "
            f"task_name={self.task_name!r}, result={self.result!r}, error={self.error!r}, "
            f"retries={self.retries}, submitted_at={self.submitted_at}, "
            f"started_at={self.started_at}, finished_at={self.finished_at})"
        )


def _record_of(
    cls: type[TaskResult],
    message: TaskMessage,
    status: TaskStatus,
    started: float | None = None,
    finished: float | None = None,
) -> TaskResult:
    """``message``'s record in ``status``, attempted from ``started`` to ``finished``: what
    the named constructors of :class:`TaskResult` start from. (Fields are set one by one,
    and the arguments are positional: a worker makes three records per task, and a class
    called with keywords, or keyword defaults, cost more than the rest of it.)"""
    record = _new(cls)
    record.task_id = message.id
    record.status = status
    record.task_name = message.name
    record.result = None
    record.error = None
    record.submitted_ts = message.submitted_at or None
    record.started_ts = started
    record.finished_ts = finished
    record.retries = message.attempt
    record.args = message.args
    record.kwargs = message.kwargs
    record.traceback = None
    record.priority = message.priority
    record.headers = message.headers
    record.progress = None
    record.queue = message.queue
    return record


def _headers(value: Any) -> Mapping[str, str]:
    """Headers read back from the wire: an object of text to text (anything else: none)."""
    if not value or value.__class__ is not dict:
        return NO_HEADERS
    return {str(key): str(item) for key, item in value.items()}


def _progress(value: Any) -> Progress | None:
    """Progress read back: ``[fraction, message]`` (or ``{"fraction", "message"}``)."""
    if isinstance(value, dict):
        value = [value.get("fraction"), value.get("message")]
    if not isinstance(value, list | tuple) or not value:
        return None
    fraction = value[0]
    message = value[1] if len(value) > 1 else None
    if fraction.__class__ not in (int, float):
        return None
    return Progress(float(fraction), message if message.__class__ is str else None)


#: Characters a message's headers may hold in all, names and values (HTTP servers stop
#: at about 8 KiB of headers too): they travel with every attempt of a task and are
#: stored in each of its records, so they are for context, not for data.
MAX_HEADERS_SIZE = 8192


def check_headers(headers: Any) -> dict[str, str]:
    """``headers`` as a message carries them: a new dict of ``str`` to ``str``; raises
    ``TypeError`` for anything else (a header is text, as in HTTP), and ``ValueError``
    for an empty name or more than :data:`MAX_HEADERS_SIZE` characters in all."""
    if headers is None:
        return {}
    if headers.__class__ is not dict and not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a dict of str to str, got {type(headers).__name__}")
    size = 0
    for key, value in headers.items():
        if key.__class__ is not str or value.__class__ is not str:
            raise TypeError(f"headers must be a dict of str to str, got {key!r}: {value!r}")
        if not key:
            raise ValueError("a header's name must not be empty")
        size += len(key) + len(value)
    if size > MAX_HEADERS_SIZE:
        raise ValueError(
            f"headers hold {size:,} characters, more than the {MAX_HEADERS_SIZE:,} allowed "
            "(pass data as the task's arguments)"
        )
    return dict(headers)


def _failure(record: TaskResult, error: str, traceback: str | None) -> TaskResult:
    record.error = error
    record.traceback = traceback
    return record


class TaskMessage:
    """One delivery's worth of work: which task, with what, how urgent, and when.

    ``priority``: lower runs first. ``attempt``: 0 for the first run, *n* for the *n*-th
    retry. ``eta``: Unix time before which the message must not run (``None``: now).
    ``submitted_at``: Unix time of the original submit. Brokers may attach their own
    delivery data (a lease token, the raw bytes) in ``receipt``; it never travels.
    ``undeliverable``: set by a broker that could not decode what it delivered (the
    reason); the worker dead-letters such a message and records it FAILED if it has an id.
    ``headers``: text to text, set by ``with_options(headers=...)`` and by middleware (a
    trace context, say); they travel with every attempt and are stored with the record.
    Assign a dict to set them (a new message has the shared empty :data:`NO_HEADERS`).
    ``queue``: the named queue it waits in (:data:`DEFAULT_QUEUE` unless set); set it
    after construction, like ``headers``.

    ``id``, ``name``, ``args`` and ``kwargs`` may be given by position, the rest by name.
    """

    __slots__ = (
        "args",
        "attempt",
        "eta",
        "headers",
        "id",
        "kwargs",
        "name",
        "priority",
        "queue",
        "receipt",
        "submitted_at",
        "undeliverable",
    )

    def __init__(
        self,
        id: str,
        name: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        priority: int = 0,
        attempt: int = 0,
        eta: float | None = None,
        submitted_at: float = 0.0,
    ) -> None:
        self.id = id
        self.name = name
        self.args = args
        self.kwargs = kwargs if kwargs is not None else {}
        self.priority = priority
        self.attempt = attempt
        self.eta = eta
        self.submitted_at = submitted_at
        # Not a parameter: a keyword-only default costs every call a dict lookup.
        self.headers: Mapping[str, str] = NO_HEADERS
        self.queue = DEFAULT_QUEUE
        self.receipt: Any = None
        self.undeliverable: str | None = None

    def unreserved(self) -> TaskMessage:
        """The same message as it was queued: its fields, headers and queue, without what a
        broker's reserve put on it (``receipt``, ``undeliverable``), to queue it again
        elsewhere (a sharded broker moving a limited task's message to its home shard)."""
        return self.next_attempt(self.eta, self.attempt)

    def next_attempt(self, eta: float | None, attempt: int | None = None) -> TaskMessage:
        """The message for the next retry, due at ``eta`` (with the same headers), as
        attempt ``attempt`` (default: the next)."""
        message = TaskMessage(
            self.id,
            self.name,
            self.args,
            self.kwargs,
            priority=self.priority,
            attempt=self.attempt + 1 if attempt is None else attempt,
            eta=eta,
            submitted_at=self.submitted_at,
        )
        message.headers = self.headers
        message.queue = self.queue
        return message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; what durable brokers store. ``"v"`` is the wire format's
        version (:data:`WIRE_FORMAT`); ``"headers"`` is there when there are some, and
        ``"queue"`` when it is not :data:`DEFAULT_QUEUE`."""
        data: dict[str, Any] = {
            "v": WIRE_FORMAT,
            "id": self.id,
            "name": self.name,
            "args": list(self.args),
            "kwargs": self.kwargs,
            "priority": self.priority,
            "attempt": self.attempt,
            "eta": self.eta,
            "submitted_at": self.submitted_at,
        }
        if self.headers:
            data["headers"] = dict(self.headers)
        if self.queue != DEFAULT_QUEUE:
            data["queue"] = self.queue
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskMessage:
        """Rebuild a message from :meth:`to_dict` output of any format version: keys it
        does not know are ignored, missing optional ones default. Raises ``KeyError`` /
        ``TypeError`` / ``ValueError`` on malformed input (brokers dead-letter such
        messages)."""
        args = data.get("args") or []
        kwargs = data.get("kwargs") or {}
        if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
            raise TypeError("args must be a list and kwargs an object")
        eta = data.get("eta")
        headers = data.get("headers")
        if headers is not None and not isinstance(headers, dict):
            raise TypeError("headers must be an object")
        message = cls(
            id=str(data["id"]),
            name=str(data["name"]),
            args=tuple(args),
            kwargs=kwargs,
            priority=int(data.get("priority", 0)),
            attempt=int(data.get("attempt", 0)),
            eta=float(eta) if eta is not None else None,
            submitted_at=float(data.get("submitted_at", 0.0)),
        )
        if headers:
            message.headers = _headers(headers)
        queue = data.get("queue")
        if queue is not None:
            if queue.__class__ is not str or not queue:
                raise TypeError("queue must be a non-empty string")
            message.queue = queue
        return message

    def __repr__(self) -> str:
        return (
            f"TaskMessage(id={self.id!r}, name={self.name!r}, priority={self.priority}, "
            f"attempt={self.attempt}, eta={self.eta}, queue={self.queue!r})"
        )


# flowrra 0.1.8 exported the queued unit of work as ``Task``.
Task = TaskMessage


def queued_message(
    task_id: str,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    priority: int,
    eta: float | None,
    submitted_at: float,
    queue: str,
) -> TaskMessage:
    """A new message (attempt 0, no headers), every field by position: what a batch
    submit makes per call. Half the cost of ``TaskMessage(...)`` with its keywords, and
    the queue set in the same step."""
    message = _new(TaskMessage)
    message.id = task_id
    message.name = name
    message.args = args
    message.kwargs = kwargs
    message.priority = priority
    message.attempt = 0
    message.eta = eta
    message.submitted_at = submitted_at
    message.headers = NO_HEADERS
    message.queue = queue
    message.receipt = None
    message.undeliverable = None
    return message


class PendingRecords(Sequence[TaskResult]):
    """The PENDING records of ``messages``, then of ``waiting`` (a chain's later steps),
    each built when read (:meth:`TaskResult.pending`, at the time of reading).

    What a batch submit hands a broker that stores the records with its messages
    (:class:`~flowrra.protocols.RecordedEnqueue`): such a broker may encode each record
    from its message, the arguments once for both, and build none of them; the app
    reads them only to publish events."""

    __slots__ = ("messages", "waiting")

    def __init__(
        self, messages: Sequence[TaskMessage], waiting: Sequence[TaskMessage] = ()
    ) -> None:
        self.messages = messages
        self.waiting = waiting

    def __len__(self) -> int:
        return len(self.messages) + len(self.waiting)

    @overload
    def __getitem__(self, index: int) -> TaskResult: ...

    @overload
    def __getitem__(self, index: slice) -> list[TaskResult]: ...

    def __getitem__(self, index: int | slice) -> TaskResult | list[TaskResult]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        size = len(self.messages)
        if index < 0:
            index += len(self)
        if 0 <= index < size:
            return _record_of(TaskResult, self.messages[index], _PENDING)
        if size <= index < len(self):
            return _record_of(TaskResult, self.waiting[index - size], _PENDING)
        raise IndexError(index)

    def __iter__(self) -> Iterator[TaskResult]:
        for message in self.messages:
            yield _record_of(TaskResult, message, _PENDING)
        for message in self.waiting:
            yield _record_of(TaskResult, message, _PENDING)
