"""The one wire format: JSON. Checks that what a task takes and returns can travel.

The in-memory broker and store keep Python objects but apply the same check as the durable
plugins, so an app that works embedded keeps working on Redis: arguments that JSON cannot
encode fail at ``submit``, and a result it cannot encode makes the task FAILED.
"""

from __future__ import annotations

import json
from typing import Any

from flowrra.exceptions import SerializationError

__all__ = ["dumps", "ensure_encodable", "loads"]

_SCALARS = frozenset({str, int, float, bool, type(None)})
_INF = float("inf")


_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def dumps(value: Any) -> str:
    """Encode ``value`` as compact JSON; raises :class:`SerializationError` if it cannot."""
    try:
        return _encode(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(str(exc)) from exc


def loads(data: str | bytes) -> Any:
    """Decode JSON text; malformed input raises ``ValueError``."""
    return json.loads(data)


def ensure_encodable(value: Any, what: str) -> None:
    """Raise :class:`SerializationError` naming ``what`` if ``value`` is not JSON-encodable."""
    if value.__class__ in _SCALARS:
        if value.__class__ is float and (value != value or value in (_INF, -_INF)):
            raise SerializationError(f"{what} cannot be encoded as JSON: {value!r} is not finite")
        return
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"{what} cannot be encoded as JSON ({exc}); pass plain data "
            "(str, int, float, bool, None, lists and dicts of them) and rebuild objects in the task"
        ) from exc
