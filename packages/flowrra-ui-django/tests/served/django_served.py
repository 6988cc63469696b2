"""The Django project the browser tests serve with daphne (``django_served:application``),
and the Flowrra app their ``flowrra worker django_served:flowrra`` runs: the UI at
``/flowrra/`` for staff members (a session cookie), read-only at ``/open/``, and the live
stream through Channels. Its user database is the file ``$FLOWRRA_UI_TEST_DJANGO_DB``."""

from __future__ import annotations

import os

from django_test_settings import configure
from flowrra_ui.browser_contract import served_ui_app

flowrra = served_ui_app()

configure(
    os.environ["FLOWRRA_UI_TEST_DJANGO_DB"],
    urlconf=__name__,
    flowrra_app=f"{__name__}.flowrra",
    hosts=["127.0.0.1", "localhost"],
)

from channels.auth import AuthMiddlewareStack  # noqa: E402  (after configure)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import include, path  # noqa: E402
from flowrra_ui_django import get_urls, websocket_urls  # noqa: E402

urlpatterns = [
    path("flowrra/", include("flowrra_ui_django.urls")),
    path("open/", include(get_urls(flowrra, writable=False))),
]
application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(
                URLRouter(websocket_urls(flowrra, "flowrra/") + websocket_urls(flowrra, "open/"))
            )
        ),
    }
)
