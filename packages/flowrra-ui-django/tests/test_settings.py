"""``FLOWRRA_UI`` as every mount reads it (``include("flowrra_ui_django.urls")``,
``get_urls(app)``, ``websocket_urls(app)``; arguments given override it), and a project
without Django's authentication middleware: told by a system check, and by a clear error
at request time."""

from __future__ import annotations

import runpy
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import django_urls
import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission, User
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.test import AsyncClient, override_settings
from django.urls import URLPattern, clear_url_caches, include, path
from flowrra_ui.testing import make_ui_app, running_ui_app
from flowrra_ui_django import get_urls, websocket_urls

from flowrra import Flowrra

SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"
CSRF = "django.middleware.csrf.CsrfViewMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"


def only_visitor(user: Any) -> bool:
    """A permission that lets in the user named ``visitor`` (not a staff member)."""
    return bool(getattr(user, "username", "") == "visitor")


def _visitor() -> User:
    user, _ = User.objects.get_or_create(username="visitor", defaults={"is_staff": False})
    return user


@pytest.fixture
async def visitor() -> User:
    return await sync_to_async(_visitor)()


@pytest.fixture
def ui_app(tmp_path: Path) -> Flowrra:
    return make_ui_app(tmp_path)


@pytest.fixture
def mount() -> Iterator[Any]:
    """Puts the given patterns at ``/ui/`` for the test."""

    def put(patterns: Any) -> None:
        django_urls.urlpatterns[:] = [path("ui/", include(patterns))]
        clear_url_caches()

    yield put
    django_urls.urlpatterns[:] = []
    clear_url_caches()


def _settings_urlconf() -> tuple[list[URLPattern], str]:
    """``flowrra_ui_django.urls`` run afresh under the settings in force."""
    import flowrra_ui_django.urls

    module = runpy.run_path(flowrra_ui_django.urls.__file__)
    return module["urlpatterns"], module["app_name"]


def _settings(ui_app: Flowrra, **extra: Any) -> dict[str, Any]:
    return {"APP": ui_app, "PERMISSION": only_visitor, "WRITABLE": False, **extra}


@pytest.mark.parametrize("form", ["include", "get_urls"])
async def test_both_url_forms_honour_permission_and_writable(
    ui_app: Flowrra, visitor: User, mount: Any, form: str
) -> None:
    with override_settings(FLOWRRA_UI=_settings(ui_app)):
        mount(_settings_urlconf() if form == "include" else get_urls(ui_app))
        http = AsyncClient()
        await http.aforce_login(visitor)
        meta = await http.get("/ui/api/meta")
        assert meta.status_code == 200  # let in by PERMISSION, though not staff
        assert meta.json()["writable"] is False  # WRITABLE
        refused = await http.post(
            "/ui/api/schedules/cron",
            '{"task_name": "add", "cron": "0 9 * * *"}',
            content_type="application/json",
        )
        assert refused.status_code == 403 and "read-only" in refused.json()["error"]
        staff, _ = await sync_to_async(User.objects.get_or_create)(
            username="admin", defaults={"is_staff": True}
        )
        await http.aforce_login(staff)
        assert (await http.get("/ui/api/meta")).status_code == 403  # PERMISSION replaced staff


async def test_arguments_to_get_urls_override_the_settings(
    ui_app: Flowrra, visitor: User, mount: Any
) -> None:
    with override_settings(FLOWRRA_UI=_settings(ui_app)):
        mount(get_urls(ui_app, permission=lambda user: True, writable=True))
        http = AsyncClient()
        await http.aforce_login(visitor)
        meta = await http.get("/ui/api/meta")
        assert meta.status_code == 200 and meta.json()["writable"] is True
        mount(get_urls(ui_app, writable=True))  # PERMISSION still from the settings
        meta = await http.get("/ui/api/meta")
        assert meta.status_code == 200 and meta.json()["writable"] is True
        staff, _ = await sync_to_async(User.objects.get_or_create)(
            username="admin", defaults={"is_staff": True}
        )
        await http.aforce_login(staff)
        assert (await http.get("/ui/api/meta")).status_code == 403


@pytest.fixture
async def running_app(tmp_path: Path) -> AsyncIterator[Flowrra]:
    async with running_ui_app(tmp_path) as app:
        yield app


async def test_websocket_urls_honour_permission(running_app: Flowrra, visitor: User) -> None:
    with override_settings(FLOWRRA_UI=_settings(running_app)):
        application = URLRouter(websocket_urls(running_app))
    communicator = WebsocketCommunicator(application, "/flowrra/ws")
    communicator.scope["user"] = visitor
    connected, _ = await communicator.connect()
    assert connected
    await communicator.disconnect()


def can_see_tasks(user: Any) -> bool:
    """A permission as a project writes one: a Django permission, read from the database
    (``has_perm`` queries it for a user who is not a superuser)."""
    return bool(user.is_active and user.is_staff and user.has_perm("auth.view_user"))


