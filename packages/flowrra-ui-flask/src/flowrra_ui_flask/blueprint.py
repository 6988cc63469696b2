"""The monitoring UI as a Flask ``Blueprint``, for WSGI servers (gunicorn, uWSGI, Waitress).

Every endpoint's behaviour and access rule lives in :mod:`flowrra_ui.service`; its
coroutines run on the app's sync loop (:mod:`flowrra.portal`), so views are plain
``def``s. Live events go out as Server-Sent Events (``/events``, ``text/event-stream``):
each open page holds one server thread (size gunicorn's ``--threads`` for it); the page
falls back to polling every 15 s when the stream cannot be opened.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, request
from flowrra_ui import INDEX, ROUTES, Route, UIService, dispatch, serve_asset
from flowrra_ui.live import frames, join_from_thread
from flowrra_ui.redaction import Redact, redact_secrets
from flowrra_ui.service import websocket_refusal
from werkzeug.wrappers import Response as BaseResponse

if TYPE_CHECKING:
    from flowrra.app import Flowrra

__all__ = ["KEEPALIVE", "Auth", "create_blueprint"]

#: The ``auth`` hook: ``() -> bool | Response`` (an ``async def`` works too, through
#: Flask's ``ensure_sync``; see :func:`create_blueprint`).
Auth = Callable[[], Any]

#: Seconds between keep-alive comments on an idle event stream: a stream whose page has
#: gone is noticed (and its thread freed) at the next write.
KEEPALIVE = 15.0


def _json(body: Any, status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _run(app: Flowrra, make: Callable[[], Any]) -> Any:
    return app._call_sync("the Flowrra UI", "the Quart or FastAPI adapter", make)


def _view(service: UIService, route: Route) -> Callable[..., Response]:
    def view(**params: str) -> Response:
        method, path = request.method, route.path.format(**params)
        query, body = dict(request.args), request.get_data(cache=False)
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, answer = _run(
            service.app,
            lambda: dispatch(service, method, path, query, body, headers),
        )
        return _json(answer, status)

    return view


def _page(name: str) -> Response:
    status, headers, body = serve_asset(name, request.headers.get("If-None-Match"))
    return Response(body, status=status, headers=headers)


def event_stream(service: UIService, keepalive: float = KEEPALIVE) -> Response:
    """The ``/events`` answer: a refusal (401 private, 403 cross-site), 503 when the event
    subscription cannot be made, or a stream of ``data:`` lines: the messages of
    :mod:`flowrra_ui.live` (``{"type": "ready"}`` first, task events through the mount's
    ``redact``, ``{"type": "reconnecting"}`` while the subscription is lost, and
    ``{"type": "dropped", ...}`` last for a client too far behind)."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    refusal = websocket_refusal(service, headers)
    if refusal is not None:
        status, message = refusal
        return _json({"error": message}, status)
    try:
        client = join_from_thread(service.app)  # the subscription holds from here
    except Exception as exc:
        return _json({"error": f"unavailable: {exc}"}, 503)

    def stream() -> Iterator[bytes]:
        try:
            while True:
                messages = client.take(timeout=keepalive)
                if not messages:
                    yield b": keep-alive\n\n"
                    continue
                # What waits goes in one write: a burst of events as one message.
                yield "".join(f"data: {text}\n\n" for text in frames(service, messages)).encode()
                last = messages[-1]  # "dropped" is the last message a client gets
                if isinstance(last, dict) and last["type"] == "dropped":
                    return  # too far behind: the page reconnects
        finally:  # the client went away (the write failed), or the server stops
            client.leave()

    return Response(
        stream(),
        status=200,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def create_blueprint(
    app: Flowrra,
    *,
    auth: Auth | None = None,
    public: bool = False,
    writable: bool | None = None,
    redact: Redact | None = redact_secrets,
    name: str = "flowrra_ui",
) -> Blueprint:
    """A Flask ``Blueprint`` serving the UI for ``app``: the dashboard page (``/``, with its
    files under ``/static/``), the JSON API (``/api/...``) and live events (``/events``,
    Server-Sent Events).

    ``auth`` runs before every request of the blueprint, the event stream included; it
    reads ``flask.request`` (or ``session``) and returns whether to let it through, or a
    response to send instead (a 401 with ``WWW-Authenticate`` for HTTP basic auth, a
    redirect to your sign-in page). Without it the UI is private (no task data; the page
    says how to add auth), unless ``public=True`` opens it (read-only, with a warning in
    the log). Changes (retries, schedules) are accepted on a guarded UI only, unless
    ``writable`` says otherwise; they must be sent as JSON, and an ``Origin`` header, when
    present, must name this host (cross-site writes are refused). ``redact`` masks what is
    shown (:func:`flowrra_ui.redact_secrets` by default; ``None`` shows everything). Each
    call builds its own state; give each mount its own ``name``."""
    service = UIService(
        app,
        guarded=auth is not None,
        public=public,
        writable=writable,
        redact=redact,
        live="sse",
    )
    blueprint = Blueprint(name, __name__)

    if auth is not None:
        hook = auth

        def check() -> BaseResponse | None:
            allowed = current_app.ensure_sync(hook)()
            if isinstance(allowed, BaseResponse):
                return allowed  # the hook's own answer: a challenge, a redirect
            if not allowed:
                return _json({"error": "authentication required"}, 401)
            return None

        blueprint.before_request(check)

    for route in ROUTES:
        rule = re.sub(r"\{(\w+)\}", r"<\1>", route.path)
        endpoint = route.method.lower() + route.path.replace("/", "_").replace("{", "").replace(
            "}", ""
        )
        blueprint.add_url_rule(
            rule, endpoint=endpoint, view_func=_view(service, route), methods=[route.method]
        )

    def page() -> Response:
        return _page(INDEX)

    def static(name: str) -> Response:
        return _page(name)

    def events() -> Response:
        return event_stream(service)

    blueprint.add_url_rule("/", endpoint="page", view_func=page, methods=["GET"])
    blueprint.add_url_rule("/static/<name>", endpoint="asset", view_func=static, methods=["GET"])
    blueprint.add_url_rule("/events", endpoint="events", view_func=events, methods=["GET"])
    return blueprint
