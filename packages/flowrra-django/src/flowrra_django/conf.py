"""The ``FLOWRRA`` setting, and the project's app it gives (:func:`get_app`).

One dict, with defaults (as django-debug-toolbar's ``DEBUG_TOOLBAR_CONFIG``)::

    FLOWRRA = {
        "APP": None,             # "myproject.tasks:app": the project's own app; else one is
                                 # built from the keys below
        "BROKER_URL": "memory://",
        "BACKEND_URL": "memory://",
        "BROKER_OPTIONS": {},    # more BrokerConfig fields (max_connections, socket_timeout...)
        "BACKEND_OPTIONS": {},   # more BackendConfig fields (ttl, max_connections...)
        "EXECUTOR": {},          # ExecutorConfig fields (num_workers, threads, max_retries...)
        "AUTODISCOVER": True,    # import each installed app's tasks.py at startup
    }

The app is resolved once per process; a test that changes ``FLOWRRA`` with
``override_settings`` gets an app of its settings, and the project's back afterwards.
Whichever it is, :func:`get_app` prepares it for Django: the tasks it runs close the
database connections Django would close around a request (:mod:`flowrra_django.executor`).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from flowrra import BackendConfig, BrokerConfig, Config, ExecutorConfig, Flowrra
from flowrra_django.executor import prepare_app

__all__ = ["DEFAULTS", "app_spec", "config", "get_app", "reset"]

DEFAULTS: dict[str, Any] = {
    "APP": None,
    "BROKER_URL": "memory://",
    "BACKEND_URL": "memory://",
    "BROKER_OPTIONS": {},
    "BACKEND_OPTIONS": {},
    "EXECUTOR": {},
    "AUTODISCOVER": True,
}
#: What configures an app built from settings: ignored when ``APP`` names one.
BUILD_KEYS = ("BROKER_URL", "BACKEND_URL", "BROKER_OPTIONS", "BACKEND_OPTIONS", "EXECUTOR")

_lock = threading.RLock()  # re-entrant: an APP module that calls get_app() fails, not hangs
_app: Flowrra | None = None
#: The apps of the settings ``override_settings(FLOWRRA=...)`` blocks replaced, innermost last.
_outer: list[Flowrra | None] = []


def config() -> dict[str, Any]:
    """``settings.FLOWRRA`` over :data:`DEFAULTS`."""
    given = getattr(settings, "FLOWRRA", None) or {}
    if not isinstance(given, Mapping):
        raise ImproperlyConfigured(f"settings.FLOWRRA must be a dict, got {given!r}")
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ImproperlyConfigured(
            f"settings.FLOWRRA has unknown keys {unknown}; the keys are {sorted(DEFAULTS)}"
        )
    return {**DEFAULTS, **given}


def app_spec(value: str) -> tuple[str, str]:
    """``"module:attribute"`` (as ``flowrra worker`` takes it) or ``"module.attribute"``
    (as ``FLOWRRA_UI["APP"]`` does), split into module and attribute."""
    module, colon, attr = value.partition(":")
    if not colon:
        module, _, attr = value.rpartition(".")
    if not module or not attr:
        raise ImproperlyConfigured(
            f"FLOWRRA['APP'] must name an app as 'module:attribute' "
            f"(e.g. 'myproject.tasks:app'), got {value!r}"
        )
    return module, attr


def _import_app(value: str) -> Flowrra:
    module_name, attr = app_spec(value)
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ImproperlyConfigured(
                f"FLOWRRA['APP']: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if not isinstance(target, Flowrra):
        raise ImproperlyConfigured(
            f"FLOWRRA['APP'] = {value!r} is a {type(target).__name__}, not a Flowrra app"
        )
    return target


def _options(conf: dict[str, Any], key: str) -> dict[str, Any]:
    value = conf[key]
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"FLOWRRA[{key!r}] must be a dict, got {value!r}")
    return dict(value)


def build_app(conf: dict[str, Any]) -> Flowrra:
    """An app on ``BROKER_URL`` and ``BACKEND_URL`` with the ``*_OPTIONS`` and ``EXECUTOR``
    fields (a wrong field or value raises :class:`~flowrra.ConfigError` or ``TypeError``)."""
    return Flowrra(
        Config(
            broker=BrokerConfig(url=conf["BROKER_URL"], **_options(conf, "BROKER_OPTIONS")),
            backend=BackendConfig(url=conf["BACKEND_URL"], **_options(conf, "BACKEND_OPTIONS")),
            executor=ExecutorConfig(**_options(conf, "EXECUTOR")),
        )
    )


def get_app() -> Flowrra:
    """The project's Flowrra app: the one ``FLOWRRA["APP"]`` names, else one built from the
    ``FLOWRRA`` settings; the same object for the life of the process (thread-safe).

    Import it where tasks are declared (``app = get_app()`` in an app's ``tasks.py``) and
    where they are submitted; ``manage.py flowrra worker`` runs it."""
    global _app
    app = _app
    if app is not None:
        return app
    with _lock:
        if _app is None:
            conf = config()
            app = _import_app(conf["APP"]) if conf["APP"] is not None else build_app(conf)
            prepare_app(app)
            _app = app
        return _app


def reset() -> None:
    """Forget the app :func:`get_app` resolved: the next call resolves it again."""
    global _app
    with _lock:
        _app = None


def _on_setting_changed(*, setting: str, enter: bool = True, **kwargs: Any) -> None:
    """A test's ``override_settings(FLOWRRA=...)`` gets an app of its settings, and the app
    of the settings before it back at the end (the one the tasks modules registered with)."""
    global _app
    if setting != "FLOWRRA":
        return
    with _lock:
        if enter:
            _outer.append(_app)
            _app = None
        else:
            _app = _outer.pop() if _outer else None


setting_changed.connect(_on_setting_changed, dispatch_uid="flowrra_django.conf")
