"""``settings.FLOWRRA``: the app :func:`get_app` gives (named by ``APP``, or built from the
settings), its system checks, and ``tasks.py`` autodiscovery."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from django.apps import apps
from django.core import checks
from django.test import override_settings
from flowrra_django import autodiscover_tasks, get_app
from flowrra_django.checks import check_settings
from flowrra_django.executor import DjangoIOExecutor

from flowrra import Flowrra, IOExecutor, MemoryBroker

#: An app of this module's own, for FLOWRRA["APP"].
own_app = Flowrra()
#: An app whose I/O executor is not Flowrra's.
custom_executor_app = Flowrra(io_executor=type("Mine", (IOExecutor,), {})())


def ids(messages: list[checks.CheckMessage]) -> list[str]:
    return [message.id for message in messages]


def test_the_project_app_is_built_from_settings_once() -> None:
    app = get_app()
    assert app is get_app()
    assert app.config.broker is not None and app.config.broker.url.startswith("redis://")
    assert app.config.executor.num_workers == 8
    assert isinstance(app.worker.io_executor, DjangoIOExecutor)
    assert (app.worker.io_executor.concurrency, app.worker.io_executor.threads) == (8, 4)


def test_every_setting_reaches_the_app() -> None:
    with override_settings(
        FLOWRRA={
            "BROKER_URL": "redis://127.0.0.1:6379/3",
            "BACKEND_URL": "redis://127.0.0.1:6379/4",
            "BROKER_OPTIONS": {"max_connections": 7},
            "BACKEND_OPTIONS": {"ttl": 3600},
            "EXECUTOR": {"num_workers": 3, "threads": 2, "max_retries": 5},
        }
    ):
        app = get_app()
        assert app.config.broker is not None and app.config.backend is not None
        assert (app.config.broker.url, app.config.broker.max_connections) == (
            "redis://127.0.0.1:6379/3",
            7,
        )
        assert (app.config.backend.url, app.config.backend.ttl) == (
            "redis://127.0.0.1:6379/4",
            3600,
        )
        assert app.config.executor.max_retries == 5
        assert (app.worker.io_executor.concurrency, app.worker.io_executor.threads) == (3, 2)
    assert get_app() is not app  # override_settings gave a new app, and took it back


def test_without_settings_the_app_is_embedded() -> None:
    with override_settings(FLOWRRA={}):
        assert isinstance(get_app().broker, MemoryBroker)


@pytest.mark.parametrize("spec", ["test_settings:own_app", "test_settings.own_app"])
def test_app_names_the_projects_own_app(spec: str) -> None:
    with override_settings(FLOWRRA={"APP": spec}):
        assert get_app() is own_app
        assert isinstance(own_app.worker.io_executor, DjangoIOExecutor)
        assert check_settings() == []


@pytest.mark.parametrize(
    ("flowrra", "wanted"),
    [
        ({"BROKER": "redis://"}, "flowrra_django.E001"),
        ("redis://", "flowrra_django.E001"),
        ({"APP": "nowhere.tasks:app"}, "flowrra_django.E002"),
        ({"APP": "test_settings:ids"}, "flowrra_django.E002"),
        ({"APP": "test_settings:missing"}, "flowrra_django.E002"),
        ({"BROKER_URL": "localhost:6379"}, "flowrra_django.E002"),
        ({"BROKER_URL": "nats://localhost"}, "flowrra_django.E002"),
        ({"EXECUTOR": {"workers": 3}}, "flowrra_django.E002"),
        ({"APP": "test_settings:custom_executor_app"}, "flowrra_django.W001"),
    ],
)
def test_checks_tell_what_is_wrong(flowrra: object, wanted: str) -> None:
    with override_settings(FLOWRRA=flowrra):
        assert wanted in ids(check_settings())


def test_settings_beside_app_are_reported_as_ignored() -> None:
    with override_settings(FLOWRRA={"APP": "test_settings:own_app", "BROKER_URL": "redis://"}):
        (message,) = check_settings()
    assert message.id == "flowrra_django.W002"
    assert "BROKER_URL" in message.msg


def test_the_project_passes_its_checks() -> None:
    assert [m for m in checks.run_checks() if m.id and m.id.startswith("flowrra")] == []


def test_tasks_modules_of_installed_apps_are_imported_at_startup() -> None:
    assert "shop.tasks" in sys.modules
    assert "ship" in get_app().registry
    expected = ["shop.tasks"] + (["reports.tasks"] if apps.is_installed("reports") else [])
    assert autodiscover_tasks() == expected  # flowrra_django's own tasks.py is not tasks


@pytest.fixture
def shop_tasks_unimported() -> Iterator[None]:
    """``shop.tasks`` out of ``sys.modules`` for the test (put back after)."""
    saved = sys.modules.pop("shop.tasks")
    try:
        yield
    finally:
        sys.modules["shop.tasks"] = saved


@pytest.mark.parametrize("autodiscover", [True, False])
@pytest.mark.usefixtures("shop_tasks_unimported")
def test_autodiscover_false_leaves_tasks_modules_alone(autodiscover: bool) -> None:
    with override_settings(FLOWRRA={"AUTODISCOVER": autodiscover}):
        apps.get_app_config("flowrra_django").ready()
        assert ("shop.tasks" in sys.modules) is autodiscover
