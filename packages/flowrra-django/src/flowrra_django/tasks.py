"""A backend for Django's own Tasks framework (``django.tasks``, Django 6.0+) that runs the
tasks on the project's Flowrra app (:func:`flowrra_django.get_app`)::

    TASKS = {"default": {"BACKEND": "flowrra_django.tasks.FlowrraBackend"}}

Each ``@task`` function is registered with the app under its module path
(``myapp.tasks.send_report``) when Django builds the task, so a worker that imports the
module (``tasks.py`` is autodiscovered) runs it: a plain ``def`` in a worker thread, an
``async def`` on the worker's loop, with database connections handled as for any task.

=====================  ================================================================
``enqueue``/``aenqueue``  supported (``aenqueue`` is native async)
async tasks            supported (``supports_async_task``)
``priority``           supported: -100..100, higher runs first (Flowrra's order reversed)
``run_after``          supported (``supports_defer``); naive with ``USE_TZ = False``:
                       the current time zone
``get_result``         supported from any process on a shared result backend (Redis);
                       ``refresh()``/``arefresh()``, ``status``, ``return_value``,
                       ``errors``, ``attempts``, the timestamps
``queue_name``         supported: the Flowrra queue of that name (``flowrra worker -Q``);
                       names are letters, digits, ``_``, ``.``, ``-``; ``QUEUES``
                       limits them as Django documents
``takes_context``      supported: the function gets Django's ``TaskContext`` first, its
                       ``task_result`` the running attempt (``id``, ``attempts``,
                       ``args``…); ``flowrra.current_task()`` works in any task
enqueue on commit      ``transaction.on_commit(partial(task.enqueue, ...))``, as Django
                       documents (Django 6 has no ``enqueue_on_commit`` option)
retries                none: a task that raises is ``FAILED`` (Django's tasks have no
                       retry policy)
cancelled tasks        ``app.cancel(id)`` works; Django has no cancelled status, so the
                       result is ``FAILED`` with the error ``TaskCancelled: <reason>``
signals                ``task_enqueued`` (where the task is enqueued); not
                       ``task_started``/``task_finished``
=====================  ================================================================
"""

from __future__ import annotations

import builtins
import functools
import inspect
from datetime import UTC, datetime
from typing import Any

try:
    from django.tasks import (
        Task,
        TaskContext,
        TaskResult,
        TaskResultStatus,
    )
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued
except ImportError as exc:  # Django 5.2
    raise ImportError(
        "flowrra_django.tasks.FlowrraBackend is a backend for Django's Tasks framework, "
        "django.tasks, which Django 6.0 added: upgrade Django, or submit Flowrra tasks "
        "directly (task.delay(), delay_on_commit())"
    ) from exc
from django.core import checks
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

import flowrra.exceptions
from flowrra import Flowrra, TaskCall, TaskStatus, current_task
from flowrra import TaskResult as FlowrraResult
from flowrra.queues import check_queue_name
from flowrra_django.conf import get_app

__all__ = ["FlowrraBackend"]

_STATUS = {
    TaskStatus.PENDING: TaskResultStatus.READY,
    TaskStatus.RETRYING: TaskResultStatus.READY,  # waiting to run again
    TaskStatus.RUNNING: TaskResultStatus.RUNNING,
    TaskStatus.SUCCESS: TaskResultStatus.SUCCESSFUL,
    TaskStatus.FAILED: TaskResultStatus.FAILED,
    # Django has no cancelled status: a cancelled task ended without a value, and its
    # error (``TaskCancelled: <reason>``) says why.
    TaskStatus.CANCELLED: TaskResultStatus.FAILED,
}


