"""The cursors of :class:`~flowrra.protocols.ResultPages`: opaque text a client hands back.

A keyset cursor names the last record of a page by its place in the listing order (its
submit time as the backend scored it, and its task id, which breaks ties), so the next
page starts right after it however many records are stored meanwhile, and costs what the
page costs. An offset cursor is what :class:`~flowrra.monitor.Monitor` makes over a
backend that can only ``list`` by offset; it is bounded (:data:`MAX_OFFSET`).

Both are URL-safe base64 of a short text. Whatever a client sends is checked here:
anything this module did not make raises ``ValueError`` naming it, so a web API answers
400, never an error from deeper down.
"""

from __future__ import annotations

import base64
import binascii
import math

__all__ = [
    "MAX_CURSOR",
    "MAX_OFFSET",
    "decode_keyset",
    "decode_offset",
    "encode_keyset",
    "encode_offset",
]

#: The longest cursor accepted, in characters (a task id is at most ~1,000).
MAX_CURSOR = 1400
#: The deepest offset an offset cursor may hold: past it a backend without
#: ``list_page`` costs too much per page.
MAX_OFFSET = 100_000

_KEYSET = "k"
_OFFSET = "o"


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(cursor: object, kind: str) -> str:
    if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_CURSOR:
        raise ValueError(f"not a cursor this server made: {str(cursor)[:60]!r}")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError):
        raise ValueError(f"not a cursor this server made: {cursor[:60]!r}") from None
    head, _, body = text.partition("\n")
    if head != kind:
        raise ValueError(f"not a cursor of this listing: {cursor[:60]!r}")
    return body


def encode_keyset(score: str, task_id: str) -> str:
    """A cursor after the record ``task_id`` whose index score is ``score`` (its text, as
    the backend holds it)."""
    return _encode(f"{_KEYSET}\n{score}\n{task_id}")


def decode_keyset(cursor: object) -> tuple[str, float, str]:
    """``(score text, score, task id)`` of a keyset cursor; ``ValueError`` otherwise."""
    score_text, _, task_id = _decode(cursor, _KEYSET).partition("\n")
    try:
        score = float(score_text)
    except ValueError:
        score = math.nan
    if not math.isfinite(score) or not task_id or len(score_text) > 40:
        raise ValueError(f"not a cursor this server made: {str(cursor)[:60]!r}")
    return score_text, score, task_id


def encode_offset(offset: int) -> str:
    """A cursor for the page at ``offset`` of an offset-only listing."""
    return _encode(f"{_OFFSET}\n{offset}")


def decode_offset(cursor: object) -> int:
    """The offset of an offset cursor (at most :data:`MAX_OFFSET`); ``ValueError``
    otherwise."""
    body = _decode(cursor, _OFFSET)
    if not (body.isascii() and body.isdigit()) or len(body) > 7 or not 0 <= int(body) <= MAX_OFFSET:
        raise ValueError(f"not a cursor this server made: {str(cursor)[:60]!r}")
    return int(body)
