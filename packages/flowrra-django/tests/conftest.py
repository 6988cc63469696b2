"""The tests run in the test project's settings (``tests/project``: ``myproject.settings``),
on a PostgreSQL database of their own (created here, migrated, dropped at the end) and a
Redis key prefix of their own (deleted at the end). The servers are the local ones, or
``FLOWRRA_TEST_POSTGRES_URL`` / ``FLOWRRA_TEST_REDIS_URL``; with
``FLOWRRA_REQUIRE_SERVICES=1`` an unreachable one fails the tests that need it instead of
skipping them."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

PROJECT = Path(__file__).parent / "project"
POSTGRES_URL = os.environ.get(
    "FLOWRRA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("FLOWRRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
#: This run's own database and Redis key prefix.
DATABASE = f"flowrra_django_{uuid.uuid4().hex[:10]}"
PREFIX = f"flowrra-django-{uuid.uuid4().hex[:8]}"


def database_url(name: str) -> str:
    """``FLOWRRA_TEST_POSTGRES_URL`` with the database ``name``."""
    parts = urlsplit(POSTGRES_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


def project_env() -> dict[str, str]:
    """What the test project's settings read: this run's database and Redis prefix."""
    separator = "&" if "?" in REDIS_URL else "?"
    return {
        "DJANGO_SETTINGS_MODULE": "myproject.settings",
        "SHOP_DATABASE_URL": database_url(DATABASE),
        "REDIS_URL": f"{REDIS_URL}{separator}prefix={PREFIX}",
    }


def unreachable(message: str) -> None:
    if os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def pytest_configure(config: pytest.Config) -> None:
    sys.path.insert(0, str(PROJECT))
    os.environ.update(project_env())
    import django

    django.setup()


def admin_connection() -> object:
    """An autocommit connection to the server's own database, for CREATE/DROP DATABASE and
    pg_terminate_backend."""
    import psycopg

    try:
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        unreachable(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
        raise


@pytest.fixture(scope="session")
def database() -> Iterator[str]:
    """This run's database, created and migrated; dropped at the end."""
    import psycopg
    from django.core.management import call_command
    from django.db import connections

    admin = admin_connection()
    assert isinstance(admin, psycopg.Connection)
    with admin:
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
        try:
            call_command("migrate", verbosity=0)
            yield DATABASE
        finally:
            connections.close_all()
            admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The Redis server, checked; this run's keys are deleted at the end."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        unreachable(f"Redis at {REDIS_URL} is unreachable: {exc}")
    try:
        yield REDIS_URL
    finally:
        keys = list(client.scan_iter(match=f"*{PREFIX}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def terminate_backend(pid: int) -> bool:
    """``pg_terminate_backend(pid)`` from another connection, waiting until it is gone;
    whether there was such a backend."""
    import psycopg

    admin = admin_connection()
    assert isinstance(admin, psycopg.Connection)
    with admin:
        row = admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone()
    return bool(row and row[0])


def backend_gone(pid: int, timeout: float = 5.0) -> bool:
    """Whether the PostgreSQL backend ``pid`` is gone (its client closed the connection; the
    server takes a moment to notice), asked for up to ``timeout`` seconds."""
    import time

    import psycopg

    admin = admin_connection()
    assert isinstance(admin, psycopg.Connection)
    deadline = time.monotonic() + timeout
    with admin:
        while True:
            row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
            found = row.fetchone()
            if not (found and found[0]):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
