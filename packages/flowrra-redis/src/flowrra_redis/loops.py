"""One set of connections per event loop.

A connection belongs to the event loop that opened it: only that loop reads its replies,
so a command sent on it from another loop waits forever. Yet one broker or backend object
serves several loops: ``asyncio.run()`` called twice, ``async_to_sync`` called twice, the
background loop of the sync API (``app.submit_sync``) beside a web server's loop. So a
:class:`~flowrra_redis.connection.RedisEndpoint` keeps a :class:`LoopState` per loop: its
own redis-py client (and pool), its pipeline, and what the broker or backend holds for
that loop (acks, waiters, the result subscription).

Finding the running loop's state is an identity compare with the state used last; only a
change of loop takes a lock and a dict lookup.

A state is closed in its own loop while the loop still runs: by ``close()`` there, or when
the loop shuts down. ``asyncio.run``, ``asyncio.Runner``, asgiref's ``async_to_sync`` and
anyio's portals all cancel the loop's tasks, then call ``loop.shutdown_asyncgens()``, then
close it; each state holds a started async generator, its *guard*, whose ``finally``
closes the state at that point. The states of a loop closed without that step
(``loop.close()`` alone) are dropped when another loop next creates one; their sockets
close when collected. In a child process after ``os.fork()`` the parent's states are set
aside and never touched (their sockets are the parent's connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from asyncio.events import _get_running_loop
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis

from flowrra_redis.pipeline import AutoPipeline

__all__ = ["LoopState", "PerLoop", "arm_guard", "running_loop", "track"]

#: The running event loop or ``None``: asyncio's C accessor, the cheapest way to ask.
running_loop: Callable[[], asyncio.AbstractEventLoop | None] = _get_running_loop


class LoopState:
    """What one event loop uses of a broker or backend: its client (with a pool of its
    own) and its pipeline. Subclasses add their per-loop fields."""

    __slots__ = ("__weakref__", "client", "closed", "guard", "loop", "pipe")

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None, client: aioredis.Redis, pipe: AutoPipeline
    ) -> None:
        #: The loop it serves; ``None`` for a state made outside any loop (``.client``
        #: read from sync code), which the first loop to need one adopts.
        self.loop = loop
        self.client = client
        self.pipe = pipe
        self.guard: AsyncGenerator[None, None] | None = None
        #: Closed (or set aside): nothing of it is used again.
        self.closed = False

    def set_aside(self) -> None:
        """Give the state up without touching its loop (closed, or another process's):
        its guard is closed here without running anything, so nothing is scheduled on
        that loop when it is collected."""
        self.closed = True
        guard, self.guard = self.guard, None
        if guard is not None:
            closing = guard.aclose()
            with contextlib.suppress(StopIteration):
                closing.send(None)  # the guard's finally sees ``closed``: it awaits nothing


class PerLoop(Protocol):
    """What a guard calls: the owner's way to close one of its states in its loop."""

    async def _retire(self, state: Any) -> None: ...


def arm_guard(owner: PerLoop, state: LoopState) -> None:
    """Start ``state``'s guard in the running loop (the loop of ``state``): an async
    generator the loop closes in ``shutdown_asyncgens()``, whose ``finally`` then closes
    ``state`` while the loop still runs. The loop keeps only a weak reference to it: the
    state holds it."""

    async def guard() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if not state.closed:
                await owner._retire(state)

    generator = guard()
    first = generator.asend(None)  # registers it with the loop
    try:
        first.send(None)  # runs it to its yield, with no loop turn
    except StopIteration:
        state.guard = generator
    else:  # pragma: no cover  (the generator yields before anything else)
        raise RuntimeError("a loop guard did not stop at its yield")


class _Forkable(Protocol):
    def _forget_loops(self) -> Sequence[LoopState]: ...


#: Every endpoint alive, so that a forked child can make each forget its parent's loops.
_OWNERS: weakref.WeakSet[Any] = weakref.WeakSet()
#: What a forked child inherited and must neither use nor collect: collecting it would
#: close the parent's sockets here (harmless) but also log the parent's pending tasks as
#: "destroyed but pending". A few objects per endpoint, once per fork.
_INHERITED: list[LoopState] = []


def track(owner: _Forkable) -> None:
    """Register an endpoint for the after-fork reset."""
    _OWNERS.add(owner)


def _after_fork_in_child() -> None:
    for owner in list(_OWNERS):
        for state in owner._forget_loops():
            state.set_aside()
            _INHERITED.append(state)


os.register_at_fork(after_in_child=_after_fork_in_child)
