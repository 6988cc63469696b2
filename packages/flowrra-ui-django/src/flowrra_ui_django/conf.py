"""The ``FLOWRRA_UI`` setting: one dict, with defaults, and what the UI needs of the rest
of the settings.

``APP``: the Flowrra app, or its dotted path (``"myproject.tasks.app"``). ``PERMISSION``:
who gets in, a callable ``(user) -> bool`` or its dotted path (default: active staff
members); a plain function runs in a thread, so it may read the database
(``user.has_perm(...)``), an ``async def`` one is awaited. ``WRITABLE``: whether retries
and schedule changes are allowed (default True, since only permitted users get in).
``REDACT``: the hook masking what is shown, or its dotted path (default:
``flowrra_ui.redact_secrets``; ``None`` shows everything). Every mount reads them:
``include("flowrra_ui_django.urls")``, ``get_urls(app)`` and ``websocket_urls(app)``
(where arguments given override them).

The views ask Django who the user is (``request.auser()``), so the project needs Django's
session and authentication middleware and the apps behind them: :func:`missing_middleware`
and :func:`missing_apps` say what is absent, for the system checks and for the error a
request gets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from django.apps import apps
from django.conf import settings
from django.utils.module_loading import import_string

DEFAULTS: dict[str, Any] = {
    "APP": None,
    "PERMISSION": None,
    "WRITABLE": True,
    "REDACT": "flowrra_ui.redaction.redact_secrets",
}

#: ``(user) -> bool``, plain (run in a thread) or async.
Permission = Callable[[Any], bool | Awaitable[bool]]

SESSION_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"
AUTH_APPS = ("django.contrib.auth", "django.contrib.contenttypes")
#: Session engines that keep sessions in the database, in ``django.contrib.sessions``' table.
DB_SESSION_ENGINES = (
    "django.contrib.sessions.backends.db",
    "django.contrib.sessions.backends.cached_db",
)


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


def load_permission() -> Permission:
    permission = _resolve(config()["PERMISSION"])
    return permission if permission is not None else is_staff


def load_writable() -> bool:
    return bool(config()["WRITABLE"])


def load_redact() -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """``REDACT``, imported (``None``: nothing is masked)."""
    redact: Callable[[dict[str, Any]], dict[str, Any]] | None = _resolve(config()["REDACT"])
    return redact


def _contains_subclass(class_path: str, candidate_paths: list[str]) -> bool:
    """Whether one of ``candidate_paths`` names the class ``class_path`` or a subclass (as
    the admin's checks look for its middleware)."""
    wanted = import_string(class_path)
    for candidate_path in candidate_paths:
        try:
            candidate = import_string(candidate_path)
        except ImportError:
            continue  # Django reports a bad MIDDLEWARE entry itself
        if isinstance(candidate, type) and issubclass(candidate, wanted):
            return True
    return False


def missing_middleware() -> list[str]:
    """The session and authentication middleware ``MIDDLEWARE`` lacks, in the order they
    go in."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    return [
        m for m in (SESSION_MIDDLEWARE, AUTH_MIDDLEWARE) if not _contains_subclass(m, middleware)
    ]


def missing_apps() -> list[str]:
    """The apps behind Django's authentication (and database sessions) that
    ``INSTALLED_APPS`` lacks."""
    needed = list(AUTH_APPS)
    if getattr(settings, "SESSION_ENGINE", "") in DB_SESSION_ENGINES:
        needed.append("django.contrib.sessions")
    return [name for name in needed if not apps.is_installed(name)]


def quoted_names(names: list[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def middleware_advice(missing: list[str]) -> str:
    """What to add to ``MIDDLEWARE``, given :func:`missing_middleware`."""
    if missing == [AUTH_MIDDLEWARE]:
        return f"add '{AUTH_MIDDLEWARE}' to MIDDLEWARE, after '{SESSION_MIDDLEWARE}'"
    if missing == [SESSION_MIDDLEWARE]:
        return f"add '{SESSION_MIDDLEWARE}' to MIDDLEWARE, before '{AUTH_MIDDLEWARE}'"
    return f"add '{SESSION_MIDDLEWARE}' and, after it, '{AUTH_MIDDLEWARE}' to MIDDLEWARE"


def apps_advice(missing: list[str]) -> str:
    """What to add to ``INSTALLED_APPS``, given :func:`missing_apps`."""
    return f"add {quoted_names(missing)} to INSTALLED_APPS (and run migrate)"


def no_auth_message() -> str:
    """The error of a request that reached the UI without ``request.auser``."""
    advice = middleware_advice(missing_middleware() or [AUTH_MIDDLEWARE])
    return (
        "the Flowrra UI asks Django who the user is (request.auser()), which Django's "
        f"authentication middleware provides: {advice}; `manage.py check` reports this "
        "as flowrra_ui.E002"
    )
