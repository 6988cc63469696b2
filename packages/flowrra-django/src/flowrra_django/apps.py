"""The Django app config: registers the checks and, with ``FLOWRRA["AUTODISCOVER"]`` (the
default), imports each installed app's ``tasks.py`` once every app is ready."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class FlowrraConfig(AppConfig):  # type: ignore[misc]
    name = "flowrra_django"
    label = "flowrra_django"
    verbose_name = "Flowrra"

    def ready(self) -> None:
        from flowrra_django.checks import check_settings
        from flowrra_django.conf import config
        from flowrra_django.discovery import autodiscover_tasks

        checks.register(check_settings)
        try:
            autodiscover = config()["AUTODISCOVER"]
        except Exception:
            return  # flowrra_django.E001 says what is wrong
        if autodiscover:
            autodiscover_tasks()
