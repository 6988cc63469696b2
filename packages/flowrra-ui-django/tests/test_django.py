"""The Django adapter: the shared UI contract through Django's async test client (staff
only by default, CSRF on), the settings-based URLConf and system check, and the Channels
consumer through its communicator."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import django_urls
import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User
from django.test import AsyncClient
from django.urls import clear_url_caches, include, path
from flowrra_ui.testing import (
    SAME_ORIGIN,
    Client,
    LiveSocket,
    RedisMount,
    UIApiContract,
    WebSocketProbe,
    decoded_body,
    frame_events,
    make_ui_app,
    redact_for_tests,
    redis_ui_app,
    running_ui_app,
)
from flowrra_ui_django import get_urls, websocket_urls

from flowrra import Flowrra


@pytest.fixture
async def ui_app(tmp_path: Path) -> AsyncIterator[Flowrra]:
    async with running_ui_app(tmp_path) as app:
        yield app


@pytest.fixture
def mounted(ui_app: Flowrra) -> Iterator[None]:
    django_urls.urlpatterns[:] = [
        path("flowrra/", include(get_urls(ui_app))),
        path("open/", include(get_urls(ui_app, writable=False))),
        path("redacted/", include(get_urls(ui_app, redact=redact_for_tests))),
    ]
    clear_url_caches()
    yield
    django_urls.urlpatterns[:] = []
    clear_url_caches()


def _user(name: str, staff: bool) -> User:
    user, _ = User.objects.get_or_create(username=name, defaults={"is_staff": staff})
    return user


@pytest.fixture
async def staff() -> User:
    return await sync_to_async(_user)("admin", True)


def _client(http: AsyncClient, prefix: str) -> Client:
    async def call(
        method: str, path: str, body: Any, extra: dict[str, str] | None
    ) -> tuple[int, Any]:
        url, _, query = path.partition("?")
        headers: dict[str, str] = {}
        options: dict[str, Any] = {}
        if method != "GET":  # Django's client would send an empty multipart form otherwise
            data = "" if body is None else json.dumps(body)
            options.update(data=data, content_type="application/json")
            if body is None:  # Django sends no Content-Type with an empty body by itself
                headers["Content-Type"] = "application/json"
        given = {name.lower() for name in extra or {}}
        headers = {k: v for k, v in headers.items() if k.lower() not in given}
        options["headers"] = {**headers, **(extra or {})}
        if query:
            url = f"{url}?{query}"
        response = await getattr(http, method.lower())(prefix + url, **options)
        return response.status_code, decoded_body(response.get("Content-Type"), response.content)

    return call


@pytest.fixture
async def client(mounted: None, staff: User) -> Client:
    http = AsyncClient()
    await http.aforce_login(staff)
    return _client(http, "/flowrra")


@pytest.fixture
def stranger(mounted: None) -> Client:
    return _client(AsyncClient(), "/flowrra")


@pytest.fixture
async def readonly(mounted: None, staff: User) -> Client:
    http = AsyncClient()
    await http.aforce_login(staff)
    return _client(http, "/open")


@pytest.fixture
def private() -> None:
    return None  # every Django mount is guarded (staff members, or PERMISSION)


@pytest.fixture
async def redacted(mounted: None, staff: User) -> Client:
    http = AsyncClient()
    await http.aforce_login(staff)
    return _client(http, "/redacted")


@pytest.fixture
def websocket(ui_app: Flowrra, staff: User) -> WebSocketProbe:
    application = URLRouter(websocket_urls(ui_app, "flowrra/") + websocket_urls(ui_app, "open/"))
    mounts = {
        "client": ("/flowrra/ws", staff),
        "stranger": ("/flowrra/ws", AnonymousUser()),
        "readonly": ("/open/ws", staff),
    }

    async def probe(mount: str, origin: str | None) -> Any:
        path, user = mounts[mount]
        headers = [(b"host", b"testserver")]
        if origin is not None:
            origin = "http://testserver" if origin == SAME_ORIGIN else origin
            headers.append((b"origin", origin.encode()))
        communicator = WebsocketCommunicator(application, path, headers=headers)
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        if not connected:
            return None
        try:
            return json.loads(await communicator.receive_from(timeout=10))
        finally:
            await communicator.disconnect()

    return probe


@pytest.fixture
def live(ui_app: Flowrra, staff: User) -> LiveSocket:
    application = URLRouter(websocket_urls(ui_app, "flowrra/"))

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Any]:
        communicator = WebsocketCommunicator(application, "/flowrra/ws")
        communicator.scope["user"] = staff
        connected, _ = await communicator.connect()
        assert connected

        async def receive() -> Any:
            return json.loads(await communicator.receive_from(timeout=10))

        try:
            yield receive
        finally:
            await communicator.disconnect()

    return connect


@pytest.fixture
async def redis_ui(mounted: None, staff: User, tmp_path: Path) -> AsyncIterator[RedisMount]:
    async with redis_ui_app(tmp_path / "redis") as (app, url):
        django_urls.urlpatterns.append(path("redis/", include(get_urls(app))))
        clear_url_caches()
        http = AsyncClient()
        await http.aforce_login(staff)
        yield RedisMount(app, _client(http, "/redis"), url)


class TestDjangoContract(UIApiContract):
    pass


async def test_logged_in_non_staff_users_are_refused(mounted: None) -> None:
    user = await sync_to_async(_user)("visitor", False)
    http = AsyncClient()
    await http.aforce_login(user)
    response = await http.get("/flowrra/api/stats")
    assert response.status_code == 403


async def test_writes_need_the_csrf_token(ui_app: Flowrra, mounted: None, staff: User) -> None:
    http = AsyncClient(enforce_csrf_checks=True)
    await http.aforce_login(staff)
    body = json.dumps({"task_name": "add", "cron": "0 9 * * *"})
    refused = await http.post("/flowrra/api/schedules/cron", body, content_type="application/json")
    assert refused.status_code == 403
    assert await ui_app.scheduler.list() == []


def test_the_0_1_8_import_path_gives_the_same_patterns(tmp_path: Path) -> None:
    from flowrra.ui.django import get_urls as get_urls_018

    names = {p.name for p in get_urls_018(make_ui_app(tmp_path))}
    assert names == {p.name for p in get_urls(make_ui_app(tmp_path))}


def test_the_settings_urlconf_and_its_system_check() -> None:
    import flowrra_ui_django.urls as settings_urls
    from django.core import checks

    assert settings_urls.app_name == "flowrra_ui"
    assert {p.name for p in settings_urls.urlpatterns} >= {"api-stats", "api-schedules-cron"}
    assert [m.id for m in checks.run_checks() if m.id.startswith("flowrra_ui")] == []
    from django.test import override_settings

    with override_settings(FLOWRRA_UI={"APP": "django_project.ping"}):
        assert [m.id for m in checks.run_checks() if m.id.startswith("flowrra_ui")] == [
            "flowrra_ui.E001"
        ]


async def test_live_events_through_the_channels_consumer(ui_app: Flowrra, staff: User) -> None:
    application = URLRouter(websocket_urls(ui_app))
    communicator = WebsocketCommunicator(application, "/flowrra/ws")
    communicator.scope["user"] = staff
    connected, _ = await communicator.connect()
    assert connected
    ready = await communicator.receive_from(timeout=10)
    assert json.loads(ready) == {"type": "ready"}  # subscribed from here
    task_id = await ui_app.submit("add", 5, 6)
    seen = []
    while "success" not in seen:
        for event in frame_events(json.loads(await communicator.receive_from(timeout=10))):
            assert event["task_id"] == task_id
            seen.append(event["status"])
    assert seen == ["pending", "running", "success"]
    await communicator.disconnect()

    anonymous = WebsocketCommunicator(application, "/flowrra/ws")
    anonymous.scope["user"] = AnonymousUser()
    connected, _ = await anonymous.connect()
    assert not connected
