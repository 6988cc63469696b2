"""Submitting when the database transaction commits.

A task submitted inside ``transaction.atomic()`` may start before the transaction commits,
and not see the rows it was given the ids of (or see them and the transaction then roll
back). :func:`delay_on_commit` waits for the commit, as Celery's ``delay_on_commit``: the
task is queued once the outermost atomic block commits, and never if it rolls back.
"""

from __future__ import annotations

import functools
from typing import Any, ParamSpec

from django.db import DEFAULT_DB_ALIAS, transaction

from flowrra import TaskCall, TaskHandle

__all__ = ["delay_on_commit"]

P = ParamSpec("P")


def delay_on_commit(
    task: TaskHandle[P, Any] | TaskCall[P], /, *args: P.args, **kwargs: P.kwargs
) -> None:
    """``task.delay(*args, **kwargs)`` when the current transaction of the default database
    commits (at once outside a transaction). ``task`` is a task or
    ``task.with_options(...)``. Returns nothing: there is no task id before the commit.

    The same as ``transaction.on_commit(lambda: task.delay(...))``; for another database,
    call that with ``using=``. Sync code only, like ``transaction.atomic()`` itself: async
    code runs its transaction in a ``sync_to_async`` function and calls this there."""
    transaction.on_commit(functools.partial(task.delay, *args, **kwargs), using=DEFAULT_DB_ALIAS)
