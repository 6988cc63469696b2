"""flowrra-django: Flowrra for Django projects.

::

    # settings.py
    INSTALLED_APPS += ["flowrra_django"]
    FLOWRRA = {
        "BROKER_URL": "redis://localhost:6379/0",
        "BACKEND_URL": "redis://localhost:6379/1",
    }

    # shop/tasks.py (found by autodiscovery)
    from flowrra_django import get_app

    app = get_app()


    @app.task()
    def ship(order_id: int) -> str: ...   # a plain def: runs in a thread, may use the ORM

    # anywhere: ship.delay(order.pk), delay_on_commit(ship, order.pk)

    $ python manage.py flowrra worker

:func:`get_app` gives the project's app (``FLOWRRA["APP"]``, or one built from the
settings); ``manage.py flowrra worker|scheduler|status`` are the ``flowrra`` commands with
Django set up; the worker closes old database connections around each task; and
``flowrra_django.tasks.FlowrraBackend`` is a backend for Django's own Tasks framework
(Django 6.0+).
"""

from __future__ import annotations

from flowrra_django._version import __version__
from flowrra_django.conf import get_app
from flowrra_django.discovery import autodiscover_tasks
from flowrra_django.transaction import delay_on_commit

__all__ = ["__version__", "autodiscover_tasks", "delay_on_commit", "get_app"]