class FlowrraBackend(BaseTaskBackend):  # type: ignore[misc]
    """Django Tasks on Flowrra; see the module docs for what is supported."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    @property
    def app(self) -> Flowrra:
        return get_app()

    def validate_task(self, task: Task) -> None:
        """Django's checks (``QUEUES`` among them), and that ``queue_name`` can name a
        Flowrra queue; then register the function with the app (so a worker importing it
        can run it)."""
        super().validate_task(task)
        try:
            check_queue_name(task.queue_name, "queue_name")
        except (TypeError, ValueError) as exc:
            raise InvalidTask(f"{task.module_path}: {exc}") from None
        self._register(task)

    def _register(self, task: Task) -> None:
        app = self.app
        name = task.module_path
        handle = app.registry.get(name)
        if handle is None or getattr(handle.fn, "__django_task__", handle.fn) is not task.func:
            # Django's tasks have no retry policy: one attempt.
            fn = self._with_context(task) if task.takes_context else task.func
            app.task(name=name, max_retries=0)(fn)

    def _with_context(self, task: Task) -> Any:
        """``task.func`` called with Django's ``TaskContext`` first, made from Flowrra's
        context of the running attempt."""
        func, alias = task.func, self.alias

        def context() -> TaskContext:
            return TaskContext(task_result=_running_result(task, alias))

        async def run_async(*args: Any, **kwargs: Any) -> Any:
            return await func(context(), *args, **kwargs)

        def run_sync(*args: Any, **kwargs: Any) -> Any:
            return func(context(), *args, **kwargs)

        run: Any = run_async if inspect.iscoroutinefunction(func) else run_sync
        functools.update_wrapper(run, func)
        # What a caller passes: the function's parameters without the context (submit
        # checks the arguments against it).
        signature = inspect.signature(func)
        run.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
        run.__django_task__ = func  # what _register compares
        return run

    def _call(self, task: Task) -> TaskCall[Any]:
        handle = self.app.registry.get_or_raise(task.module_path)
        run_after = task.run_after
        if run_after is not None and timezone.is_naive(run_after):
            run_after = timezone.make_aware(run_after)
        # Django: higher priority runs first; Flowrra: lower runs first.
        return handle.with_options(priority=-task.priority, eta=run_after, queue=task.queue_name)

    def _enqueued(self, task: Task, task_id: str, args: Any, kwargs: Any) -> TaskResult:
        result = TaskResult(
            task=task,
            id=task_id,
            status=TaskResultStatus.READY,
            enqueued_at=timezone.now(),
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Submit the task (``task.delay()``: blocks this thread until it is queued)."""
        self.validate_task(task)
        task_id = self._call(task).delay(*args, **kwargs)
        return self._enqueued(task, task_id, args, kwargs)

    async def aenqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Submit the task from async code, on the running loop."""
        self.validate_task(task)
        task_id = await self._call(task).submit(*args, **kwargs)
        return self._enqueued(task, task_id, args, kwargs)

    def get_result(self, result_id: str) -> TaskResult:
        return self._result(result_id, self.app.get_result_sync(result_id))

    async def aget_result(self, result_id: str) -> TaskResult:
        return self._result(result_id, await self.app.get_result(result_id))

    def _result(self, result_id: str, record: FlowrraResult | None) -> TaskResult:
        """Django's view of Flowrra's record of ``result_id``."""
        if record is None:
            raise TaskResultDoesNotExist(result_id)
        task = _django_task(record.task_name)
        if task is None:
            raise TaskResultDoesNotExist(
                f"{result_id} is the id of Flowrra task {record.task_name!r}, which was not "
                "enqueued through Django's Tasks"
            )
        if record.priority != -task.priority:
            task = task.using(priority=-record.priority)
        attempts = 0 if record.started_at is None else record.retries + 1
        result = TaskResult(
            task=task,
            id=record.task_id,
            status=_STATUS[record.status],
            enqueued_at=record.submitted_at,
            started_at=record.started_at,
            last_attempted_at=record.started_at,
            finished_at=record.finished_at,
            args=list(record.args),
            kwargs=dict(record.kwargs),
            backend=self.alias,
            errors=_errors(record),
            # Flowrra does not record which worker ran an attempt: one entry per attempt.
            worker_ids=[""] * attempts,
        )
        if record.status is TaskStatus.SUCCESS:
            object.__setattr__(result, "_return_value", normalize_json(record.result))
        return result

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors: list[checks.CheckMessage] = []
        for name in sorted(self.queues):
            try:
                check_queue_name(name)
            except (TypeError, ValueError) as exc:
                errors.append(
                    checks.Error(
                        f"TASKS[{self.alias!r}]['QUEUES']: {exc}",
                        hint="rename the queue",
                        id="flowrra_django.E010",
                    )
                )
        return errors


def _running_result(task: Task, alias: str) -> TaskResult:
    """Django's TaskResult of the attempt running here (``flowrra.current_task()``)."""
    attempt = current_task()
    message = attempt.message
    started = datetime.fromtimestamp(attempt.started, UTC)
    return TaskResult(
        task=task,
        id=attempt.id,
        status=TaskResultStatus.RUNNING,
        enqueued_at=datetime.fromtimestamp(message.submitted_at, UTC)
        if message.submitted_at
        else None,
        started_at=started,
        last_attempted_at=started,
        finished_at=None,
        args=list(message.args),
        kwargs=dict(message.kwargs),
        backend=alias,
        errors=[],
        worker_ids=[""] * attempt.attempt,  # Django counts attempts as worker ids
    )


def _django_task(name: str | None) -> Task | None:
    """The Django task at the module path ``name``, or ``None`` if there is none."""
    if not name or "." not in name:
        return None
    try:
        task = import_string(name)
    except ImportError:
        return None
    return task if isinstance(task, Task) else None


def _errors(record: FlowrraResult) -> list[TaskError]:
    if record.error is None:
        return []
    return [
        TaskError(
            exception_class_path=_exception_path(record.error, record.traceback),
            traceback=record.traceback or record.error,
        )
    ]


def _exception_path(error: str, traceback: str | None) -> str:
    """The dotted path of the exception class Flowrra recorded as ``"Name: message"``: the
    traceback's last line names it in full (``myapp.errors.Late: ...``; builtins by name)."""
    if traceback:
        last = traceback.rstrip().rsplit("\n", 1)[-1]
        name = last.split(":", 1)[0].strip()
    else:
        name = error.split(":", 1)[0].strip()
    if "." in name:
        return name
    if hasattr(builtins, name):
        return f"builtins.{name}"
    if hasattr(flowrra.exceptions, name):
        return f"flowrra.exceptions.{name}"
    return name
