"""The wire format of what Flowrra keeps in Redis: task messages and result records.

Both are compact JSON, exactly the text :func:`flowrra.serialization.encode_json` gives for
``message.to_dict()`` and ``record.to_wire()`` (tests hold the two equal). They are
written field by field here because they are the per-task cost of a queue: through the
generic encoder a no-argument message took 2.05 µs (eight dict keys, each escaped on every
call) and a PENDING record 1.41 µs; here they take about 0.6 and 0.75 µs. What a user's
task carries (arguments, results, errors) still goes through ``encode_json``, so its checks
and errors stay the same.

A record is the list ``[task_id, status, task_name, result, error, submitted_ts,
started_ts, finished_ts, retries, args, kwargs, traceback, priority]`` (timestamps as Unix
seconds), then, when the record has headers or progress, the object of format 2's fields
(:meth:`~flowrra.task.TaskResult.extension`); a CANCELLED record says ``"failed"`` in the
list and ``"status": "cancelled"`` in that object. A message carries the format version
(``"v"``) and its headers when it has some. See :mod:`flowrra.task` for the rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring_ascii as _string
from typing import Any

from flowrra.exceptions import SerializationError
from flowrra.serialization import encode_json
from flowrra.task import DEFAULT_QUEUE, WIRE_FORMAT, TaskMessage, TaskResult, TaskStatus

__all__ = [
    "BatchFrame",
    "arguments_json",
    "decode_result",
    "encode_message",
    "encode_result",
    "number_text",
]

_STATUS_JSON = {status: _string(status.value) for status in TaskStatus}
# Format 1's fields cannot name CANCELLED: it is written "failed", and the trailing object
# says "cancelled" (see flowrra.task).
_STATUS_JSON[TaskStatus.CANCELLED] = _string(TaskStatus.FAILED.value)
_CANCELLED = TaskStatus.CANCELLED
_float_repr = float.__repr__
_int_repr = int.__repr__


#: The last float written and its text. Writing a float costs 0.3 µs (the shortest repr),
#: and the messages and records of one ``submit_many`` share one timestamp object. Swapped
#: as one tuple, so threads never see a float with another's text.
_last_float: tuple[float, str] = (0.0, "0.0")


def number_text(value: Any) -> str:
    """A timestamp, count or priority as ``encode_json`` writes it (``null`` for None);
    also how a score goes to Redis (hiredis writes a float argument at 0.4 µs)."""
    global _last_float
    cls = value.__class__
    if cls is float:
        last = _last_float
        if value is last[0]:
            return last[1]
        if value - value == 0.0:  # finite: NaN and infinities raise in encode_json
            text = _float_repr(value)
            _last_float = (value, text)
            return text
    if cls is int:
        return _int_repr(value)
    if value is None:
        return "null"
    return encode_json(value)


_number = number_text
_MESSAGE_START = f'{{"v":{WIRE_FORMAT},"id":'
_from_wire = TaskResult.from_wire
_loads = json.loads


def _payload(value: Any) -> str:
    """Arguments, a result or an error text as ``encode_json`` writes it, with the common
    empty and text cases done without it."""
    if value is None:
        return "null"
    cls = value.__class__
    if cls is str:
        return _string(value)
    # The class first: truth-testing a user's object would run its code (and raise
    # outside the errors the callers turn into SerializationError).
    if (cls is tuple or cls is list) and not value:
        return "[]"
    if cls is dict and not value:
        return "{}"
    return encode_json(value)


def _queue_item(queue: str) -> str:
    """``,"queue":...``: the named queue of a message not in the default one."""
    return f',"queue":{_string(queue)}'


def _headers_item(headers: Mapping[str, str]) -> str:
    return f',"headers":{encode_json(dict(headers))}'


def _extension(result: TaskResult) -> str:
    """The trailing object of format 2's fields, after a comma; empty when there is none."""
    if (
        not result.headers
        and result.progress is None
        and result.status is not _CANCELLED
        and result.queue == DEFAULT_QUEUE
    ):
        return ""
    return f",{encode_json(result.extension())}"


