"""The Django app config, and the system checks of the ``FLOWRRA_UI`` setting."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks


class FlowrraUIConfig(AppConfig):  # type: ignore[misc]
    name = "flowrra_ui_django"
    label = "flowrra_ui"
    verbose_name = "Flowrra UI"

    def ready(self) -> None:
        checks.register(check_settings)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``FLOWRRA_UI["APP"]`` must name a Flowrra app that imports."""
    from flowrra_ui_django.conf import load_app

    try:
        load_app()
    except Exception as exc:
        return [
            checks.Error(
                f"FLOWRRA_UI['APP'] does not give a Flowrra app: {exc}",
                hint="set FLOWRRA_UI = {'APP': 'myproject.tasks.app'} in settings.py",
                id="flowrra_ui.E001",
            )
        ]
    return []
