"""Fixtures of the scheduler tests: one ``db`` fixture parametrized over SQLite (a temporary
file), PostgreSQL and MySQL/MariaDB (the local servers, or ``FLOWRRA_TEST_POSTGRES_URL`` /
``FLOWRRA_TEST_MYSQL_URL``), each test with tables of its own (a fresh ``table_prefix``),
dropped afterwards. Where ``FLOWRRA_REQUIRE_SERVICES=1``, an unreachable server fails the
test instead of skipping it."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from flowrra_scheduler.stores.mysql import MySQLScheduleStore
from flowrra_scheduler.stores.postgresql import PostgreSQLScheduleStore
from flowrra_scheduler.stores.sql import SQLScheduleStore
from flowrra_scheduler.stores.sqlite import SQLiteScheduleStore

from flowrra import get_scheduler_backend

POSTGRES_URL = os.environ.get(
    "FLOWRRA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("FLOWRRA_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
APPS = Path(__file__).parent / "apps"
DATABASES = ["sqlite", "postgresql", "mysql"]

_reachable: dict[str, str | None] = {}


def _probe(url: str) -> str | None:
    """None if a store on ``url`` can connect, else why not."""

    async def attempt() -> None:
        store = get_scheduler_backend(f"{url}?table_prefix=probe_")
        assert isinstance(store, SQLScheduleStore)
        try:
            await store.connect()
            await store.drop()
        finally:
            await store.close()

    try:
        asyncio.run(attempt())
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def server_url(kind: str) -> str:
    """The server URL of ``kind``, or skip/fail the test if it cannot be reached."""
    url = POSTGRES_URL if kind == "postgresql" else MYSQL_URL
    if kind not in _reachable:
        _reachable[kind] = _probe(url)
    problem = _reachable[kind]
    if problem is not None:
        message = f"{kind} at {url} is unreachable: {problem}"
        if os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL with tables of this test's own."""
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'schedules.db'}?table_prefix={prefix}"
    return f"{server_url(request.param)}?table_prefix={prefix}"


@pytest.fixture
async def drop_tables(db_url: str) -> AsyncIterator[None]:
    yield
    store = get_scheduler_backend(db_url)
    assert isinstance(store, SQLScheduleStore)
    try:
        await store.drop()
    finally:
        await store.close()


@pytest.fixture
def store_factory(db_url: str, drop_tables: None) -> Callable[[], SQLScheduleStore]:
    def make() -> SQLScheduleStore:
        store = get_scheduler_backend(db_url)
        assert isinstance(store, SQLiteScheduleStore | PostgreSQLScheduleStore | MySQLScheduleStore)
        return store

    return make


@pytest.fixture
async def store(store_factory: Callable[[], SQLScheduleStore]) -> AsyncIterator[SQLScheduleStore]:
    made = store_factory()
    await made.connect()
    yield made
    await made.close()


@pytest.fixture
def new_york_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZoneInfo]:
    """This process's local time is New York's (not UTC: a naive datetime read as UTC
    would be five hours off)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield ZoneInfo("America/New_York")
    monkeypatch.undo()
    time.tzset()


def pytest_configure(config: pytest.Config) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
