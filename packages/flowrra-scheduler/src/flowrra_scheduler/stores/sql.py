"""What every SQL schedule store shares: the schema, its version, the statements, and the
translation of rows and driver errors. A dialect supplies a handful of primitives (open,
close, execute, fetch, migrate under a lock) and its spelling of a few statements.

Statements are written once with ``?`` placeholders; each dialect rewrites them to its own
(``$1`` for asyncpg, ``%s`` for aiomysql). Instants are BIGINT microseconds since the epoch,
so a compare-and-set on them or on ``revision`` is exact on every database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from flowrra.exceptions import ScheduleError, ScheduleStoreError
from flowrra.plugins import describe_url
from flowrra.schedules import (
    MisfirePolicy,
    ScheduledTask,
    ScheduleType,
    from_micros,
    to_micros,
)

__all__ = ["SCHEMA_VERSION", "SQLScheduleStore", "split_table_prefix"]

logger = logging.getLogger("flowrra.scheduler.store")

T = TypeVar("T")

SCHEMA_VERSION = 1
"""The version of the tables this release writes. ``connect`` records it in
``<prefix>schema``; a later release migrates from the recorded version, and this one
refuses a database whose recorded version is newer than it knows."""

_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")

# Column order of every SELECT and INSERT.
COLUMNS = (
    "id",
    "definition_key",
    "task_name",
    "schedule_type",
    "schedule_spec",
    "tz_name",
    "args",
    "kwargs",
    "enabled",
    "priority",
    "description",
    "misfire_policy",
    "misfire_grace",
    "next_run_us",
    "last_run_us",
    "run_count",
    "created_us",
    "updated_us",
    "revision",
)


def split_table_prefix(url: str, default: str = "flowrra_") -> tuple[str, str]:
    """``url`` without its ``?table_prefix=`` query parameter, and that prefix (or
    ``default``). Several apps can share one database with different prefixes."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = default
    kept = []
    for key, value in query:
        if key == "table_prefix":
            prefix = value
        else:
            kept.append((key, value))
    if not _PREFIX.match(prefix):
        raise ScheduleStoreError(
            f"table_prefix must be letters, digits and underscores, got {prefix!r}"
        )
    # Rebuilt by hand: urlunsplit turns sqlite:////abs/path into sqlite://abs/path.
    base = url.split("?", 1)[0].split("#", 1)[0]
    clean = f"{base}?{urlencode(kept)}" if kept else base
    return clean, prefix


