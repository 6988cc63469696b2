"""The SQLite schedule store (aiosqlite): the default, a file that several scheduler
processes on one machine can share.

URLs: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite:///:memory:``
(one process only; gone when it closes). Files use write-ahead logging and wait up to
``busy_timeout`` seconds for another process's write lock.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosqlite

from flowrra.exceptions import ScheduleStoreError
from flowrra_scheduler.stores.sql import SCHEMA_VERSION, SQLScheduleStore

__all__ = ["SQLiteScheduleStore", "sqlite_path"]


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite://`` URL (see the module docs)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ScheduleStoreError(f"not a sqlite:// URL: {url!r}")
    if parts.netloc and parts.netloc != ":memory:":
        raise ScheduleStoreError(
            f"a SQLite URL has no host: write sqlite:///relative.db or sqlite:////abs/path.db, "
            f"got {url!r}"
        )
    if parts.netloc == ":memory:":
        return ":memory:"
    path = unquote(parts.path)
    path = path[1:] if path.startswith("/") else path
    if not path:
        raise ScheduleStoreError(f"a SQLite URL needs a file path, got {url!r}")
    return path


def _missing_folder(path: str) -> str | None:
    folder = os.path.dirname(os.path.abspath(path))
    return None if os.path.isdir(folder) else folder


class SQLiteScheduleStore(SQLScheduleStore):
    """Schedules in a SQLite file (see the module docs)."""

    float_type = "REAL"

    def __init__(
        self,
        url: str = "sqlite:///.flowrra_schedule.db",
        *,
        table_prefix: str | None = None,
        busy_timeout: float = 30.0,
    ) -> None:
        super().__init__(url, table_prefix=table_prefix)
        self.path = sqlite_path(self.dsn)
        self.busy_timeout = busy_timeout
        self._db: aiosqlite.Connection | None = None

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error, OSError)

    async def _open(self) -> None:
        if self.path != ":memory:":
            folder = await asyncio.to_thread(_missing_folder, self.path)
            if folder is not None:
                raise ScheduleStoreError(
                    f"cannot connect to the schedule store at {self.url}: the folder "
                    f"{folder!r} does not exist"
                )
        pending = aiosqlite.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        # aiosqlite's thread is not a daemon: a process that ends without stopping the
        # scheduler (the seed docs' example, ended by Ctrl+C) would hang at exit waiting
        # for it. Every write is committed when it returns, so nothing is lost if the
        # thread dies with the process. (Set before the thread starts, when awaited.)
        thread = getattr(pending, "_thread", None)
        if thread is not None and not thread.is_alive():
            thread.daemon = True
        try:
            db = await pending
        except BaseException:
            # aiosqlite stops its thread without waiting; let it finish while the loop runs.
            thread = getattr(pending, "_thread", None)
            if thread is not None:
                await asyncio.to_thread(thread.join, 1.0)
            raise
        try:
            if self.path != ":memory:":
                await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        except BaseException:
            await db.close()
            raise
        self._db = db

    async def _close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise ScheduleStoreError("the SQLite schedule store is closed")
        return self._db

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._conn().execute(sql, tuple(params))
        changed = cursor.rowcount
        await cursor.close()
        return changed

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        async with self._conn().execute(sql, tuple(params)) as cursor:
            return list(await cursor.fetchall())

    async def _migrate(self, statements: Sequence[str]) -> int:
        db = self._conn()
        await db.execute("BEGIN IMMEDIATE")  # the write lock: one migrating process at a time
        try:
            for statement in statements:
                await db.execute(statement)
            await db.execute(self._record_version_sql(), (SCHEMA_VERSION,))
            async with db.execute(self._read_version_sql()) as cursor:
                rows = list(await cursor.fetchall())
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        return int(rows[0][0])
