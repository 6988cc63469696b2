"""Records and messages carry a format version; readers take the previous format and
ignore what they do not know (rolling upgrades)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowrra import TaskResult
from flowrra.serialization import encode_json
from flowrra.task import WIRE_FORMAT, Progress, TaskMessage

# Written by the format-1 encoder (flowrra-redis before the version marker), byte for byte.
FORMAT_1_MESSAGE = (
    '{"id":"0123456789abcdef0123456789abcdef","name":"wire.add","args":[2,[3,"\\u00e9"]],'
    '"kwargs":{"extra":4},"priority":5,"attempt":1,"eta":null,"submitted_at":1765000000.25}'
)
FORMAT_1_RECORD = (
    '["0123456789abcdef0123456789abcdef","success","wire.add",{"sum":9},null,1765000000.25,'
    '1765000001.5,1765000002.75,1,[2,[3,"\\u00e9"]],{"extra":4},null,5]'
)
MESSAGE = TaskMessage.from_dict(json.loads(FORMAT_1_MESSAGE))
SUCCEEDED = TaskResult.succeeded(MESSAGE, {"sum": 9}, started=1765000001.5, finished=1765000002.75)


def test_a_message_carries_the_format_version_and_what_format_1_had() -> None:
    data = MESSAGE.to_dict()
    assert data["v"] == WIRE_FORMAT == 2
    assert {k: v for k, v in data.items() if k != "v"} == json.loads(FORMAT_1_MESSAGE)


def test_a_format_1_message_is_read() -> None:
    read = MESSAGE
    assert (read.id, read.name, read.args, read.kwargs) == (
        "0123456789abcdef0123456789abcdef",
        "wire.add",
        (2, [3, "é"]),
        {"extra": 4},
    )
    assert (read.priority, read.attempt, read.eta, read.submitted_at) == (5, 1, None, 1765000000.25)


def test_a_later_message_is_read_by_the_fields_this_release_knows() -> None:
    later = {**MESSAGE.to_dict(), "v": 9, "shard": 3, "queue_hint": "mail"}
    assert TaskMessage.from_dict(later).to_dict() == MESSAGE.to_dict()


def test_headers_travel_in_the_message_only_when_there_are_some() -> None:
    assert "headers" not in MESSAGE.to_dict()
    with_headers = MESSAGE.next_attempt(1765000009.0)
    with_headers.headers = {"traceparent": "00-abc-def-01", "tenant": "é"}
    data = json.loads(encode_json(with_headers.to_dict()))
    assert data["headers"] == {"traceparent": "00-abc-def-01", "tenant": "é"}
    read = TaskMessage.from_dict(data)
    assert read.headers == with_headers.headers
    assert read.next_attempt(1.0).headers == with_headers.headers  # retries keep them


def test_a_record_keeps_headers_and_progress_in_format_2s_object() -> None:
    message = MESSAGE.next_attempt(1765000009.0)
    message.headers = {"traceparent": "00-abc-def-01"}
    record = TaskResult.running(message, started=1765000010.0)
    record.progress = Progress(0.4, "parsed 4,000 rows")
    wire = json.loads(encode_json(record.to_wire()))
    assert len(wire) == 14  # format 1's 13 fields, which a 0.1.8-era reader unpacks, then these
    assert wire[13] == {
        "v": 2,
        "headers": {"traceparent": "00-abc-def-01"},
        "progress": [0.4, "parsed 4,000 rows"],
    }
    read = TaskResult.from_wire(wire)
    assert (read.headers, read.progress) == (
        {"traceparent": "00-abc-def-01"},
        Progress(0.4, "parsed 4,000 rows"),
    )
    assert read == record


def test_a_record_is_format_1s_list() -> None:
    """So that a reader of format 1, which unpacks exactly 13 items, reads it."""
    assert encode_json(SUCCEEDED.to_wire()) == FORMAT_1_RECORD


def test_a_format_1_record_is_read() -> None:
    assert TaskResult.from_wire(json.loads(FORMAT_1_RECORD)) == SUCCEEDED


def test_a_later_record_is_read_by_the_fields_this_release_knows() -> None:
    later = [*json.loads(FORMAT_1_RECORD), {"v": 9, "shard": 3, "st": "x"}, "more"]
    assert TaskResult.from_wire(later) == SUCCEEDED


def test_a_named_queue_travels_in_the_trailing_object_and_only_then() -> None:
    record = TaskResult.from_wire(json.loads(FORMAT_1_RECORD))
    assert record.queue == "default" and record.to_wire() == json.loads(FORMAT_1_RECORD)
    record.queue = "mail"
    wire = record.to_wire()
    assert wire[13] == {"v": 2, "queue": "mail"} and TaskResult.from_wire(wire) == record
    assert record.to_dict()["queue"] == "mail"
    assert TaskResult.from_dict(record.to_dict()) == record


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"task_id": "a"}, TypeError),
        (json.loads(FORMAT_1_RECORD)[:12], ValueError),
        (["a", "no-such-status", *json.loads(FORMAT_1_RECORD)[2:]], KeyError),
        (
            [*json.loads(FORMAT_1_RECORD)[:5], "yesterday", *json.loads(FORMAT_1_RECORD)[6:]],
            TypeError,
        ),
    ],
)
def test_a_malformed_record_is_refused(fields: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        TaskResult.from_wire(fields)


def test_unreserved_keeps_what_was_queued_and_drops_what_a_reserve_added() -> None:
    from flowrra.task import TaskMessage

    queued = TaskMessage("a" * 32, "job", (1,), {"k": "v"}, priority=3, attempt=2, eta=5.0)
    queued.headers = {"tenant": "acme"}
    queued.queue = "emails"
    queued.receipt = b"member"
    queued.undeliverable = "reason"
    again = queued.unreserved()
    assert (again.id, again.name, again.args, again.kwargs) == ("a" * 32, "job", (1,), {"k": "v"})
    assert (again.priority, again.attempt, again.eta) == (3, 2, 5.0)
    assert (again.headers, again.queue) == ({"tenant": "acme"}, "emails")
    assert again.receipt is None and again.undeliverable is None
    assert queued.next_attempt(9.0).attempt == 3
