"""Retry policy: how many retries, and how long to wait before each one.

The delay before retry *n* (1-based) is ``delay * 2 ** (n - 1)``, capped at ``max_delay``.
With ``jitter`` the delay is drawn uniformly from ``[d/2, d]`` so that many tasks failing
together do not retry in lock-step. A retry never sleeps in a worker: the worker re-enqueues
the message with a due time and its slot moves on.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from flowrra.exceptions import ConfigError

__all__ = ["Retry", "RetryPolicy"]


class Retry(Exception):
    """Raised by a task to ask for another attempt, ``delay`` seconds from now (``None``:
    the task's own backoff), whatever its ``retry_on``. It counts against the task's
    ``max_retries``: with none left, the task fails for good with this as its error.

    ::

        @app.task(max_retries=5)
        async def poll(job: str) -> str:
            status = await fetch_status(job)
            if status == "running":
                raise Retry(delay=30, reason="job still running")
            return status
    """

    def __init__(self, delay: float | None = None, reason: str | None = None) -> None:
        if delay is not None:
            if delay.__class__ is bool or not isinstance(delay, int | float):
                raise TypeError(f"Retry(delay=) is a number of seconds, got {delay!r}")
            if not math.isfinite(delay) or delay < 0:
                raise ValueError(f"Retry(delay=) is finite and >= 0 seconds, got {delay!r}")
        self.delay = None if delay is None else float(delay)
        self.reason = reason
        super().__init__(reason or "the task asked for a retry")

    def __reduce__(self) -> tuple[type[Retry], tuple[float | None, str | None]]:
        # Pickled back from a cpu_bound task's process: by its own arguments (the default,
        # Retry(message), fails to unpickle, and that breaks the process pool).
        return (type(self), (self.delay, self.reason))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing task is retried."""

    max_retries: int = 3
    delay: float = 1.0
    max_delay: float = 300.0
    jitter: bool = False
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.delay < 0:
            raise ConfigError(f"retry_delay must be >= 0, got {self.delay}")
        if self.max_delay < self.delay:
            raise ConfigError(
                f"retry_max_delay ({self.max_delay}) must be >= retry_delay ({self.delay})"
            )

    def should_retry(self, retries_done: int, exc: BaseException) -> bool:
        """True if a task that has been retried ``retries_done`` times and just raised
        ``exc`` gets another attempt."""
        return retries_done < self.max_retries and isinstance(exc, self.retry_on)

    def delay_for(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry)."""
        delay: float = min(self.delay * 2 ** (retry_number - 1), self.max_delay)
        if self.jitter:
            delay = random.uniform(delay / 2, delay)
        return delay
