"""Every error Flowrra raises on purpose.

The tree::

    FlowrraError
    ├── ConfigError                  bad configuration value or environment variable
    ├── PluginError                  a broker / backend / extension could not be loaded
    │   ├── PluginNotFoundError      no plugin for that URL scheme or name (says what to install)
    │   └── PluginConflictError      two installed distributions claim the same name
    ├── TaskRegistrationError        @app.task() used on something it cannot run (also TypeError)
    ├── TaskNotRegisteredError       submit() of a function or name that was never registered
    ├── SerializationError           arguments or a result that cannot be encoded as JSON
    ├── NotRunningError              waiting on an embedded app that was never started
    ├── SyncCallInLoopError          a *_sync call or task.delay() from a thread running a loop
    ├── NoTaskContextError           current_task() outside a running task (also RuntimeError)
    ├── UnknownTaskError             wait_for_result() on an id no backend has heard of
    ├── ResultTimeoutError           wait_for_result() timed out (also TimeoutError)
    ├── BrokerError                  the broker failed (connection lost, server error)
    ├── BackendError                 the result backend failed
    │   └── MaybeQueuedError         submit failed to record the task, which may still run
    ├── ScheduleError                a schedule that cannot be made (also ValueError)
    │   └── ScheduleNotFoundError    no schedule with that id (also LookupError)
    └── ScheduleStoreError           the schedule store's database failed or is unreachable

Names from flowrra 0.1.8 stay importable: ``TaskNotFoundError`` is
``TaskNotRegisteredError``, ``TaskTimeoutError`` is ``ResultTimeoutError`` and
``ExecutorNotRunningError`` is ``NotRunningError``.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BrokerError",
    "ConfigError",
    "ExecutorNotRunningError",
    "FlowrraError",
    "MaybeQueuedError",
    "NoTaskContextError",
    "NotRunningError",
    "PluginConflictError",
    "PluginError",
    "PluginNotFoundError",
    "ResultTimeoutError",
    "ScheduleError",
    "ScheduleNotFoundError",
    "ScheduleStoreError",
    "SerializationError",
    "SyncCallInLoopError",
    "TaskNotFoundError",
    "TaskNotRegisteredError",
    "TaskRegistrationError",
    "TaskTimeoutError",
    "UnknownTaskError",
]


class FlowrraError(Exception):
    """Root of every error Flowrra raises on purpose."""


class ConfigError(FlowrraError, ValueError):
    """A configuration value is invalid."""


class PluginError(FlowrraError):
    """A plugin could not be loaded."""


class PluginNotFoundError(PluginError):
    """No installed plugin provides the requested URL scheme or extension."""


class PluginConflictError(PluginError):
    """Two installed distributions register the same plugin name in one group."""


class TaskRegistrationError(FlowrraError, TypeError):
    """``@app.task()`` was applied to a function it cannot run the way it was asked to."""


class TaskNotRegisteredError(FlowrraError, KeyError):
    """A function or task name was submitted that the app does not know."""

    def __init__(self, task_name: str) -> None:
        self.task_name = task_name
        super().__init__(task_name)

    def __str__(self) -> str:
        return (
            f"task {self.task_name!r} is not registered: decorate the function with "
            "@app.task() in a module the app (and every worker) imports"
        )


class SerializationError(FlowrraError, TypeError):
    """A task's arguments or result cannot be encoded as JSON."""


class NotRunningError(FlowrraError, RuntimeError):
    """The embedded app was not started, so nothing will ever run what was submitted."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "the app is not running: call `await app.start()` or use `async with app:`; "
            "tasks submitted before start() wait in the queue and run once it starts"
        )


class SyncCallInLoopError(FlowrraError, RuntimeError):
    """A sync call (``app.submit_sync``, ``task.delay``, ...) was made from a thread that
    runs an event loop: it would block that loop, and deadlock if the call needs it."""

    def __init__(self, call: str, instead: str) -> None:
        self.call = call
        super().__init__(
            f"{call} was called from a thread that runs an event loop, which it would block "
            f"(and deadlock, if the call needed that loop): in async code, use `{instead}`"
        )


class NoTaskContextError(FlowrraError, RuntimeError):
    """``flowrra.current_task()`` was called outside a running task."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "current_task() was called outside a running task: it answers inside a task "
            "function (and what it calls, and its thread), run by a worker or in eager mode"
        )


class UnknownTaskError(FlowrraError, LookupError):
    """No result backend record exists for this task id."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(
            f"no task with id {task_id!r}: it was never submitted to this app's backend, "
            "or its result expired from the store"
        )


class ResultTimeoutError(FlowrraError, TimeoutError):
    """``wait_for_result`` gave up waiting. The task itself keeps running."""

    def __init__(self, task_id: str, timeout: float) -> None:
        self.task_id = task_id
        self.timeout = timeout
        super().__init__(
            f"task {task_id!r} did not finish within {timeout}s; it keeps running and "
            "its result can be fetched later with get_result() or wait_for_result()"
        )


class BrokerError(FlowrraError):
    """The broker failed to enqueue, reserve or acknowledge."""


class BackendError(FlowrraError):
    """The result backend failed to store or read a result."""


class MaybeQueuedError(BackendError):
    """``submit`` (or ``submit_many``) could not store the PENDING record, after the
    broker had been sent the message: the task may have been queued, and then runs. Its
    id is :attr:`task_id` (all of them in :attr:`task_ids`, for ``submit_many``);
    :attr:`queued` is True when the broker is known to have accepted it, None when that
    is unknown. Look the id up (``get_result``) before submitting again."""

    def __init__(
        self, task_ids: list[str], name: str, queued: bool | None, cause: BaseException
    ) -> None:
        self.task_ids = task_ids
        self.task_id = task_ids[0]
        self.queued = queued
        which = (
            f"task {name!r} [{task_ids[0]}]"
            if len(task_ids) == 1
            else f"{len(task_ids)} tasks {name!r} (first id {task_ids[0]})"
        )
        state = "was queued" if queued else "may have been queued"
        super().__init__(
            f"{which} {state}, but its PENDING record could not be stored ({cause}); "
            "it runs if a worker takes it: check the id with get_result() before "
            "submitting again"
        )


class ScheduleError(FlowrraError, ValueError):
    """A schedule was asked for that cannot be made: a bad cron expression, an unknown
    task, a non-positive interval, a past ``run_at``."""


class ScheduleNotFoundError(ScheduleError, LookupError):
    """No schedule has this id."""

    def __init__(self, schedule_id: str) -> None:
        self.schedule_id = schedule_id
        super().__init__(f"no schedule with id {schedule_id!r}")


class ScheduleStoreError(FlowrraError):
    """The schedule store failed: the database is unreachable or refused a statement."""


# Names of flowrra 0.1.8, kept so existing imports and except clauses work.
TaskNotFoundError = TaskNotRegisteredError
TaskTimeoutError = ResultTimeoutError
ExecutorNotRunningError = NotRunningError
