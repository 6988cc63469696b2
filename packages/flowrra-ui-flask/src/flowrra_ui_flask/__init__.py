"""flowrra-ui-flask: Flowrra in Flask, on WSGI.

The extension (:mod:`flowrra_ui_flask.extension`)::

    from flask import Flask, session
    from flowrra_ui_flask import FlowrraFlask, create_blueprint

    web = Flask(__name__)
    web.config["FLOWRRA_BROKER_URL"] = "redis://localhost:6379/0"
    web.config["FLOWRRA_BACKEND_URL"] = "redis://localhost:6379/1"
    flowrra = FlowrraFlask(web)   # config, `flask flowrra worker`, app context in tasks

and the monitoring UI (:mod:`flowrra_ui_flask.blueprint`)::

    web.register_blueprint(
        create_blueprint(flowrra.app, auth=lambda: session.get("staff") is True),
        url_prefix="/flowrra",
    )

The blueprint holds routing, auth and the event stream only; every endpoint's behaviour
and access rule lives in :mod:`flowrra_ui.service`. ``auth`` is called before every
request, the event stream's included; it reads ``flask.request`` and returns whether to
let it through, or a response to send instead. Without it the UI is private, unless
``public=True`` opens it (read-only, with a warning in the log). Live updates are
Server-Sent Events (``<mount>/events``); the page falls back to polling every 15 s.
"""

from __future__ import annotations

from flowrra_ui_flask._version import __version__
from flowrra_ui_flask.blueprint import Auth, create_blueprint
from flowrra_ui_flask.extension import EXTENSION_KEY, FlaskAppContext, FlowrraFlask

__all__ = [
    "EXTENSION_KEY",
    "Auth",
    "FlaskAppContext",
    "FlowrraFlask",
    "__version__",
    "create_blueprint",
]
