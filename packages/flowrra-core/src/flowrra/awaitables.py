"""Awaitables of the engine's own: :data:`DONE`, one that is already done.

A call on the hot path that usually has nothing to wait for (an in-memory broker's
``ack``, a chain of plain middleware hooks) returns :data:`DONE` instead of a coroutine:
awaiting it costs no coroutine object, and callers that test ``is DONE`` skip the await.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

__all__ = ["DONE"]


class _Done:
    """An awaitable that is already done, with the result ``None``."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]

    def __repr__(self) -> str:
        return "DONE"


#: The awaitable that is already done.
DONE = _Done()
