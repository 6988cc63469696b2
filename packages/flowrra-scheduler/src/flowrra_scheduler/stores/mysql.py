"""The MySQL / MariaDB schedule store (aiomysql): ``pip install flowrra-scheduler[mysql]``.

URLs: ``mysql://user:password@host:3306/database``, plus ``?table_prefix=`` for the table
names and ``?unix_socket=/path`` for a local socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from flowrra.exceptions import ScheduleStoreError
from flowrra_scheduler.stores.sql import COLUMNS, SCHEMA_VERSION, SQLScheduleStore

try:
    import aiomysql
    import pymysql
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "the MySQL schedule store needs aiomysql: pip install 'flowrra-scheduler[mysql]'"
    ) from exc

__all__ = ["MySQLScheduleStore"]


def _text(row: Sequence[Any]) -> tuple[Any, ...]:
    """The row with VARBINARY values (ids) as text."""
    return tuple(v.decode() if isinstance(v, bytes | bytearray) else v for v in row)


class MySQLScheduleStore(SQLScheduleStore):
    """Schedules in MySQL 8 or MariaDB 10.5+ (see the module docs)."""

    def __init__(
        self,
        url: str,
        *,
        table_prefix: str | None = None,
        max_connections: int = 4,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
    ) -> None:
        super().__init__(url, table_prefix=table_prefix)
        parts = urlsplit(self.dsn)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            port = parts.port or 3306
        except ValueError:
            raise ScheduleStoreError(f"the port of {self!r} is not a number") from None
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise ScheduleStoreError(
                f"a MySQL URL needs a database name: mysql://user:password@host:3306/database, "
                f"got {self!r}"
            )
        self._options: dict[str, Any] = {
            "host": parts.hostname or "127.0.0.1",
            "port": port,
            "user": unquote(parts.username or "root"),
            "password": unquote(parts.password or ""),
            "db": database,
            "autocommit": True,
            "charset": "utf8mb4",
            "connect_timeout": connect_timeout,
        }
        if "unix_socket" in query:
            self._options["unix_socket"] = query["unix_socket"]
        self.max_connections = max_connections
        self.command_timeout = command_timeout
        self._pool: aiomysql.Pool | None = None

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        return (pymysql.err.MySQLError, OSError, asyncio.TimeoutError)

    def _ddl(self) -> list[str]:
        # MySQL has no CREATE INDEX IF NOT EXISTS: the index is part of the table.
        create_schema, create_table, _index = super()._ddl()
        # Ids compare byte for byte (text collations ignore case, and PAD SPACE ones
        # trailing spaces); arguments may exceed TEXT's 64 KiB.
        for column in ("id", "definition_key"):
            create_table = create_table.replace(f"{column} VARCHAR(64)", f"{column} VARBINARY(256)")
        create_table = create_table.replace(" TEXT", " LONGTEXT")
        assert create_table.endswith(")")
        create_table = create_table[:-1] + (
            f", INDEX {self.prefix}schedules_due (enabled, next_run_us)"
            ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )
        return [create_schema + " ENGINE=InnoDB", create_table]

    def _insert_if_new(self) -> str:
        marks = ", ".join("?" for _ in COLUMNS)
        # Not INSERT IGNORE: that warns on every duplicate and ignores other errors too.
        return (
            f"INSERT INTO {self.table} ({', '.join(COLUMNS)}) VALUES ({marks}) "
            "ON DUPLICATE KEY UPDATE id = id"
        )

    def _record_version_sql(self) -> str:
        return (
            f"INSERT INTO {self.schema_table} (component, version) VALUES ('scheduler', ?) "
            "ON DUPLICATE KEY UPDATE component = component"
        )

    async def _open(self) -> None:
        self._pool = await aiomysql.create_pool(
            minsize=1, maxsize=self.max_connections, **self._options
        )

    async def _close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            try:
                await asyncio.wait_for(pool.wait_closed(), timeout=5)
            except TimeoutError:
                pool.terminate()  # a server that stopped answering: drop the connections

    def _conn(self) -> aiomysql.Pool:
        if self._pool is None:
            raise ScheduleStoreError("the MySQL schedule store is closed")
        return self._pool

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async def run() -> int:
            async with self._conn().acquire() as conn, conn.cursor() as cursor:
                changed: int = await cursor.execute(sql.replace("?", "%s"), tuple(params))
                return changed

        return await asyncio.wait_for(run(), timeout=self.command_timeout)

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        async def run() -> list[Sequence[Any]]:
            async with self._conn().acquire() as conn, conn.cursor() as cursor:
                await cursor.execute(sql.replace("?", "%s"), tuple(params))
                rows = await cursor.fetchall()
                return [_text(row) for row in rows]

        return await asyncio.wait_for(run(), timeout=self.command_timeout)

    async def _migrate(self, statements: Sequence[str]) -> int:
        lock = f"{self.prefix}schema_lock"
        async with self._conn().acquire() as conn, conn.cursor() as cursor:
            await cursor.execute("SELECT GET_LOCK(%s, 60)", (lock,))
            try:
                # CREATE TABLE IF NOT EXISTS warns when they exist: look first.
                await cursor.execute(
                    "SELECT COUNT(*) FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() AND table_name IN (%s, %s)",
                    (self.table, self.schema_table),
                )
                (present,) = await cursor.fetchone()
                for statement in statements if present < 2 else ():
                    await cursor.execute(statement)
                await cursor.execute(
                    self._record_version_sql().replace("?", "%s"), (SCHEMA_VERSION,)
                )
                await cursor.execute(self._read_version_sql())
                (version,) = await cursor.fetchone()
            finally:
                await cursor.execute("SELECT RELEASE_LOCK(%s)", (lock,))
        return int(version)
