"""The dashboard in Debian's chromium, served by daphne (HTTP and the Channels WebSocket)
in front of a worker process on Redis, for a staff member signed in with a session cookie
(the shared suite of flowrra_ui.browser_contract)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from flowrra_ui.browser_contract import ServedUI, UIBrowserContract, serve_ui

SERVED = Path(__file__).parent / "served"


def staff_session() -> str:
    """A session of a staff member, in the user database the served project shares."""
    user, _ = User.objects.get_or_create(username="browser", defaults={"is_staff": True})
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


@pytest.fixture
def served(tmp_path: Path, redis_url: str) -> Iterator[ServedUI]:
    server = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}"]
    server.append("django_served:application")
    database = str(settings.DATABASES["default"]["NAME"])
    cookies = [{"name": settings.SESSION_COOKIE_NAME, "value": staff_session()}]
    with serve_ui(
        server,
        "django_served:flowrra",
        cwd=SERVED,
        redis_url=redis_url,
        folder=tmp_path,
        cookies=cookies,
        extra_env={"FLOWRRA_UI_TEST_DJANGO_DB": database},
    ) as served:
        yield served


class TestDjangoInChromium(UIBrowserContract):
    adapter = "django"
