"""Plugins are found through entry points: a real distribution installed in the test
environment (tests/plugin_dist, installed by `nox -s tests`), and injected entry points for
the conflict case."""

from __future__ import annotations

from importlib.metadata import EntryPoint, distribution

import pytest

import flowrra
from flowrra import (
    BrokerConfig,
    Flowrra,
    MemoryBroker,
    PluginConflictError,
    PluginNotFoundError,
    TaskStatus,
)
from flowrra import plugins as plugins_module


def _require_test_plugin() -> None:
    try:
        distribution("flowrra-test-plugin")
    except Exception:
        pytest.fail(
            "flowrra-test-plugin is not installed: `nox -s tests` installs "
            "packages/flowrra-core/tests/plugin_dist; or pip install it yourself"
        )


async def test_installed_plugin_is_found_by_url_scheme() -> None:
    _require_test_plugin()
    from flowrra_test_plugin import RecordingBackend, RecordingBroker

    app = Flowrra.from_urls(broker="testmem://queue-host/3", backend="TESTMEM://results")
    assert isinstance(app.broker, RecordingBroker)
    assert app.broker.config.url == "testmem://queue-host/3"
    assert isinstance(app.backend, RecordingBackend)

    @app.task()
    async def hello(name: str) -> str:
        return f"hi {name}"

    async with app:
        result = await app.wait_for_result(await app.submit(hello, "plugin"), timeout=5)
    assert result.status is TaskStatus.SUCCESS and result.result == "hi plugin"


def test_known_scheme_without_its_plugin_names_the_package(monkeypatch) -> None:
    # flowrra-redis is installed in the test environment: hide every entry point, as on a
    # machine that has flowrra-core alone.
    monkeypatch.setattr(plugins_module, "entry_points", lambda *, group: [])
    plugins_module.plugins_in.cache_clear()
    try:
        with pytest.raises(PluginNotFoundError, match=r"pip install flowrra-redis"):
            Flowrra.from_urls(broker="redis://localhost:6379/0")
        with pytest.raises(PluginNotFoundError, match=r"pip install flowrra-redis"):
            Flowrra.from_urls(backend="rediss://localhost:6379/1")
    finally:
        plugins_module.plugins_in.cache_clear()


def test_unknown_scheme_names_the_entry_point_group() -> None:
    with pytest.raises(PluginNotFoundError, match=r"'flowrra\.brokers'"):
        Flowrra.from_urls(broker="carrier-pigeon://coop")


def test_create_scheduler_without_the_package_says_what_to_install(monkeypatch) -> None:
    # flowrra-scheduler is installed in the test environment: hide every entry point.
    monkeypatch.setattr(plugins_module, "entry_points", lambda *, group: [])
    plugins_module.plugins_in.cache_clear()
    try:
        app = Flowrra()
        with pytest.raises(PluginNotFoundError, match=r"pip install flowrra-scheduler"):
            app.create_scheduler()
        with pytest.raises(PluginNotFoundError, match=r"pip install flowrra-scheduler\[mysql\]"):
            flowrra.get_scheduler_backend("mysql://db/app")
        with pytest.raises(PluginNotFoundError, match=r"pip install flowrra-scheduler"):
            flowrra.get_scheduler_backend()
        from flowrra.ui.fastapi import create_router

        with pytest.raises(PluginNotFoundError, match=r"pip install flowrra-ui-fastapi"):
            create_router(app)
        from flowrra.ui.flask import create_blueprint

        with pytest.raises(PluginNotFoundError, match=r"pip install flowrra-ui-quart"):
            create_blueprint(app)
        from flowrra.ui.django import get_urls

        with pytest.raises(PluginNotFoundError, match=r"pip install flowrra-ui-django"):
            get_urls(app)
    finally:
        plugins_module.plugins_in.cache_clear()


def test_two_distributions_claiming_one_scheme_is_an_error(monkeypatch) -> None:
    injected = [
        EntryPoint("twin", "pkg_one:make", "flowrra.brokers"),
        EntryPoint("twin", "pkg_two:make", "flowrra.brokers"),
    ]

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        return [ep for ep in injected if ep.group == group]

    monkeypatch.setattr(plugins_module, "entry_points", fake_entry_points)
    plugins_module.plugins_in.cache_clear()
    try:
        with pytest.raises(PluginConflictError, match=r"pkg_one:make.*pkg_two:make"):
            Flowrra.from_urls(broker="twin://x")
    finally:
        plugins_module.plugins_in.cache_clear()


BUILT: list[BrokerConfig] = []


def spy_factory(config: BrokerConfig) -> MemoryBroker:
    BUILT.append(config)
    return MemoryBroker()


def test_injected_entry_point_factory_gets_the_config(monkeypatch) -> None:
    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        if group != "flowrra.brokers":
            return []
        return [EntryPoint("spy", f"{__name__}:spy_factory", group)]

    monkeypatch.setattr(plugins_module, "entry_points", fake_entry_points)
    plugins_module.plugins_in.cache_clear()
    BUILT.clear()
    try:
        app = Flowrra.from_urls(broker="spy://h:1/2")
    finally:
        plugins_module.plugins_in.cache_clear()
    assert [c.url for c in BUILT] == ["spy://h:1/2"]
    assert isinstance(app.broker, MemoryBroker)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql://app:pa/S3cr3t@127.0.0.1:5432/db", "postgresql://app:***@127.0.0.1:5432/db"),
        ("mysql://app:pa#S3cr3t@h/db", "mysql://app:***@h/db"),
        ("postgresql://app:S3cr3t@h:54x2/db", "postgresql://app:***@h:54x2/db"),
        (
            "postgresql://app@h/db?sslmode=x&password=S3cr3t",
            "postgresql://app@h/db?sslmode=x&password=***",
        ),
        ("sqlite:////tmp/a@b.db", "sqlite:////tmp/a@b.db"),
        ("redis://h:6379/0", "redis://h:6379/0"),
    ],
)
def test_describe_url_never_shows_a_password(url: str, shown: str) -> None:
    assert plugins_module.describe_url(url) == shown
