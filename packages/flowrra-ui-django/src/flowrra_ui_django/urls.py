"""``path("flowrra/", include("flowrra_ui_django.urls"))``: the UI of the app named by
``FLOWRRA_UI["APP"]``, for users ``FLOWRRA_UI["PERMISSION"]`` lets in, writable as
``FLOWRRA_UI["WRITABLE"]`` says: :func:`~flowrra_ui_django.get_urls` of that app, which
reads the last two itself."""

from __future__ import annotations

from flowrra_ui_django.conf import load_app
from flowrra_ui_django.views import get_urls

app_name = "flowrra_ui"

urlpatterns = get_urls(load_app())
