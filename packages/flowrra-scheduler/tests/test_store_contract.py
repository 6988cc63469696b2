"""The schedule-store contract of flowrra.testing, run on SQLite, PostgreSQL and MySQL (the
``store`` and ``store_factory`` fixtures of conftest.py are parametrized over all three)."""

from __future__ import annotations

from flowrra.testing import ScheduleStoreContract


class TestScheduleStore(ScheduleStoreContract):
    pass
