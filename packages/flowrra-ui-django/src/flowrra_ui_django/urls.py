"""``path("flowrra/", include("flowrra_ui_django.urls"))``: the UI of the app named by
``FLOWRRA_UI["APP"]``, for users ``FLOWRRA_UI["PERMISSION"]`` lets in."""

from __future__ import annotations

from flowrra_ui_django.conf import config, load_app, load_permission
from flowrra_ui_django.views import get_urls

app_name = "flowrra_ui"

urlpatterns = get_urls(
    load_app(), permission=load_permission(), writable=bool(config()["WRITABLE"])
)