def encode_message(message: TaskMessage) -> str:
    """A message as its broker stores it: the JSON of ``message.to_dict()``; raises
    SerializationError (not expected after ``submit``'s own check)."""
    # The usual values (text ids, no arguments, int priority, float times) are written
    # inline: a function call per field would cost as much as the generic encoder.
    args, kwargs, eta = message.args, message.kwargs, message.eta
    priority, attempt = message.priority, message.attempt
    try:
        return (
            f'{_MESSAGE_START}{_payload(message.id)},"name":{_payload(message.name)},"args":'
            f"{'[]' if args == () else _payload(list(args))},"  # list(): as to_dict does
            f'"kwargs":{"{}" if kwargs == {} else _payload(kwargs)},'
            f'"priority":{_int_repr(priority) if priority.__class__ is int else _number(priority)},'
            f'"attempt":{_int_repr(attempt) if attempt.__class__ is int else _number(attempt)},'
            f'"eta":{"null" if eta is None else _number(eta)},'
            f'"submitted_at":{_number(message.submitted_at)}'
            f"{_headers_item(message.headers) if message.headers else ''}"
            f"{'' if message.queue == DEFAULT_QUEUE else _queue_item(message.queue)}}}"
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(
            f"{_culprit(message.name, args, kwargs, 'message')} cannot be encoded as JSON "
            f"({exc}){_ADVICE}"
        ) from exc


def encode_result(result: TaskResult) -> str:
    """A record as compact JSON (see the module docstring); raises SerializationError."""
    value, error, started, finished = (
        result.result,
        result.error,
        result.started_ts,
        result.finished_ts,
    )
    args, kwargs, traceback = result.args, result.kwargs, result.traceback
    retries, priority = result.retries, result.priority
    headers = result.headers or None  # (NO_HEADERS: the shared empty one, falsy)
    progress = result.progress
    status = result.status
    plain = (
        headers is None
        and progress is None
        and status is not _CANCELLED
        and result.queue is DEFAULT_QUEUE  # the message's own constant (else: compared)
    )
    try:
        return (
            f"[{_payload(result.task_id)},{_STATUS_JSON[status]},"
            f"{_payload(result.task_name)},{'null' if value is None else _payload(value)},"
            f"{'null' if error is None else _payload(error)},{_number(result.submitted_ts)},"
            f"{'null' if started is None else _number(started)},"
            f"{'null' if finished is None else _number(finished)},"
            f"{_int_repr(retries) if retries.__class__ is int else _number(retries)},"
            f"{'[]' if args == () else _payload(args)},"
            f"{'{}' if kwargs == {} else _payload(kwargs)},"
            f"{'null' if traceback is None else _payload(traceback)},"
            f"{_int_repr(priority) if priority.__class__ is int else _number(priority)}"
            f"{'' if plain else _extension(result)}]"
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(
            f"{_culprit(result.task_name or '?', args, kwargs, 'result')} cannot be encoded "
            "as JSON "
            f"({exc}){_ADVICE}"
        ) from exc


def arguments_json(message: TaskMessage) -> tuple[str, str]:
    """The JSON of ``message``'s arguments and keyword arguments, as
    :func:`encode_message` and :func:`encode_result` write them (a list and an object);
    raises the SerializationError ``encode_message`` would."""
    args, kwargs = message.args, message.kwargs
    try:
        return (
            "[]" if args == () else _payload(list(args)),
            "{}" if kwargs == {} else _payload(kwargs),
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(
            f"{_culprit(message.name, args, kwargs, 'message')} cannot be encoded as JSON "
            f"({exc}){_ADVICE}"
        ) from exc


def _frame(
    encode: Callable[[str, tuple[Any, ...], dict[str, Any]], str],
) -> tuple[str, str, str, str]:
    """The four texts around the id, the arguments and the keyword arguments in what
    ``encode(id, args, kwargs)`` writes, found by where it changes when each changes
    (an id ``""`` becomes ``"0"``, ``[]`` becomes ``[0]``, ``{}`` becomes ``{"0":0}``):
    nothing else in the text can be mistaken for them."""
    empty = encode("", (), {})
    at = [
        _first_difference(empty, encode("0", (), {})) - 1,
        _first_difference(empty, encode("", (0,), {})) - 1,
        _first_difference(empty, encode("", (), {"0": 0})) - 1,
    ]
    assert at[0] < at[1] < at[2], "id, then args, then kwargs"
    return (
        empty[: at[0]],
        empty[at[0] + 2 : at[1]],
        empty[at[1] + 2 : at[2]],
        empty[at[2] + 2 :],
    )


def _first_difference(a: str, b: str) -> int:
    return next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)


class BatchFrame:
    """What the messages of one batch (one task, one priority, one time: a
    ``submit_many``) and their PENDING records share on the wire, taken from one of them:
    each message's body is ``message[0] + id + message[1] + args + message[2] + kwargs +
    message[3]`` (the id as :func:`json string <json.encoder.encode_basestring_ascii>`,
    the arguments as :func:`arguments_json` gives them), the exact text of
    :func:`encode_message`, and each record's the same with ``record``, the text of
    :func:`encode_result` for ``TaskResult.pending(message)``. The arguments are encoded
    once for both, and nothing else per task. A message fits the frame when its other
    fields are the model's, the same objects (equal is not enough: ``1`` and ``1.0`` are
    equal and written apart)."""

    __slots__ = (
        "attempt",
        "eta",
        "headers",
        "message",
        "name",
        "priority",
        "queue",
        "record",
        "submitted_at",
    )

    def __init__(self, model: TaskMessage) -> None:
        self.name = model.name
        self.priority = model.priority
        self.attempt = model.attempt
        self.eta = model.eta
        self.submitted_at = model.submitted_at
        self.headers = model.headers
        self.queue = model.queue

        def like(task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskMessage:
            message = TaskMessage(
                task_id,
                model.name,
                args,
                kwargs,
                priority=model.priority,
                attempt=model.attempt,
                eta=model.eta,
                submitted_at=model.submitted_at,
            )
            message.headers = model.headers
            message.queue = model.queue
            return message

        self.message = _frame(lambda *parts: encode_message(like(*parts)))
        self.record = _frame(lambda *parts: encode_result(TaskResult.pending(like(*parts))))


_ADVICE = (
    "; pass plain data (str, int, float, bool, None, lists and dicts of them) and rebuild "
    "objects in the task"
)


def _culprit(name: str, args: Any, kwargs: Any, otherwise: str) -> str:
    """What of a record or message could not be encoded: its arguments, its keyword
    arguments, or else (``otherwise``) its result or the message itself."""
    for value, what in ((args, "arguments"), (kwargs, "keyword arguments")):
        if value:
            try:
                _payload(value)
            except (TypeError, ValueError, RecursionError):
                return f"the {what} of task {name!r}"
    return f"the {otherwise} of task {name!r}"


def decode_result(data: bytes | str) -> TaskResult:
    """The inverse of :func:`encode_result`, for records of every format version; raises
    ``ValueError``, ``TypeError`` or ``KeyError`` on malformed data."""
    return _from_wire(_loads(data))
