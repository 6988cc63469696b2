"""Records and messages are built by name: keyword arguments after the first few, or the
constructors named after each status. Two fields of one type can never be swapped."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from flowrra import TaskResult, TaskStatus
from flowrra.task import TaskMessage

MESSAGE = TaskMessage(
    "0123456789abcdef0123456789abcdef",
    "wire.add",
    (2, [3, "é"]),
    {"extra": 4},
    priority=5,
    attempt=1,
    submitted_at=1765000000.25,
)


def test_fields_after_the_status_are_given_by_name() -> None:
    """Two fields of one type can no longer be swapped by position: the call fails."""
    with pytest.raises(TypeError):
        TaskResult("id", TaskStatus.SUCCESS, "name")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        TaskMessage("id", "name", (), {}, 5)  # type: ignore[call-arg]


def test_the_documented_forms_still_work() -> None:
    """The README's TaskResult (fields by name) and the custom backend's to_dict/from_dict."""
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    made = TaskResult(
        task_id="a",
        status=TaskStatus.SUCCESS,
        result={"ok": 1},
        error=None,
        started_at=when,
        finished_at=when,
        retries=2,
    )
    assert made.is_complete and made.is_success and made.finished_at == when
    assert TaskResult.from_dict(made.to_dict()) == made


def test_named_constructors_record_the_message() -> None:
    def by_name(status: TaskStatus, **fields: Any) -> TaskResult:
        return TaskResult(
            MESSAGE.id,
            status,
            task_name="wire.add",
            submitted_at=1765000000.25,
            retries=1,
            args=(2, [3, "é"]),
            kwargs={"extra": 4},
            priority=5,
            **fields,
        )

    assert TaskResult.pending(MESSAGE) == by_name(TaskStatus.PENDING)
    assert TaskResult.running(MESSAGE, started=7.0) == by_name(TaskStatus.RUNNING, started_at=7.0)
    assert TaskResult.succeeded(MESSAGE, 9, started=7.0, finished=8.0) == by_name(
        TaskStatus.SUCCESS, result=9, started_at=7.0, finished_at=8.0
    )
    assert TaskResult.retrying(MESSAGE, "E: x", started=7.0, traceback="tb") == by_name(
        TaskStatus.RETRYING, error="E: x", started_at=7.0, traceback="tb"
    )
    assert TaskResult.failed(MESSAGE, "E: y", finished=8.0) == by_name(
        TaskStatus.FAILED, error="E: y", finished_at=8.0
    )


def test_a_message_that_was_never_submitted_records_no_submit_time() -> None:
    assert TaskResult.pending(TaskMessage("id", "t")).submitted_at is None
