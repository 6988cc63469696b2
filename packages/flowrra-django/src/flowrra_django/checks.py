"""System checks of the ``FLOWRRA`` setting (``manage.py check``, and before every
``manage.py flowrra`` command).

- ``flowrra_django.E001``: ``FLOWRRA`` is not a dict of known keys.
- ``flowrra_django.E002``: the app cannot be had: ``APP`` does not import or is not a
  Flowrra app, or the settings do not build one (a wrong URL, option, or missing plugin).
- ``flowrra_django.W001``: the app keeps an I/O executor of its own, so database
  connections are not closed around its tasks.
- ``flowrra_django.W002``: ``APP`` is set together with settings that only configure an
  app built from settings: they are ignored.
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

__all__ = ["check_settings"]


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from flowrra_django.conf import BUILD_KEYS, DEFAULTS, config, get_app
    from flowrra_django.executor import has_connection_handling

    try:
        conf = config()
    except ImproperlyConfigured as exc:
        return [
            checks.Error(
                str(exc),
                hint="FLOWRRA = {'BROKER_URL': 'redis://localhost:6379/0', ...}",
                id="flowrra_django.E001",
            )
        ]
    messages: list[checks.CheckMessage] = []
    if conf["APP"] is not None:
        ignored = [key for key in BUILD_KEYS if conf[key] != DEFAULTS[key]]
        if ignored:
            messages.append(
                checks.Warning(
                    f"FLOWRRA['APP'] names the app, so FLOWRRA's {', '.join(ignored)} are ignored",
                    hint="configure that app where it is made, or drop FLOWRRA['APP'] to "
                    "have the app built from these settings",
                    id="flowrra_django.W002",
                )
            )
    try:
        app = get_app()
    except Exception as exc:
        messages.append(
            checks.Error(
                f"the Flowrra app cannot be had: {type(exc).__name__}: {exc}",
                hint="FLOWRRA['APP'] = 'myproject.tasks:app', or FLOWRRA['BROKER_URL'] and "
                "FLOWRRA['BACKEND_URL'] with their plugin installed (redis:// needs "
                "flowrra-redis)",
                id="flowrra_django.E002",
            )
        )
        return messages
    if not has_connection_handling(app):
        messages.append(
            checks.Warning(
                f"the Flowrra app's I/O executor is {app.worker.io_executor!r}: database "
                "connections are not closed around its tasks",
                hint="let the app use Flowrra's IOExecutor, or call "
                "django.db.close_old_connections() before and after each task",
                id="flowrra_django.W001",
            )
        )
    return messages
