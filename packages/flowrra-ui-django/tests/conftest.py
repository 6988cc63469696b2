"""Django configured for the tests: auth, sessions and CSRF middleware, a SQLite database
for users, and a URLConf (``django_urls``) whose patterns each test fills."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    sys.path[:0] = [str(HERE), str(HERE / "served")]
    from django_test_settings import configure

    database = Path(tempfile.mkdtemp(prefix="flowrra-ui-django-")) / "db.sqlite3"
    configure(
        str(database),
        urlconf="django_urls",
        flowrra_app="django_project.app",
        hosts=["testserver", "localhost"],
    )
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
