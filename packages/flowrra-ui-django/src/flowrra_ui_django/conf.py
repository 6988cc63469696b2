"""The ``FLOWRRA_UI`` setting: one dict, with defaults.

``APP``: the Flowrra app, or its dotted path (``"myproject.tasks.app"``). ``PERMISSION``:
who gets in, a callable ``(user) -> bool`` or its dotted path (default: active staff
members). ``WRITABLE``: whether retries and schedule changes are allowed (default True,
since only permitted users get in).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

DEFAULTS: dict[str, Any] = {"APP": None, "PERMISSION": None, "WRITABLE": True}


def config() -> dict[str, Any]:
    return {**DEFAULTS, **getattr(settings, "FLOWRRA_UI", {})}


def _resolve(value: Any) -> Any:
    return import_string(value) if isinstance(value, str) else value


def load_app() -> Any:
    from flowrra import Flowrra

    app = _resolve(config()["APP"])
    if not isinstance(app, Flowrra):
        raise TypeError(f"expected a Flowrra app, got {app!r}")
    return app


def is_staff(user: Any) -> bool:
    """The default permission: an active staff member."""
    return bool(getattr(user, "is_active", False) and getattr(user, "is_staff", False))


def load_permission() -> Callable[[Any], bool]:
    permission = _resolve(config()["PERMISSION"])
    return permission if permission is not None else is_staff
