"""``tasks.py`` autodiscovery: import the ``tasks`` module of every installed app, as
Django's admin imports each app's ``admin`` module, so the tasks they declare are
registered with the app before a worker takes messages (a task name a worker does not know
is dead-lettered)."""

from __future__ import annotations

import importlib
import logging

from django.apps import apps
from django.utils.module_loading import module_has_submodule

__all__ = ["autodiscover_tasks"]

logger = logging.getLogger("flowrra.django")

#: Where an installed app keeps its tasks.
TASKS_MODULE = "tasks"


def autodiscover_tasks() -> list[str]:
    """Import ``<app>.tasks`` for each installed app that has one (``flowrra_django``'s own
    ``tasks`` module is the Django Tasks backend, not tasks); returns the modules imported.

    An app without the module is skipped; an error raised while importing one propagates,
    with its traceback, as Django's ``autodiscover_modules`` does."""
    imported = []
    for config in apps.get_app_configs():
        if config.name == "flowrra_django" or config.module is None:
            continue
        if not module_has_submodule(config.module, TASKS_MODULE):
            continue
        name = f"{config.name}.{TASKS_MODULE}"
        importlib.import_module(name)
        imported.append(name)
    logger.debug("tasks modules imported: %s", ", ".join(imported) or "none")
    return imported
