"""The PostgreSQL schedule store (asyncpg): ``pip install flowrra-scheduler[postgresql]``.

URLs: ``postgresql://user:password@host:5432/database`` (``postgres://`` too), with any
query parameter asyncpg understands, plus ``?table_prefix=`` for the table names.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from flowrra.exceptions import ScheduleStoreError
from flowrra_scheduler.stores.sql import SCHEMA_VERSION, SQLScheduleStore

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "the PostgreSQL schedule store needs asyncpg: pip install 'flowrra-scheduler[postgresql]'"
    ) from exc

__all__ = ["PostgreSQLScheduleStore"]

_MARK = re.compile(r"\?")
_LOCK_KEY = 0x466C6F77  # pg_advisory_xact_lock key held while the schema is created


def _numbered(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return _MARK.sub(lambda _: f"${next(counter)}", sql)


class PostgreSQLScheduleStore(SQLScheduleStore):
    """Schedules in PostgreSQL (see the module docs)."""

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
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None
        self._sql: dict[str, str] = {}

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        # ValueError: a DSN asyncpg cannot parse (a port that is not a number...).
        return (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            OSError,
            asyncio.TimeoutError,
            ValueError,
        )

    def _pg(self, sql: str) -> str:
        converted = self._sql.get(sql)
        if converted is None:
            converted = self._sql[sql] = _numbered(sql)
        return converted

    async def _open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=self.max_connections,
            timeout=self.connect_timeout,
            command_timeout=self.command_timeout,
        )

    async def _close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=5)
            except Exception:
                pool.terminate()  # a server that stopped answering: drop the connections

    def _conn(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ScheduleStoreError("the PostgreSQL schedule store is closed")
        return self._pool

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        status: str = await self._conn().execute(self._pg(sql), *params)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        rows = await self._conn().fetch(self._pg(sql), *params)
        return [tuple(row) for row in rows]

    async def _migrate(self, statements: Sequence[str]) -> int:
        async with self._conn().acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(self._pg(self._record_version_sql()), SCHEMA_VERSION)
            version = await conn.fetchval(self._read_version_sql())
        return int(version)
