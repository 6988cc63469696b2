"""The FastAPI app the browser tests serve with uvicorn (``fastapi_served:api``), and the
Flowrra app their ``flowrra worker fastapi_served:flowrra`` runs. The UI is mounted as
docs/ui.md shows it: at ``/flowrra/`` for people signed in with the app's session cookie
(``/login`` signs in), at ``/basic/`` behind HTTP basic auth, at ``/open/`` public and
read-only, and at ``/private/`` with no auth hook (so: private)."""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.requests import HTTPConnection
from fastapi.responses import HTMLResponse, RedirectResponse
from flowrra_ui.browser_contract import served_ui_app
from flowrra_ui_fastapi import create_router
from starlette.middleware.sessions import SessionMiddleware

USERNAME, PASSWORD = "ada", "correct horse"
flowrra = served_ui_app()


def signed_in(connection: HTTPConnection) -> None:  # HTTPConnection: the page, API and /ws
    if connection.session.get("user") is None:
        raise HTTPException(status_code=401, detail="sign in first")


def basic_auth(connection: HTTPConnection) -> None:
    scheme, _, encoded = connection.headers.get("authorization", "").partition(" ")
    try:
        given = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        given = b""
    expected = f"{USERNAME}:{PASSWORD}".encode()
    if scheme.lower() != "basic" or not secrets.compare_digest(given, expected):
        raise HTTPException(
            status_code=401,
            detail="sign in",
            headers={"WWW-Authenticate": 'Basic realm="Flowrra", charset="UTF-8"'},
        )


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    yield
    await flowrra.close()
    await flowrra.scheduler.stop()


api = FastAPI(lifespan=lifespan)
api.add_middleware(SessionMiddleware, secret_key="tests-only")
api.include_router(create_router(flowrra, dependencies=[Depends(signed_in)]), prefix="/flowrra")
api.include_router(create_router(flowrra, dependencies=[Depends(basic_auth)]), prefix="/basic")
api.include_router(create_router(flowrra, public=True), prefix="/open")
api.include_router(create_router(flowrra), prefix="/private")

LOGIN_FORM = """<!doctype html><title>Sign in</title>
<form method="post" action="/login">
  <label>Name <input name="username"></label>
  <label>Password <input name="password" type="password"></label>
  <button type="submit">Sign in</button>
</form>"""


@api.get("/login", response_class=HTMLResponse)
async def login_form() -> str:
    return LOGIN_FORM


@api.post("/login")
async def login(request: Request) -> RedirectResponse:
    form = parse_qs((await request.body()).decode())
    username = form.get("username", [""])[0]
    password = form.get("password", [""])[0]
    if not (
        secrets.compare_digest(username.encode(), USERNAME.encode())
        and secrets.compare_digest(password.encode(), PASSWORD.encode())
    ):
        raise HTTPException(status_code=401, detail="wrong name or password")
    request.session["user"] = username
    return RedirectResponse("/flowrra/", status_code=303)
