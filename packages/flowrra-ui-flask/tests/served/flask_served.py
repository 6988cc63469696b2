"""The Flask app the browser tests serve with gunicorn (``flask_served:web``, threads),
and the Flowrra app their ``flowrra worker flask_served:flowrra`` runs. The UI is mounted
as docs/flask.md shows it: at ``/flowrra/`` for people signed in with the app's session
cookie (``/login`` signs in), at ``/basic/`` behind HTTP basic auth, at ``/open/`` public
and read-only, and at ``/private/`` with no auth hook (so: private)."""

from __future__ import annotations

import secrets

from flask import Flask, Response, redirect, request, session
from flowrra_ui.browser_contract import served_ui_app
from flowrra_ui_flask import FlowrraFlask, create_blueprint

USERNAME, PASSWORD = "ada", "correct horse"
flowrra = served_ui_app()


def _matches(username: str | None, password: str | None) -> bool:
    return secrets.compare_digest((username or "").encode(), USERNAME.encode()) and (
        secrets.compare_digest((password or "").encode(), PASSWORD.encode())
    )


def signed_in() -> bool:  # before every request, the event stream's included
    return session.get("user") is not None


def basic_auth() -> bool | Response:
    auth = request.authorization
    if auth is not None and auth.type == "basic" and _matches(auth.username, auth.password):
        return True
    return Response("sign in", 401, {"WWW-Authenticate": 'Basic realm="Flowrra", charset="UTF-8"'})


web = Flask(__name__)
web.secret_key = "tests-only"
FlowrraFlask(web, flowrra=flowrra)
web.register_blueprint(create_blueprint(flowrra, auth=signed_in), url_prefix="/flowrra")
web.register_blueprint(
    create_blueprint(flowrra, auth=basic_auth, name="basic_ui"), url_prefix="/basic"
)
web.register_blueprint(create_blueprint(flowrra, public=True, name="open_ui"), url_prefix="/open")
web.register_blueprint(create_blueprint(flowrra, name="private_ui"), url_prefix="/private")

LOGIN_FORM = """<!doctype html><title>Sign in</title>
<form method="post" action="/login">
  <label>Name <input name="username"></label>
  <label>Password <input name="password" type="password"></label>
  <button type="submit">Sign in</button>
</form>"""


@web.get("/login")
def login_form() -> str:
    return LOGIN_FORM


@web.post("/login")
def login() -> Response | tuple[str, int]:
    if not _matches(request.form.get("username"), request.form.get("password")):
        return "wrong name or password", 401
    session["user"] = request.form["username"]
    return redirect("/flowrra/", 303)
