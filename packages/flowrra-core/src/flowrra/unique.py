"""Unique (deduplicated) jobs: one task per key while it is queued, delayed, running or
retrying, and for ``unique_for`` seconds after it succeeds.

A submit with a unique key (``task.with_options(unique_key="invoice:42")``,
``app.submit(task, ..., unique_key=...)``, or ``@app.task(unique=True)``, whose key is
:func:`derived_key` of the task's name and arguments) asks the broker, a
:class:`~flowrra.protocols.UniqueJobs`, to queue the message *unless* the key is held:
one atomic step (one Lua script on Redis) either takes the key for the new task and
queues it, or queues nothing and gives the id of the task that holds the key. The caller
gets that id either way. The PENDING record is written only by the submit that queued.

The key travels with the task in the :data:`UNIQUE_HEADER` header (and the seconds to
keep it after success in :data:`UNIQUE_FOR_HEADER`). When the task completes for good,
the worker releases the key, only if it still holds this task's id (compare and delete):

- SUCCESS: kept ``unique_for`` seconds more if given, else deleted at once;
- FAILED (retries used up) and dead-lettered: deleted at once, whatever ``unique_for``,
  so the work can be submitted again.

A retry keeps the key (the task is still under way); so does a worker that dies mid-task:
the lease expires, the task is delivered again, and the key still names it. Every key has
a safety expiry, the broker's ``unique_ttl`` (default :data:`UNIQUE_TTL`, a day) counted
from the submit, plus the delay of a delayed task: a release that is lost (a worker
killed between the record and the release, a purged queue, a message that cannot be
decoded) blocks the key for that long at most. A task that is still queued, retrying or
running after it loses its guard: a second submit then queues another.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from flowrra.exceptions import SerializationError
from flowrra.task import TaskMessage

__all__ = [
    "MAX_UNIQUE_KEY",
    "UNIQUE_FOR_HEADER",
    "UNIQUE_HEADER",
    "UNIQUE_TTL",
    "Unique",
    "check_unique_for",
    "check_unique_key",
    "derived_key",
]

#: The reserved header that carries a unique task's key.
UNIQUE_HEADER = "flowrra-unique"
#: The reserved header that carries the seconds the key is kept after the task succeeds.
UNIQUE_FOR_HEADER = "flowrra-unique-for"
#: The longest unique key accepted, in characters.
MAX_UNIQUE_KEY = 1024
#: Seconds a key lives at most when nothing releases it (a broker's ``unique_ttl``).
UNIQUE_TTL = 86_400.0


class Unique(NamedTuple):
    """A unique task's key and the seconds it is kept after success (0: deleted)."""

    key: str
    keep_for: float = 0.0

    def mark(self, message: TaskMessage) -> None:
        """Put the key (and ``keep_for``, if any) in ``message``'s headers."""
        headers = {**message.headers, UNIQUE_HEADER: self.key}
        if self.keep_for:
            headers[UNIQUE_FOR_HEADER] = repr(self.keep_for)
        message.headers = headers

    @classmethod
    def of(cls, message: TaskMessage) -> Unique | None:
        """The key ``message`` holds (from its headers), or ``None``. A malformed
        ``keep_for`` reads as 0 (the key is released at once)."""
        headers = message.headers
        key = headers.get(UNIQUE_HEADER) if headers else None
        if not key:
            return None
        try:
            keep_for = float(headers.get(UNIQUE_FOR_HEADER) or 0.0)
        except ValueError:
            keep_for = 0.0
        if not math.isfinite(keep_for) or keep_for < 0:
            keep_for = 0.0
        return cls(key, keep_for)


def check_unique_key(key: object) -> str:
    """``key`` if it can be a unique key: text, 1 to :data:`MAX_UNIQUE_KEY` characters.
    Raises ``TypeError`` or ``ValueError`` naming the bad value."""
    if key.__class__ is not str:
        raise TypeError(f"unique_key must be a str, got {key!r}")
    assert isinstance(key, str)
    if not key or len(key) > MAX_UNIQUE_KEY:
        raise ValueError(
            f"unique_key must be 1 to {MAX_UNIQUE_KEY} characters, got {len(key)}: {key[:80]!r}"
        )
    return key


def check_unique_for(seconds: object) -> float:
    """``seconds`` (``unique_for``) as a float >= 0; ``None`` is 0 (released at once)."""
    if seconds is None:
        return 0.0
    if seconds.__class__ is bool or not isinstance(seconds, int | float):
        raise TypeError(f"unique_for is a number of seconds, got {seconds!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"unique_for must be a finite number of seconds >= 0, got {seconds!r}")
    return float(seconds)


def derived_key(
    name: str,
    signature: inspect.Signature | None,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> str:
    """The key of ``@app.task(unique=True)``: the task's name and a SHA-256 of its
    arguments as canonical JSON (keys sorted, no spaces, ASCII). Arguments are first bound
    to the task's ``signature`` with its defaults applied, so ``f(1)``, ``f(x=1)`` and
    ``f()`` (where ``x=1`` is the default) give one key. Stable across processes,
    machines and releases; the arguments must be JSON (as every task's are)."""
    data: Any
    if signature is not None:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            data = [list(args), dict(kwargs)]
        else:
            bound.apply_defaults()
            data = bound.arguments
    else:
        data = [list(args), dict(kwargs)]
    try:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"the arguments of task {name!r} cannot make its unique key ({exc}): pass JSON "
            "values, or a unique_key= of your own"
        ) from None
    return f"{name}:{hashlib.sha256(text.encode()).hexdigest()}"


def check_unique_ttl(seconds: object) -> float:
    """A broker's ``unique_ttl``: a finite number of seconds > 0."""
    if seconds.__class__ is bool or not isinstance(seconds, int | float):
        raise TypeError(f"unique_ttl is a number of seconds, got {seconds!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"unique_ttl must be a finite number of seconds > 0, got {seconds!r}")
    return float(seconds)


def hold_seconds(message: TaskMessage, now: float, ttl: float) -> float:
    """How long a key taken for ``message`` lives unless released: ``ttl`` after it is
    due (now, or its ``eta``)."""
    eta = message.eta
    return ttl + (eta - now if eta is not None and eta > now else 0.0)