def _staff(name: str, *, granted: bool) -> User:
    user, _ = User.objects.get_or_create(username=name, defaults={"is_staff": True})
    if granted:
        user.user_permissions.add(
            Permission.objects.get(codename="view_user", content_type__app_label="auth")
        )
    return user


async def test_a_permission_that_reads_the_database(running_app: Flowrra, mount: Any) -> None:
    granted = await sync_to_async(_staff)("reader", granted=True)
    refused = await sync_to_async(_staff)("staffer", granted=False)
    assert not granted.is_superuser and not refused.is_superuser
    with override_settings(FLOWRRA_UI=_settings(running_app, PERMISSION=can_see_tasks)):
        mount(_settings_urlconf())
        application = URLRouter(websocket_urls(running_app))
        for user, allowed in [(granted, True), (refused, False)]:
            http = AsyncClient()
            await http.aforce_login(user)
            for url in ["/ui/", "/ui/static/app.js", "/ui/api/meta", "/ui/api/executions"]:
                status = (await http.get(url)).status_code
                assert status == (200 if allowed else 403), (user.username, url, status)
            fresh = await User.objects.aget(pk=user.pk)  # as AuthMiddlewareStack gives it
            communicator = WebsocketCommunicator(application, "/flowrra/ws")
            communicator.scope["user"] = fresh
            connected, _ = await communicator.connect()
            assert connected is allowed, user.username
            await communicator.disconnect()


@pytest.mark.parametrize(
    ("redact", "shown"),
    [
        (..., {"password": "[redacted]", "n": 1}),  # not set: the default masking
        ("flowrra_ui.testing.redact_for_tests", {"password": "[redacted]", "n": 1}),
        (None, {"password": "hunter2", "n": 1}),  # masking turned off
    ],
)
async def test_redact_comes_from_the_settings(
    running_app: Flowrra, visitor: User, mount: Any, redact: Any, shown: dict[str, Any]
) -> None:
    shown_id = await running_app.submit("echo", password="hunter2", n=1)
    failed = await running_app.submit("boom", "declined")
    for task_id in (shown_id, failed):
        await running_app.wait_for_result(task_id, timeout=10)
    extra = {} if redact is ... else {"REDACT": redact}
    with override_settings(FLOWRRA_UI=_settings(running_app, **extra)):
        mount(_settings_urlconf())
        http = AsyncClient()
        await http.aforce_login(visitor)
        detail = (await http.get(f"/ui/api/executions/{shown_id}")).json()
        assert detail["kwargs"] == shown
        error = (await http.get(f"/ui/api/executions/{failed}")).json()["error"]
        hidden = redact == "flowrra_ui.testing.redact_for_tests"
        assert error == ("[hidden]" if hidden else "RuntimeError: declined")


def _flowrra_checks() -> list[checks.CheckMessage]:
    return [m for m in checks.run_checks() if m.id.startswith("flowrra_ui")]


def test_the_check_names_the_missing_authentication_middleware() -> None:
    assert _flowrra_checks() == []
    with override_settings(MIDDLEWARE=[SESSIONS, CSRF]):
        [error] = _flowrra_checks()
    assert error.id == "flowrra_ui.E002" and error.level == checks.ERROR
    assert "AuthenticationMiddleware" in error.msg
    assert AUTH in (error.hint or "")
    with override_settings(MIDDLEWARE=[CSRF]):
        [error] = _flowrra_checks()
    assert error.id == "flowrra_ui.E002"
    assert SESSIONS in (error.hint or "") and AUTH in (error.hint or "")


def test_the_check_names_missing_apps() -> None:
    from flowrra_ui_django.apps import check_auth

    # Called by itself: without django.contrib.auth, Django's own checks of the models
    # already loaded would fail before it.
    assert check_auth in checks.registry.registry.get_checks()
    apps = ["django.contrib.contenttypes", "flowrra_ui_django"]
    with override_settings(INSTALLED_APPS=apps):
        [error] = check_auth()
    assert error.id == "flowrra_ui.E003" and error.level == checks.ERROR
    assert "'django.contrib.auth'" in (error.hint or "")
    assert "'django.contrib.sessions'" in (error.hint or "")  # the default, database sessions
    with override_settings(
        INSTALLED_APPS=apps, SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies"
    ):
        [error] = check_auth()
    assert "sessions" not in (error.hint or "")


@pytest.mark.parametrize("url", ["/ui/api/meta", "/ui/"])
async def test_a_request_without_the_middleware_gets_the_advice(
    ui_app: Flowrra, mount: Any, url: str
) -> None:
    mount(get_urls(ui_app))
    with (
        override_settings(MIDDLEWARE=[SESSIONS, CSRF]),
        pytest.raises(ImproperlyConfigured, match="AuthenticationMiddleware") as caught,
    ):
        await AsyncClient().get(url)
    assert AUTH in str(caught.value)
