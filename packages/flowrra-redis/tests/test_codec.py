"""The wire format written field by field is the generic encoder's text, byte for byte,
and fails where that one fails."""

from __future__ import annotations

import json
import math
import random
import time
from typing import Any

import pytest
from flowrra_redis.codec import (
    BatchFrame,
    arguments_json,
    decode_result,
    encode_message,
    encode_result,
)

from flowrra import TaskStatus
from flowrra.exceptions import SerializationError
from flowrra.serialization import encode_json
from flowrra.task import TaskMessage, TaskResult, new_task_id

NOW = time.time()
PAYLOADS: list[Any] = [
    None,
    0,
    -7,
    2**70,
    0.0,
    -1.5e-300,
    NOW,
    True,
    False,
    "",
    "plain",
    'quote " backslash \\ slash / tab \t newline \n',
    "é ü 日本 \u2028 \U0001f600 \x00 \x1f",
    "<script>alert(1)</script>",
    [],
    (),
    {},
    [1, "two", None, [3.5, {"k": "v"}]],
    {"nested": {"a": [1, 2, {"b": None}]}, "unicode-ключ": "значение"},
]
ARGS: list[tuple[Any, ...]] = [(), (1,), ("x", None, [1, 2]), tuple(PAYLOADS)]
KWARGS: list[dict[str, Any]] = [{}, {"a": 1}, {"deep": {"x": [NOW, "é"]}, "": ""}]


def generic_message(message: TaskMessage) -> str:
    return encode_json(message.to_dict())


def generic_record(r: TaskResult) -> str:
    """Format 1's 13 fields, in order (what every reader since 0.2.0 reads), then the
    trailing object of later fields when the record has one (a named queue, say)."""
    extension = r.extension()
    return encode_json(
        [
            r.task_id,
            r.status.value,
            r.task_name,
            r.result,
            r.error,
            r.submitted_ts,
            r.started_ts,
            r.finished_ts,
            r.retries,
            r.args,
            r.kwargs,
            r.traceback,
            r.priority,
        ]
        + ([] if extension is None else [extension])
    )


def test_messages_are_the_generic_encoding() -> None:
    rng = random.Random(7)
    names = ["noop", "", "tâche", 'a"b', "x\ny"]
    for _ in range(500):
        message = TaskMessage(
            rng.choice([new_task_id(), "custom id é"]),
            rng.choice(names),
            rng.choice([*ARGS, [1, "list"], []]),  # type: ignore[arg-type]
            rng.choice(KWARGS),
            priority=rng.choice([0, -3, 10**12]),
            attempt=rng.choice([0, 4]),
            eta=rng.choice([None, NOW + 5, 0.0, 17]),
            submitted_at=rng.choice([NOW, 0.0, 1, time.time()]),
        )
        text = encode_message(message)
        assert text == generic_message(message)
        assert TaskMessage.from_dict(json.loads(text)).to_dict() == json.loads(text)


def test_records_are_the_generic_encoding_and_decode_back() -> None:
    rng = random.Random(11)
    for _ in range(1000):
        record = TaskResult(
            rng.choice([new_task_id(), "id-é"]),
            # (CANCELLED is not in format 1's fields: see the test after this one)
            rng.choice([s for s in TaskStatus if s is not TaskStatus.CANCELLED]),
            task_name=rng.choice(["noop", "", "naïve"]),
            result=rng.choice(PAYLOADS),
            error=rng.choice([None, "", "ValueError: <b>é</b>", "x" * 5000]),
            submitted_at=rng.choice([NOW, time.time(), 0.0, None, 3]),
            started_at=rng.choice([None, time.time()]),
            finished_at=rng.choice([None, time.time(), NOW]),
            retries=rng.choice([0, 1, 30]),
            args=rng.choice(ARGS),
            kwargs=rng.choice(KWARGS),
            traceback=rng.choice([None, "Traceback (most recent call last):\n  ..."]),
            priority=rng.choice([0, -1, 99]),
            queue=rng.choice([None, "default", "emails"]),
        )
        text = encode_result(record)
        assert text == generic_record(record) == encode_json(record.to_wire())
        again = decode_result(text)
        assert generic_record(again) == text


