"""The Channels routes of the live stream, for the app of ``FLOWRRA_UI["APP"]``, at
``flowrra/ws`` (``FLOWRRA_UI["WS_PREFIX"]`` changes the prefix). Wrap them as Channels
advises: ``AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))``."""

from __future__ import annotations

from flowrra_ui_django.conf import config, load_app
from flowrra_ui_django.views import websocket_urls

websocket_urlpatterns = websocket_urls(load_app(), config().get("WS_PREFIX", "flowrra/"))
