"""The views and the Channels consumer, built per mount by :func:`get_urls` and
:func:`websocket_urls` (they close over their own :class:`~flowrra_ui.UIService`).

Who gets in is ``permission(user)``: a plain function runs in a thread
(``sync_to_async``), as Django code that reads the database must outside a sync view, so
``user.has_perm(...)`` works; an ``async def`` one is awaited."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import re
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.middleware.csrf import get_token
from django.urls import URLPattern, path
from flowrra_ui import INDEX, ROUTES, Route, UIService, dispatch, serve_asset
from flowrra_ui.live import DROPPED_CODE, stream_text
from flowrra_ui.redaction import Redact
from flowrra_ui.service import websocket_refusal

from flowrra_ui_django.conf import (
    Permission,
    load_permission,
    load_redact,
    load_writable,
    no_auth_message,
)

if TYPE_CHECKING:
    from flowrra.app import Flowrra

__all__ = ["FROM_SETTINGS", "LiveConsumer", "Permission", "get_urls", "websocket_urls"]


class _Default(enum.Enum):
    FROM_SETTINGS = "FROM_SETTINGS"


#: ``redact=`` left out: ``FLOWRRA_UI["REDACT"]`` decides (``None`` would mean: mask nothing).
FROM_SETTINGS = _Default.FROM_SETTINGS


def _redact(redact: Redact | _Default | None) -> Redact | None:
    return load_redact() if isinstance(redact, _Default) else redact


async def _permits(permission: Permission, user: Any, in_thread: Any = sync_to_async) -> bool:
    """``permission(user)``: awaited if it is async, else run in a thread (by
    ``in_thread``) so that it may query the database."""
    if user is None:
        return False
    if inspect.iscoroutinefunction(permission):
        return bool(await permission(user))
    answer = await in_thread(permission)(user)
    if inspect.isawaitable(answer):
        answer = await answer
    return bool(answer)


async def _user(request: HttpRequest) -> Any:
    """The user Django's authentication middleware gives; without that middleware, an
    error saying what to add instead of an ``AttributeError``."""
    auser = getattr(request, "auser", None)
    if auser is None:
        raise ImproperlyConfigured(no_auth_message())
    return await auser()


def _view(service: UIService, routes: list[Route], permission: Permission) -> Any:
    by_method = {route.method: route for route in routes}

    async def view(request: HttpRequest, **params: str) -> JsonResponse:
        user = await _user(request)
        if not await _permits(permission, user):
            status = 401 if not user.is_authenticated else 403
            return JsonResponse({"error": "staff members only"}, status=status)
        route = by_method.get(request.method or "")
        if route is None:
            allowed = ", ".join(sorted(by_method))
            return JsonResponse(
                {"error": f"{request.method} is not allowed here; use {allowed}"}, status=405
            )
        status, body = await dispatch(
            service,
            route.method,
            route.path.format(**params),
            request.GET.dict(),
            request.body,
            dict(request.headers),
        )
        return JsonResponse(body, status=status, safe=False)

    return view


def _asset_view(permission: Permission) -> Any:
    async def view(request: HttpRequest, name: str = INDEX) -> HttpResponseBase:
        user = await _user(request)
        if not await _permits(permission, user):
            if name == INDEX and not user.is_authenticated:
                from django.contrib.auth.views import redirect_to_login  # needs apps loaded

                return redirect_to_login(request.get_full_path())
            return HttpResponse("staff members only", status=403, content_type="text/plain")
        if request.method not in ("GET", "HEAD"):
            return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
        if name == INDEX:
            get_token(request)  # sets the CSRF cookie the page sends back on changes
        status, headers, body = serve_asset(name, request.headers.get("If-None-Match"))
        return HttpResponse(body, status=status, headers=headers)

    return view


def get_urls(
    app: Flowrra,
    *,
    permission: Permission | None = None,
    writable: bool | None = None,
    redact: Redact | _Default | None = FROM_SETTINGS,
) -> list[URLPattern]:
    """URL patterns of the UI for ``app``, ``include(get_urls(app))``: the dashboard page
    (the include's root, with its files under ``static/``) and the JSON API (``api/...``).

    Only users for whom ``permission(user)`` is true get in; an anonymous visitor of the
    page is sent to ``settings.LOGIN_URL``. ``writable`` allows retries and schedule
    changes. ``redact`` masks what is shown (``None``: nothing). Each one left out comes
    from ``FLOWRRA_UI`` (``"PERMISSION"``, default: active staff members; ``"WRITABLE"``,
    default true; ``"REDACT"``, default :func:`flowrra_ui.redact_secrets`), read when this
    is called, as ``include("flowrra_ui_django.urls")`` reads them: it calls this with the
    app alone.
    """
    allowed = permission if permission is not None else load_permission()
    service = UIService(
        app,
        guarded=True,
        writable=load_writable() if writable is None else writable,
        redact=_redact(redact),
    )
    grouped: dict[str, list[Route]] = {}
    for route in ROUTES:
        grouped.setdefault(route.path, []).append(route)
    assets = _asset_view(allowed)
    patterns = [path("", assets, name="index"), path("static/<str:name>", assets, name="static")]
    for route_path, routes in grouped.items():
        django_path = re.sub(r"\{(\w+)\}", r"<str:\1>", route_path.lstrip("/"))
        name = route_path.strip("/").replace("/", "-").replace("{", "").replace("}", "")
        patterns.append(path(django_path, _view(service, routes, allowed), name=name))
    return patterns


class LiveConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Sends live task events to permitted users; others, and handshakes from another
    site (``Origin``), are refused before accept."""

    service: UIService
    permission: Permission

    def __init__(self, *args: Any, service: UIService, permission: Permission, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.service = service
        self.permission = permission
        self._incoming: asyncio.Queue[str | None] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in self.scope.get("headers", [])
        }
        user = self.scope.get("user")
        if (
            not await _permits(self.permission, user, database_sync_to_async)
            or websocket_refusal(self.service, headers) is not None
        ):
            await self.close()
            return
        await self.accept()

        async def send(text: str) -> None:
            await self.send(text_data=text)

        async def stream() -> None:
            ended = await stream_text(self.service, send, self._incoming.get)
            if ended is not None:  # no subscription, or a client too slow: say why
                await self.close(code=DROPPED_CODE, reason=ended)

        self._pump = asyncio.create_task(stream())

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self._incoming.put(text_data or "")

    async def disconnect(self, code: int) -> None:
        await self._incoming.put(None)
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump


def websocket_urls(
    app: Flowrra,
    prefix: str = "flowrra/",
    *,
    permission: Permission | None = None,
    redact: Redact | _Default | None = FROM_SETTINGS,
) -> list[URLPattern]:
    """The Channels routes of the live stream (``<prefix>ws``) for ``app``, for users
    ``permission`` lets in, events masked by ``redact`` (either left out: from
    ``FLOWRRA_UI``, as in :func:`get_urls`). A handshake whose ``Origin`` names another
    site than its ``Host`` is refused too (as ``AllowedHostsOriginValidator`` does)."""
    allowed = permission if permission is not None else load_permission()
    service = UIService(app, guarded=True, redact=_redact(redact))
    consumer = LiveConsumer.as_asgi(service=service, permission=allowed)
    return [path(f"{prefix}ws", consumer)]