def test_a_cancelled_record_is_failed_in_format_1_fields_and_cancelled_after() -> None:
    running = TaskResult(new_task_id(), TaskStatus.RUNNING, task_name="noop", submitted_at=NOW)
    cancelled = TaskResult.cancelled(running, "by a test", finished=time.time())
    text = encode_result(cancelled)
    assert text == encode_json(cancelled.to_wire())
    fields = json.loads(text)
    assert fields[1] == "failed" and fields[4] == "TaskCancelled: by a test"
    assert fields[13] == {"v": 2, "status": "cancelled"}
    again = decode_result(text)
    assert again.status is TaskStatus.CANCELLED and again.is_complete
    assert again == cancelled


def test_a_timestamp_written_twice_is_the_same_text_and_a_new_one_is_its_own() -> None:
    """The one-float memo never hands one float the text of another."""
    first, second = 1733.25, 1733.5
    for submitted in (first, first, second, first, 1e-7, 1e22, -0.0):
        message = TaskMessage("id", "t", submitted_at=submitted)
        assert encode_message(message) == generic_message(message)


def test_a_batch_frame_writes_each_message_and_record_as_the_encoders_do() -> None:
    """submit_many's wire text (flowrra_redis.submits): one frame per batch, each task's
    arguments encoded once, is exactly encode_message's and encode_result's, whatever the
    shared fields hold (text in names and headers that looks like the JSON around the
    id and arguments included)."""
    rng = random.Random(16)
    names = ["noop", "", "tâche", 'a"b', "x\ny", ",[],{},null,", '"args":[],"kwargs":{}']
    headers = [{}, {"trace": "abc"}, {"k": '[],{},null,"x"', "é": "\x00"}]
    for _ in range(300):
        model = TaskMessage(
            "",
            rng.choice(names),
            priority=rng.choice([0, -3, 10**12, 7]),
            attempt=rng.choice([0, 4]),
            eta=rng.choice([None, NOW + 5, 0.0]),
            submitted_at=rng.choice([NOW, 0.0, time.time()]),
        )
        model.headers = rng.choice(headers)
        model.queue = rng.choice(["default", "emails", 'q"u'])
        frame = BatchFrame(model)
        m0, m1, m2, m3 = frame.message
        r0, r1, r2, r3 = frame.record
        for _ in range(5):
            message = TaskMessage(
                rng.choice([new_task_id(), "custom id é", ""]),
                model.name,
                rng.choice([*ARGS, tuple(rng.choice(PAYLOADS) for _ in range(3))]),
                rng.choice(KWARGS),
                priority=model.priority,
                attempt=model.attempt,
                eta=model.eta,
                submitted_at=model.submitted_at,
            )
            message.headers = model.headers
            message.queue = model.queue
            args, kwargs = arguments_json(message)
            id_json = json.dumps(message.id)
            assert f"{m0}{id_json}{m1}{args}{m2}{kwargs}{m3}" == encode_message(message)
            record = f"{r0}{id_json}{r1}{args}{r2}{kwargs}{r3}"
            assert record == encode_result(TaskResult.pending(message))


def test_arguments_json_refuses_as_encode_message_does() -> None:
    message = TaskMessage("id", "t", (object(),))
    with pytest.raises(SerializationError) as refused:
        arguments_json(message)
    with pytest.raises(SerializationError) as expected:
        encode_message(message)
    assert str(refused.value) == str(expected.value)
    assert "the arguments of task 't'" in str(refused.value)


@pytest.mark.parametrize(
    "bad",
    [math.nan, math.inf, -math.inf, object(), {1, 2}, b"bytes", [math.nan]],
)
def test_what_json_cannot_hold_is_refused_as_by_the_generic_encoder(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        generic_record(TaskResult("id", TaskStatus.SUCCESS, task_name="t", result=bad))
    with pytest.raises(SerializationError, match="cannot be encoded as JSON"):
        encode_result(TaskResult("id", TaskStatus.SUCCESS, task_name="t", result=bad))
    with pytest.raises(SerializationError, match="cannot be encoded as JSON"):
        encode_message(TaskMessage("id", "t", (bad,)))
    if isinstance(bad, float):
        with pytest.raises(SerializationError):
            encode_message(TaskMessage("id", "t", eta=bad))
        with pytest.raises(SerializationError):
            encode_result(TaskResult("id", TaskStatus.SUCCESS, task_name="t", submitted_at=bad))


class _Touchy:
    """A result whose truth test raises: the encoder must not run it."""

    def __len__(self) -> int:
        raise RuntimeError("do not ask")


def test_a_result_is_not_truth_tested_before_it_is_refused() -> None:
    with pytest.raises(SerializationError, match="cannot be encoded as JSON"):
        encode_result(TaskResult("id", TaskStatus.SUCCESS, task_name="t", result=_Touchy()))
