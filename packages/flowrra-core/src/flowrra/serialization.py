"""The one wire format: JSON. Checks that what a task takes and returns can travel.

The in-memory broker and store keep Python objects but apply the same check as the durable
plugins, so an app that works embedded keeps working on Redis: arguments that JSON cannot
encode fail at ``submit``, and a result it cannot encode makes the task FAILED.
"""

from __future__ import annotations

import json
from typing import Any

from flowrra.exceptions import SerializationError

__all__ = ["dumps", "encode_json", "ensure_encodable", "loads"]

_SCALARS = frozenset({str, int, float, bool, type(None)})
_INF = float("inf")


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
try:  # the C encoder, built once: json.dumps builds one per call
    _c_encode = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None,
        _ENCODER.default,
        json.encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        False,
        False,
        False,
    )
except (AttributeError, TypeError):  # pragma: no cover  (a Python without _json)
    _c_encode = None


def encode_json(value: Any) -> str:
    """``value`` as compact JSON, the same text as ``json.dumps(value, separators=(",",
    ":"), allow_nan=False)``, at half its cost for small values (a task's record is
    encoded on every status change). Raises ``TypeError`` for what JSON cannot hold,
    ``ValueError`` for NaN and infinities and ``RecursionError`` for a cycle."""
    if _c_encode is None:  # pragma: no cover
        return _ENCODER.encode(value)
    return "".join(_c_encode(value, 0))


def dumps(value: Any) -> str:
    """Encode ``value`` as compact JSON; raises :class:`SerializationError` if it cannot."""
    try:
        return encode_json(value)
    except (TypeError, ValueError, RecursionError) as exc:
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
        encode_json(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(
            f"{what} cannot be encoded as JSON ({exc}); pass plain data "
            "(str, int, float, bool, None, lists and dicts of them) and rebuild objects in the task"
        ) from exc