class SQLScheduleStore(ABC):
    """A :class:`flowrra.protocols.ScheduleStore` on a SQL database (see module docs)."""

    #: The SQL type of a floating-point column.
    float_type = "DOUBLE PRECISION"
    #: The SQL type of a column that holds short indexed text.
    key_type = "VARCHAR"

    def __init__(self, url: str, *, table_prefix: str | None = None) -> None:
        self.url = url
        clean, prefix = split_table_prefix(url)
        self.dsn = clean
        self.prefix = table_prefix if table_prefix is not None else prefix
        if not _PREFIX.match(self.prefix):
            raise ScheduleStoreError(
                f"table_prefix must be letters, digits and underscores, got {self.prefix!r}"
            )
        self.table = f"{self.prefix}schedules"
        self.schema_table = f"{self.prefix}schema"
        self._connected = False
        self._connect_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({describe_url(self.url)!r})"

    # -- what a dialect provides ---------------------------------------------------------

    @abstractmethod
    async def _open(self) -> None:
        """Open the connection (pool)."""

    @abstractmethod
    async def _close(self) -> None:
        """Close it."""

    @abstractmethod
    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (``?`` placeholders); the number of rows it changed."""

    @abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        """Run one query (``?`` placeholders); its rows."""

    @abstractmethod
    async def _migrate(self, statements: Sequence[str]) -> int:
        """Run the schema statements in one transaction, under a lock that keeps other
        processes from migrating at the same time; then return the recorded version."""

    def _insert_if_new(self) -> str:
        """An INSERT of every column that does nothing when the id or the definition exists."""
        marks = ", ".join("?" for _ in COLUMNS)
        return (
            f"INSERT INTO {self.table} ({', '.join(COLUMNS)}) VALUES ({marks}) "
            "ON CONFLICT DO NOTHING"
        )

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        """Exceptions of the driver that mean the database failed."""
        return (OSError,)

    def _ddl(self) -> list[str]:
        """The schema, created if absent."""
        return [
            f"""CREATE TABLE IF NOT EXISTS {self.schema_table} (
                component {self.key_type}(64) PRIMARY KEY,
                version INTEGER NOT NULL)""",
            f"""CREATE TABLE IF NOT EXISTS {self.table} (
                id {self.key_type}(64) PRIMARY KEY,
                definition_key {self.key_type}(64) NOT NULL UNIQUE,
                task_name {self.key_type}(255) NOT NULL,
                schedule_type {self.key_type}(16) NOT NULL,
                schedule_spec {self.key_type}(255) NOT NULL,
                tz_name {self.key_type}(64) NOT NULL,
                args TEXT NOT NULL,
                kwargs TEXT NOT NULL,
                enabled SMALLINT NOT NULL,
                priority BIGINT NOT NULL,
                description TEXT,
                misfire_policy {self.key_type}(16) NOT NULL,
                misfire_grace {self.float_type} NOT NULL,
                next_run_us BIGINT,
                last_run_us BIGINT,
                run_count BIGINT NOT NULL,
                created_us BIGINT NOT NULL,
                updated_us BIGINT NOT NULL,
                revision BIGINT NOT NULL)""",
            f"CREATE INDEX IF NOT EXISTS {self.prefix}schedules_due "
            f"ON {self.table} (enabled, next_run_us)",
        ]

    # -- the protocol --------------------------------------------------------------------

    async def connect(self) -> None:
        if self._connected:
            return
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if not self._connected:
                await self._connect()

    async def _connect(self) -> None:
        await self._guard(self._open(), "connect to")
        try:
            version = await self._guard(self._migrate(self._ddl()), "create the schema in")
        except BaseException:
            await self._close()
            raise
        if version > SCHEMA_VERSION:
            await self._close()
            raise ScheduleStoreError(
                f"the schedule tables in {describe_url(self.url)} are at schema version "
                f"{version}, newer than this flowrra-scheduler knows ({SCHEMA_VERSION}): "
                "upgrade flowrra-scheduler"
            )
        self._connected = True

    async def close(self) -> None:
        if self._connected:
            self._connected = False
            await self._close()

    async def add(self, schedule: ScheduledTask) -> ScheduledTask:
        await self._ready()
        await self._guard(self._execute(self._insert_if_new(), self._row(schedule)), "write to")
        rows = await self._guard(
            self._fetch(
                f"SELECT {', '.join(COLUMNS)} FROM {self.table} WHERE definition_key = ?",
                (schedule.definition_key,),
            ),
            "read from",
        )
        if not rows:
            raise ScheduleError(
                f"a different schedule already has the id {schedule.id!r}: "
                "pick another task_id, or leave it out to get a fresh one"
            )
        return self._schedule(rows[0])

    async def get(self, schedule_id: str) -> ScheduledTask | None:
        await self._ready()
        rows = await self._guard(
            self._fetch(
                f"SELECT {', '.join(COLUMNS)} FROM {self.table} WHERE id = ?", (schedule_id,)
            ),
            "read from",
        )
        return self._schedule(rows[0]) if rows else None

    async def list_all(self, enabled_only: bool = False) -> list[ScheduledTask]:
        await self._ready()
        where = "WHERE enabled = 1 " if enabled_only else ""
        rows = await self._guard(
            self._fetch(
                f"SELECT {', '.join(COLUMNS)} FROM {self.table} {where}ORDER BY created_us, id"
            ),
            "read from",
        )
        return [self._schedule(row) for row in rows]

    async def replace(self, schedule: ScheduledTask, expected_revision: int) -> bool:
        await self._ready()
        row = self._row(schedule)
        assignments = ", ".join(f"{column} = ?" for column in COLUMNS[1:-1])
        changed = await self._guard(
            self._execute(
                f"UPDATE {self.table} SET {assignments}, revision = ? "
                "WHERE id = ? AND revision = ?",
                (*row[1:-1], expected_revision + 1, schedule.id, expected_revision),
            ),
            "write to",
        )
        if changed == 1:
            schedule.revision = expected_revision + 1
            return True
        return False

    async def delete(self, schedule_id: str) -> bool:
        await self._ready()
        changed = await self._guard(
            self._execute(f"DELETE FROM {self.table} WHERE id = ?", (schedule_id,)), "write to"
        )
        return changed > 0

    async def due(self, now: datetime, limit: int) -> list[ScheduledTask]:
        await self._ready()
        rows = await self._guard(
            self._fetch(
                f"SELECT {', '.join(COLUMNS)} FROM {self.table} "
                "WHERE enabled = 1 AND next_run_us <= ? ORDER BY next_run_us, id LIMIT ?",
                (to_micros(now), int(limit)),
            ),
            "read from",
        )
        return [self._schedule(row) for row in rows]

    async def next_run_at(self) -> datetime | None:
        await self._ready()
        rows = await self._guard(
            self._fetch(f"SELECT MIN(next_run_us) FROM {self.table} WHERE enabled = 1"),
            "read from",
        )
        return from_micros(rows[0][0]) if rows and rows[0][0] is not None else None

    async def clear(self) -> int:
        await self._ready()
        return await self._guard(self._execute(f"DELETE FROM {self.table}"), "write to")

    async def drop(self) -> None:
        """Drop this store's tables (tests and teardown)."""
        await self._ready()
        for table in (self.table, self.schema_table):
            await self._guard(self._execute(f"DROP TABLE IF EXISTS {table}"), "write to")

    # -- helpers -------------------------------------------------------------------------

    async def _ready(self) -> None:
        if not self._connected:
            await self.connect()

    async def _guard(self, awaitable: Awaitable[T], doing: str) -> T:
        try:
            return await awaitable
        except ScheduleStoreError:
            raise
        except self._driver_errors() as exc:
            raise ScheduleStoreError(
                f"cannot {doing} the schedule store at {describe_url(self.url)} "
                f"({type(exc).__name__}: {exc})"
            ) from exc

    @staticmethod
    def _row(s: ScheduledTask) -> tuple[Any, ...]:
        def micros(value: datetime | None) -> int | None:
            return to_micros(value) if value is not None else None

        return (
            s.id,
            s.definition_key,
            s.task_name,
            s.schedule_type.value,
            s.schedule,
            s.timezone,
            json.dumps(list(s.args)),
            json.dumps(s.kwargs),
            1 if s.enabled else 0,
            s.priority,
            s.description,
            s.misfire_policy.value,
            float(s.misfire_grace),
            micros(s.next_run_at),
            micros(s.last_run_at),
            s.run_count,
            to_micros(s.created_at),
            to_micros(s.updated_at),
            s.revision,
        )

    @staticmethod
    def _schedule(row: Sequence[Any]) -> ScheduledTask:
        created = from_micros(row[16])
        updated = from_micros(row[17])
        assert created is not None and updated is not None
        return ScheduledTask(
            id=row[0],
            task_name=row[2],
            schedule_type=ScheduleType(row[3]),
            schedule=row[4],
            timezone=row[5],
            args=tuple(json.loads(row[6])),
            kwargs=json.loads(row[7]),
            enabled=bool(row[8]),
            priority=int(row[9]),
            description=row[10],
            misfire_policy=MisfirePolicy(row[11]),
            misfire_grace=float(row[12]),
            next_run_at=from_micros(row[13]),
            last_run_at=from_micros(row[14]),
            run_count=int(row[15]),
            created_at=created,
            updated_at=updated,
            revision=int(row[18]),
        )

    def _record_version_sql(self) -> str:
        """Record ``SCHEMA_VERSION`` unless a version is recorded already (``?`` for it)."""
        return (
            f"INSERT INTO {self.schema_table} (component, version) "
            "VALUES ('scheduler', ?) ON CONFLICT DO NOTHING"
        )

    def _read_version_sql(self) -> str:
        return f"SELECT version FROM {self.schema_table} WHERE component = 'scheduler'"
