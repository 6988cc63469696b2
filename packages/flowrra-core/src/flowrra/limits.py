"""Rate limits and concurrency limits per task, enforced by the broker at reserve.

``@app.task(rate_limit="100/m")`` (or ``RateLimit(100, 60)``) bounds how many times the
task *starts* in any window of that length, across every worker sharing the broker;
``@app.task(max_concurrency=5)`` bounds how many of its runs hold a reservation at once.

The worker hands its registry's limits to a broker that has the
:class:`~flowrra.protocols.LimitedTasks` capability, once, before it starts. At reserve,
a message whose task is over a limit is not given to the worker: it goes back to the
broker's delayed messages, due when the limit next allows, so it never waits in a worker
slot and other tasks keep flowing. What that does to order: a deferred message comes back
as a retry does, behind the messages of its priority that were queued before it became
due again.

- **Rate**: a sliding window log, one entry per start, kept for one window (at most
  ``count`` entries per task name). Any window of ``per_seconds`` holds at most ``count``
  starts: what "100 per minute" reads as. A token bucket would let up to twice ``count``
  start within one window (a full bucket, then its refill); the log costs ``count``
  entries instead of two numbers, and gives the exact moment the next start is allowed:
  when the oldest start in the window leaves it.
- **Concurrency**: a running set per task name, each entry lasting as long as the
  message's lease (renewed with it). Settling a message (ack, retry, release,
  dead letter) frees its place at once; a worker that dies frees it when its lease
  expires, as its message comes back.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from flowrra.task import TaskMessage

__all__ = ["Limiter", "RateLimit", "TaskLimits", "limits_of", "parse_rate_limit"]

_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_UNITS |= {"h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*([a-z]+)\s*")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` starts in any window of ``per_seconds`` seconds."""

    count: int
    per_seconds: float

    def __post_init__(self) -> None:
        if self.count.__class__ is not int:
            raise TypeError(f"RateLimit count must be an int, got {self.count!r}")
        if self.count < 1:
            raise ValueError(f"RateLimit count must be >= 1, got {self.count}")
        per = self.per_seconds
        if per.__class__ not in (int, float):
            raise TypeError(f"RateLimit per_seconds must be a number of seconds, got {per!r}")
        if not math.isfinite(per) or per <= 0:
            raise ValueError(f"RateLimit per_seconds must be finite and > 0, got {per!r}")
        object.__setattr__(self, "per_seconds", float(per))

    def __str__(self) -> str:
        return f"{self.count}/{self.per_seconds:g}s"


def parse_rate_limit(value: str | RateLimit) -> RateLimit:
    """``"100/m"``, ``"10/s"``, ``"5/h"`` (also ``"30/10s"``, ``"1/minute"``) or a
    :class:`RateLimit`, as a :class:`RateLimit`. Raises ``TypeError`` or ``ValueError``
    naming the bad value."""
    if isinstance(value, RateLimit):
        return value
    if value.__class__ is not str:
        raise TypeError(f"rate_limit must be a str like '100/m' or a RateLimit, got {value!r}")
    match = _RATE.fullmatch(value.lower())
    unit = match and _UNITS.get(match.group(3))
    if match is None or unit is None:
        raise ValueError(
            f"rate_limit {value!r} is not a rate: write '<count>/<unit>' with unit s, m or h "
            "(e.g. '100/m', '10/s', '30/10s'), or pass RateLimit(count, per_seconds)"
        )
    assert match is not None
    per = float(match.group(2)) if match.group(2) else 1.0
    return RateLimit(int(match.group(1)), per * unit)


@dataclass(frozen=True, slots=True)
class TaskLimits:
    """The limits of one task: a :class:`RateLimit` and/or a ``max_concurrency``."""

    rate: RateLimit | None = None
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        most = self.max_concurrency
        if most is not None:
            if most.__class__ is not int:
                raise TypeError(f"max_concurrency must be an int, got {most!r}")
            if most < 1:
                raise ValueError(f"max_concurrency must be >= 1, got {most}")

    @classmethod
    def of(
        cls, rate_limit: str | RateLimit | None, max_concurrency: int | None
    ) -> TaskLimits | None:
        """The limits ``@app.task(rate_limit=..., max_concurrency=...)`` asked for, checked;
        None when neither was."""
        if rate_limit is None and max_concurrency is None:
            return None
        rate = None if rate_limit is None else parse_rate_limit(rate_limit)
        return cls(rate, max_concurrency)


class _Options(Protocol):
    @property
    def limits(self) -> TaskLimits | None: ...


class _Registered(Protocol):
    """A :class:`~flowrra.registry.TaskHandle`, as far as limits go (this module is
    imported by the registry)."""

    @property
    def name(self) -> str: ...

    @property
    def options(self) -> _Options: ...


def limits_of(handles: Iterable[_Registered]) -> Mapping[str, TaskLimits]:
    """Task name to its limits, for the registered tasks that have some."""
    return {h.name: h.options.limits for h in handles if h.options.limits is not None}


class Limiter:
    """The limits' bookkeeping in one process (the in-memory broker's): per task name,
    the start times in the current window and the ids running."""

    __slots__ = ("_running", "_starts", "limits")

    def __init__(self, limits: Mapping[str, TaskLimits]) -> None:
        self.limits = dict(limits)
        self._starts: dict[str, deque[float]] = {}
        self._running: dict[str, set[str]] = {}

    def admit(self, message: TaskMessage, now: float, excess: dict[str, int]) -> float | None:
        """None if ``message`` may start now (it is counted as started and running);
        else when its limits next allow it: a time for the rate, ``math.inf`` while its
        concurrency is full (it may start when one of its runs settles). ``excess``
        counts, per task name, the messages deferred for their rate in this reserve, so
        a batch of them is spread over the next starts the window allows."""
        limits = self.limits.get(message.name)
        if limits is None:
            return None
        most = limits.max_concurrency
        running = self._running.setdefault(message.name, set())
        if most is not None and len(running) >= most and message.id not in running:
            return math.inf
        rate = limits.rate
        if rate is not None:
            starts = self._starts.setdefault(message.name, deque())
            while starts and starts[0] <= now - rate.per_seconds:
                starts.popleft()
            if len(starts) >= rate.count:
                k = excess.get(message.name, 0)
                excess[message.name] = k + 1
                rounds, place = divmod(k, rate.count)
                return starts[len(starts) - rate.count + place] + rate.per_seconds * (1 + rounds)
            starts.append(now)
        if most is not None:
            running.add(message.id)
        return None

    def settle(self, message: TaskMessage) -> bool:
        """Forget a run of ``message`` (settled); True if that freed a concurrency place."""
        running = self._running.get(message.name)
        if running is None or message.id not in running:
            return False
        running.discard(message.id)
        return True
