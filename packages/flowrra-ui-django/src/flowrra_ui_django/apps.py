"""The Django app config, and the system checks of the ``FLOWRRA_UI`` setting and of what
the UI needs from the rest of the settings (``manage.py check``)."""

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
        checks.register(check_auth)


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


def check_auth(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The views ask Django who the user is (``request.auser()``): the session and
    authentication middleware must be in ``MIDDLEWARE`` (``flowrra_ui.E002``), and the apps
    behind them in ``INSTALLED_APPS`` (``flowrra_ui.E003``)."""
    from flowrra_ui_django import conf

    errors: list[checks.CheckMessage] = []
    middleware = conf.missing_middleware()
    if middleware:
        names = " and ".join(name.rsplit(".", 1)[1] for name in middleware)
        errors.append(
            checks.Error(
                f"the Flowrra UI needs Django's {names} in MIDDLEWARE to know who the user "
                "is (every UI request fails otherwise)",
                hint=conf.middleware_advice(middleware),
                id="flowrra_ui.E002",
            )
        )
    installed = conf.missing_apps()
    if installed:
        errors.append(
            checks.Error(
                f"the Flowrra UI needs {conf.quoted_names(installed)} in INSTALLED_APPS for "
                "Django's authentication and sessions",
                hint=conf.apps_advice(installed),
                id="flowrra_ui.E003",
            )
        )
    return errors
