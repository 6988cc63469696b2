"""Logging that fits the ecosystem: task attributes on every record, text or JSON lines.

While a task runs, every log record created in its context (Flowrra's and the task's own,
from any logger) carries ``task_id``, ``task_name`` and ``attempt`` as record attributes,
for JSON formatters, Sentry and log shippers. :func:`install_record_factory` arranges it
(a worker does at start); it wraps the record factory in place, so it composes with others
that do the same.

The ``flowrra.task`` logger reports each attempt: start at DEBUG, success at INFO with the
duration, a retry at WARNING with the reason and the delay, a final failure at ERROR with
the traceback (``exc_info``), a dead-lettered message at ERROR.

``flowrra worker`` configures the root logger with :func:`configure_logging` (``--log-level``,
``--log-format text|json``) unless given ``--no-configure-logging``. Without
``--log-level`` it logs its own lines at INFO and the ``flowrra.task`` logger at WARNING
(retries, failures): a line per successful task costs about 2.6 times the engine's own
work per task (callgrind, bench/README), so it comes only with ``--log-level INFO``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from flowrra.context import attempt_here

__all__ = [
    "JSONFormatter",
    "TextFormatter",
    "configure_logging",
    "install_record_factory",
    "level_cache",
    "task_logger",
]

#: Where attempts are reported.
task_logger = logging.getLogger("flowrra.task")

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_installed = False

# The attributes a LogRecord has of its own; anything else on a record was added (extra=).
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def level_cache(logger: logging.Logger) -> dict[int, bool]:
    """``logger``'s cache of ``isEnabledFor`` answers, which ``logging`` clears in place
    whenever a level changes: ``cache.get(level)`` answers at a C call's cost (``None``:
    not cached, ask ``isEnabledFor``). The hot path asks it for every task. An empty dict
    of its own if this ``logging`` keeps none."""
    cache = getattr(logger, "_cache", None)
    return cache if isinstance(cache, dict) else {}


def install_record_factory() -> None:
    """Make every record created inside a task carry ``task_id``, ``task_name`` and
    ``attempt``. Idempotent."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        task = attempt_here()
        if task is not None:
            message = task[0] if isinstance(task, tuple) else task.message
            record.task_id = message.id
            record.task_name = message.name
            record.attempt = message.attempt + 1
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


class TextFormatter(logging.Formatter):
    """The worker's text lines; a record from inside a task ends with ``[task name id
    attempt n]``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        task_id = getattr(record, "task_id", None)
        if task_id is None or record.name == "flowrra.task":  # those name the task already
            return line
        head, newline, rest = line.partition("\n")
        suffix = f" [task {record.task_name} {task_id} attempt {record.attempt}]"  # type: ignore[attr-defined]
        return f"{head}{suffix}{newline}{rest}"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, the task attributes when there are some, ``exc_info`` (the formatted
    traceback) when there is one, and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = record.stack_info
        return json.dumps(line, default=repr, ensure_ascii=False)


def configure_logging(
    level: str | int = "INFO", fmt: str = "text", *, task_level: str | int | None = None
) -> None:
    """Log to stderr at ``level``, as ``fmt`` (``"text"`` or ``"json"``) lines: what
    ``flowrra worker`` does unless told ``--no-configure-logging``. Replaces the root
    logger's handlers. ``task_level`` sets the ``flowrra.task`` logger's own level
    (``flowrra worker`` without ``--log-level`` sets WARNING there: a line per successful
    task costs more CPU than the engine spends on the task)."""
    if fmt not in ("text", "json"):
        raise ValueError(f"the log format is 'text' or 'json', not {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    task_logger.setLevel(logging.NOTSET if task_level is None else task_level)
    install_record_factory()
