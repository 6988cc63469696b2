"""What the UI hides of the data it shows: the ``redact=`` hook of every adapter.

A hook is a function ``(record) -> record`` that receives each thing the UI is about to
send, as the JSON-ready ``dict`` it would send, and returns what to send instead: each
execution record (``args``, ``kwargs``, ``result``, ``headers``, ``progress``, ``error``,
``traceback``…, in lists, in one execution's detail and in the dashboard's recent
failures), each schedule (``args``, ``kwargs``…) and each live event (``task_id``,
``task_name``, ``status``, ``error``, ``progress``…). It must not change its argument in
place (it may be the backend's cached copy); it returns a new dict.

The default, :func:`redact_secrets`, replaces by :data:`REDACTED` every value stored under
a key that looks like a secret (:data:`SECRET_KEYS`), at any depth of the ``args``,
``kwargs`` and ``result`` of a record, and each message header whose name looks like one
(``Authorization``, ``X-Api-Key``, ``Cookie``…). :func:`redact_keys` builds the same hook
for keys of your choosing. A hook of your own written from scratch must mask ``headers``
too. Values passed positionally or inside an error message or progress message cannot be
recognised by their key: write a hook of your own for those (or keep secrets out of task
arguments).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["REDACTED", "SECRET_KEYS", "Redact", "redact_keys", "redact_secrets"]

#: ``(record) -> record``: see the module docs.
Redact = Callable[[dict[str, Any]], dict[str, Any]]

#: What a masked value is replaced with.
REDACTED = "[redacted]"

#: The default hook masks a value when its key, lower-cased and without ``_``, ``-``, ``.``
#: or spaces, contains one of these (written the same way): ``db_password``,
#: ``X-Api-Key``, ``access_token``, ``Set-Cookie`` and ``client_secret`` all match.
SECRET_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "private_key",
    "credential",
)

#: The parts of a record whose keys are looked at; the other fields (ids, status, error
#: text, traceback, progress) are the UI's own and have no keys of the task's.
_FIELDS = ("args", "kwargs", "result", "headers")


def _normal(key: str) -> str:
    return re.sub(r"[\s_.\-]", "", key.lower())


def redact_keys(keys: Iterable[str]) -> Redact:
    """A hook masking, at any depth of ``args``, ``kwargs`` and ``result`` (dicts inside
    lists inside dicts…) and in ``headers``, every value whose key contains one of
    ``keys`` (compared case-insensitively, ignoring ``_``, ``-``, ``.`` and spaces).
    ``redact_keys((*SECRET_KEYS, "ssn"))`` adds a key to the default ones."""
    needles = tuple({_normal(key) for key in keys if _normal(key)})

    @functools.lru_cache(maxsize=4096)  # keys repeat from record to record
    def secret_text(key: str) -> bool:
        normal = _normal(key)
        return any(needle in normal for needle in needles)

    def secret(key: Any) -> bool:
        return isinstance(key, str) and secret_text(key)

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: REDACTED if secret(k) else walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(item) for item in value]
        return value

    def redact(record: dict[str, Any]) -> dict[str, Any]:
        masked = dict(record)
        for field in _FIELDS:
            if field in masked:
                masked[field] = walk(masked[field])
        return masked

    return redact


#: The default ``redact=`` hook: :func:`redact_keys` of :data:`SECRET_KEYS`.
redact_secrets: Redact = redact_keys(SECRET_KEYS)
