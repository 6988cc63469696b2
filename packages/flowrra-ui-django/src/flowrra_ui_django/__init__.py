"""flowrra-ui-django: Flowrra's monitoring UI as a reusable Django app.

::

    # settings.py
    INSTALLED_APPS += ["flowrra_ui_django"]
    FLOWRRA_UI = {"APP": "myproject.tasks.app"}      # the Flowrra app, as a dotted path

    # urls.py
    urlpatterns += [path("flowrra/", include("flowrra_ui_django.urls"))]

    # asgi.py (live updates, with Django Channels)
    from channels.auth import AuthMiddlewareStack
    from channels.routing import ProtocolTypeRouter, URLRouter
    from channels.security.websocket import AllowedHostsOriginValidator
    from flowrra_ui_django.routing import websocket_urlpatterns

    application = ProtocolTypeRouter({
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    })

Only staff members get in by default (``FLOWRRA_UI["PERMISSION"]`` changes that); changes
go through Django's CSRF protection. The app holds routing, auth and the Channels consumer
only; every endpoint's behaviour lives in :mod:`flowrra_ui.service`.
"""

from __future__ import annotations

from flowrra_ui_django._version import __version__
from flowrra_ui_django.views import get_urls, websocket_urls

__all__ = ["__version__", "get_urls", "websocket_urls"]
