"""The Quart app the browser tests serve with hypercorn (``quart_served:web``), and the
Flowrra app their ``flowrra worker quart_served:flowrra`` runs: the UI at ``/flowrra/``
behind a cookie check, and read-only at ``/open/``."""

from __future__ import annotations

from flowrra_ui.browser_contract import served_ui_app
from flowrra_ui_quart import create_blueprint
from quart import Quart, request, websocket

TOKEN = "browser-token"
flowrra = served_ui_app()


def signed_in() -> bool:  # before every request and before the WebSocket is accepted
    cookies = websocket.cookies if websocket else request.cookies
    return cookies.get("flowrra_token") == TOKEN


web = Quart(__name__)
web.register_blueprint(create_blueprint(flowrra, auth=signed_in), url_prefix="/flowrra")
web.register_blueprint(create_blueprint(flowrra, name="open_ui"), url_prefix="/open")


@web.after_serving
async def close() -> None:
    await flowrra.close()
    await flowrra.scheduler.stop()
