"""Django configured for the tests: auth, sessions and CSRF middleware, a SQLite database
for users, and a URLConf (``django_urls``) whose patterns each test fills."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import django
import pytest
from django.conf import settings

HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    sys.path.insert(0, str(HERE))
    database = Path(tempfile.mkdtemp(prefix="flowrra-ui-django-")) / "db.sqlite3"
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only",
        ALLOWED_HOSTS=["testserver", "localhost"],
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "flowrra_ui_django",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        ROOT_URLCONF="django_urls",
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(database)}},
        FLOWRRA_UI={"APP": "django_project.app"},
        USE_TZ=True,
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
