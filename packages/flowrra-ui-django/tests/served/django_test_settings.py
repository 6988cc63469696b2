"""The Django settings the tests and the project served to the browser share: auth,
sessions and CSRF middleware, and a SQLite user database. One secret key, because a
session the tests make must be valid in the served process."""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings


def configure(database: str, *, urlconf: str, flowrra_app: str, hosts: list[str]) -> None:
    """``settings.configure(...)`` and ``django.setup()`` for the tests."""
    options: dict[str, Any] = {
        "DEBUG": False,
        "SECRET_KEY": "tests-only",
        "ALLOWED_HOSTS": hosts,
        "INSTALLED_APPS": [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "flowrra_ui_django",
        ],
        "MIDDLEWARE": [
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        "ROOT_URLCONF": urlconf,
        "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": database}},
        "FLOWRRA_UI": {"APP": flowrra_app},
        "USE_TZ": True,
    }
    settings.configure(**options)
    django.setup()
