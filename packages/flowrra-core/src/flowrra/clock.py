"""Where Flowrra reads the time that decides *when*: retry due times, delays, leases and
their renewal, the heartbeat, and the scheduler's firing.

:class:`Clock` is the protocol; :data:`SYSTEM_CLOCK` (a :class:`SystemClock`) is the
default everywhere; :class:`ManualClock` is the clock for tests: it stands still until the
test calls :meth:`~ManualClock.advance`, so a test asserts on due times and cadences
without waiting for them or measuring them::

    clock = ManualClock()
    app = Flowrra(clock=clock)          # the worker, the in-memory broker, the scheduler
    ...
    clock.advance(2.0)                  # the retry due in 2 s is due now

Timeouts that bound how long a *caller* waits (``reserve(timeout=)``,
``wait_for_result(timeout=)``, ``stop(timeout=)``) stay on the event loop's own clock:
they are budgets, not due times. Record timestamps (``started_at``, ``finished_at``) are
the wall time of the system.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import time as _time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """The time as Flowrra's timing decisions see it.

    Obligations: :meth:`time` and :meth:`monotonic` advance together (a second of one is a
    second of the other); :meth:`sleep_until` and :meth:`timeout_at` take a moment on the
    :meth:`monotonic` timeline and end once :meth:`monotonic` has reached it, at once if
    it already has. A wall-clock moment (a due time) ``t`` is ``monotonic() + (t - time())``.
    """

    def time(self) -> float:
        """Wall time, Unix seconds: due times, lease expiries, schedule instants."""
        ...

    def monotonic(self) -> float:
        """Seconds that never go back: intervals and moments inside this process."""
        ...

    async def sleep_until(self, when: float) -> None:
        """Return once :meth:`monotonic` has reached ``when``."""
        ...

    def timeout_at(self, when: float) -> AbstractAsyncContextManager[object]:
        """``async with clock.timeout_at(when):`` raises ``TimeoutError`` out of the block
        once :meth:`monotonic` reaches ``when`` (as :func:`asyncio.timeout_at`)."""
        ...


class SystemClock:
    """The system's clocks (:func:`time.time`, :func:`time.monotonic`) and the event
    loop's timers. Stateless; :data:`SYSTEM_CLOCK` is the one Flowrra uses by default."""

    __slots__ = ()

    # The functions themselves, not wrappers: reading this clock costs what reading the
    # time did before it existed.
    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)

    async def sleep_until(self, when: float) -> None:
        await asyncio.sleep(max(when - _time.monotonic(), 0.0))

    def timeout_at(self, when: float) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(max(when - _time.monotonic(), 0.0))

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()
"""The default clock of every component that takes one."""


class ManualClock:
    """A clock that moves only when told to: for tests.

    It reads ``start`` (default: the system's wall time when it is made, in whole seconds)
    until :meth:`advance` moves it; its :meth:`monotonic` reading is its :meth:`time` reading,
    so a due time converts to a moment without rounding. :meth:`advance` wakes, in order
    of their moments, what sleeps on it or has a timeout on it that has come;
    :meth:`waiting` lets a test wait until the code under test sleeps on the clock.

    Use it from the event loop's thread: :meth:`advance` resolves that loop's futures.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = float(int(_time.time())) if start is None else float(start)
        self._order = itertools.count()
        # (moment, arrival, wake-up), sorted by moment, then by arrival.
        self._sleepers: list[tuple[float, int, asyncio.Future[None] | asyncio.Timeout]] = []
        self._changed: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r}, sleepers={len(self._sleepers)})"

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward (never back) and wake what is due."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back: advance({seconds!r})")
        self._now += seconds
        sleepers = self._sleepers
        while sleepers and sleepers[0][0] <= self._now:
            _wake(sleepers.pop(0)[2])

    async def sleep_until(self, when: float) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = self._add(when, future)
        try:
            await future
        finally:
            self._remove(entry)

    def timeout_at(self, when: float) -> AbstractAsyncContextManager[object]:
        return self._timeout_at(when)

    @contextlib.asynccontextmanager
    async def _timeout_at(self, when: float) -> AsyncIterator[object]:
        async with asyncio.timeout(None) as scope:
            if when <= self._now:
                _wake(scope)
                yield scope
                return
            entry = self._add(when, scope)
            try:
                yield scope
            finally:
                self._remove(entry)

    @property
    def sleepers(self) -> int:
        """How many sleeps and timeouts wait on this clock now."""
        return len(self._sleepers)

    @property
    def next_wake(self) -> float | None:
        """The earliest moment a sleep or timeout waits for (``None``: nothing waits)."""
        return self._sleepers[0][0] if self._sleepers else None

    async def waiting(self, count: int = 1) -> None:
        """Return once at least ``count`` sleeps or timeouts wait on this clock (a test
        bounds it with ``asyncio.timeout``)."""
        while len(self._sleepers) < count:
            changed = self._changed = self._changed or asyncio.Event()
            changed.clear()
            await changed.wait()

    def _add(
        self, when: float, wake: asyncio.Future[None] | asyncio.Timeout
    ) -> tuple[float, int, asyncio.Future[None] | asyncio.Timeout]:
        entry = (when, next(self._order), wake)
        bisect.insort(self._sleepers, entry, key=lambda e: (e[0], e[1]))
        if self._changed is not None:
            self._changed.set()
        return entry

    def _remove(self, entry: tuple[float, int, asyncio.Future[None] | asyncio.Timeout]) -> None:
        with contextlib.suppress(ValueError):
            self._sleepers.remove(entry)


def _wake(wake: asyncio.Future[None] | asyncio.Timeout) -> None:
    if isinstance(wake, asyncio.Timeout):
        if not wake.expired():
            with contextlib.suppress(RuntimeError):  # the block has already ended
                wake.reschedule(asyncio.get_running_loop().time())
    elif not wake.done():
        wake.set_result(None)
