"""Chains and groups: tasks that pass results on, and tasks that run side by side.

``task.s(*args, **kwargs)`` gives a :class:`Signature`, a frozen description of one call
(task, arguments, options). :func:`chain` runs signatures one after another, each step's
return value passed as the first positional argument of the next; :func:`group` runs them
in parallel. ``await chain(...).submit()`` and ``await group(...).submit()`` give a
:class:`ChainHandle` / :class:`GroupHandle` that knows every task id and waits for the
outcome.

How a chain travels: every step's id is made at submit time, and every step is recorded
PENDING then (so anyone may wait on any step's id). Only the first step is queued; the
rest of the chain rides in its message's :data:`CHAIN_HEADER` header, as compact JSON
(:class:`ChainLink`). When an attempt succeeds, the worker records SUCCESS, then settles
the message and queues the next step in one broker call (``Broker.requeue``: atomic on
Redis, and deduplicated on the step's id when resent). A worker that dies in between has
the message delivered again; seeing its record complete, it queues the next step from the
stored result instead of running the step again. When a step fails for good (or is
dead-lettered, or lost with an in-memory broker), every later step is recorded FAILED with
a ``ChainStopped`` error that names the step that failed, so no waiter hangs. When a step
is cancelled (``app.cancel``), it and every later step are recorded CANCELLED.

Nesting: a chain inside a chain is flattened. A group inside a chain (Celery's chord), and
a chain or group inside a group, are refused with ``TypeError``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar, cast

from flowrra.queues import check_queue_name
from flowrra.serialization import dumps, ensure_encodable, loads
from flowrra.task import (
    DEFAULT_QUEUE,
    TaskMessage,
    TaskResult,
    TaskStatus,
    check_headers,
    new_task_id,
)

__all__ = [
    "CHAIN_HEADER",
    "MAX_CHAIN_HEADER",
    "MAX_CHAIN_STEPS",
    "Chain",
    "ChainHandle",
    "ChainLink",
    "Group",
    "GroupHandle",
    "GroupResults",
    "Signature",
    "chain",
    "group",
]

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")

logger = logging.getLogger("flowrra.worker")


class _Binding(Protocol):
    def check(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None: ...


class _Task(Protocol[R_co]):
    """What a signature needs of a task (a :class:`~flowrra.registry.TaskHandle`)."""

    @property
    def name(self) -> str: ...

    @property
    def binding(self) -> _Binding: ...

    @property
    def queue(self) -> str: ...

    @property
    def fn(self) -> Callable[..., R_co]: ...

    @property
    def _submitter(self) -> Any: ...


class _App(Protocol):
    """What chains and groups need of the app their tasks are registered in
    (:class:`~flowrra.app.Flowrra`)."""

    async def _submit_messages(
        self, messages: Sequence[TaskMessage], waiting: Sequence[TaskMessage] = ()
    ) -> None: ...

    async def wait_for_result(self, task_id: str, timeout: float | None = None) -> TaskResult: ...

    async def get_result(self, task_id: str) -> TaskResult | None: ...

    def _call_sync(
        self, call: str, instead: str, make: Callable[[], Coroutine[Any, Any, T]]
    ) -> T: ...

    def _check_queueable(self, call: str) -> None: ...


#: The reserved header that carries the rest of a chain with each step's message.
CHAIN_HEADER = "flowrra-chain"
#: Most steps a chain may have.
MAX_CHAIN_STEPS = 1000
#: Most characters the rest of a chain may take in its first step's header (its later
#: steps' arguments, as JSON): a chain travels in a message header.
MAX_CHAIN_HEADER = 1_000_000
#: The format of the :data:`CHAIN_HEADER` JSON.
_LINK_FORMAT = 1


class Signature(Generic[R]):
    """One call of a task, described and not made: ``task.s(*args, **kwargs)`` or
    ``task.with_options(priority=..., delay=..., headers=..., queue=...).s(...)``.

    Frozen. ``delay`` is counted from when the call is queued: at submit for a group or
    a chain's first step, when the step before it finished for a chain's later steps.
    ``eta`` is a Unix time. A signature's arguments are checked against the task's
    signature where it is used (a chain's later steps get one positional argument more,
    the result before them): by :func:`chain` and :func:`group`, or by :meth:`submit`.
    """

    __slots__ = ("args", "delay", "eta", "headers", "kwargs", "priority", "queue", "task")

    task: _Task[R]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    priority: int
    delay: float | None
    eta: float | None
    headers: Mapping[str, str]
    #: The queue named for this call; ``None``: the task's own.
    queue: str | None

    def __init__(
        self,
        task: _Task[R],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        priority: int = 0,
        delay: float | None = None,
        eta: float | None = None,
        headers: Mapping[str, str] | None = None,
        queue: str | None = None,
    ) -> None:
        if priority.__class__ is not int:
            raise TypeError(f"priority must be an int, got {priority!r}")
        if headers and CHAIN_HEADER in headers:
            raise ValueError(f"the header {CHAIN_HEADER!r} is reserved for chains")
        object.__setattr__(self, "task", task)
        object.__setattr__(self, "args", tuple(args))
        object.__setattr__(self, "kwargs", dict(kwargs or {}))
        object.__setattr__(self, "priority", priority)
        object.__setattr__(self, "delay", delay)
        object.__setattr__(self, "eta", eta)
        object.__setattr__(self, "headers", check_headers(headers) if headers else {})
        object.__setattr__(self, "queue", None if queue is None else check_queue_name(queue))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a Signature is frozen: cannot set {name!r}")

    @property
    def name(self) -> str:
        """The task's registered name."""
        return self.task.name

    def check(self, prepended: int = 0) -> None:
        """Raise ``TypeError`` if the task cannot be called with these arguments (after
        ``prepended`` positional ones: a chain step's input)."""
        self.task.binding.check(self.name, (None,) * prepended + self.args, self.kwargs)

    def message(self, task_id: str, now: float, eta: float | None = None) -> TaskMessage:
        """The message of this call under ``task_id``, queued at ``now`` (Unix time), due
        at ``eta`` (else when its ``delay`` or ``eta`` says)."""
        if eta is None:
            eta = self.eta if self.delay is None else now + self.delay
        message = TaskMessage(
            task_id,
            self.name,
            self.args,
            dict(self.kwargs),
            priority=self.priority,
            eta=eta,
            submitted_at=now,
        )
        if self.headers:
            message.headers = dict(self.headers)
        message.queue = self.queue or self.task.queue
        return message

    async def submit(self) -> str:
        """Queue this call on its own; returns the task id."""
        self.check()
        message = self.message(new_task_id(), time.time())
        await _app(self)._submit_messages([message])
        return message.id

    def __repr__(self) -> str:
        call = ", ".join(
            [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        )
        return f"{self.name}.s({call})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Signature):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]


def _app(signature: Signature[Any]) -> _App:
    """The app ``signature``'s task is registered in."""
    return cast(_App, signature.task._submitter)


def _same_app(signatures: Sequence[Signature[Any]]) -> None:
    apps = {id(s.task._submitter) for s in signatures}
    if len(apps) > 1:
        raise ValueError("every task of a chain or group must be registered in the same app")


# -- chains ------------------------------------------------------------------------------


class Chain:
    """Signatures run one after another, each result passed on (see :func:`chain`)."""

    __slots__ = ("steps",)

    def __init__(self, steps: Sequence[Signature[Any]]) -> None:
        self.steps: tuple[Signature[Any], ...] = tuple(steps)

    async def submit(self) -> ChainHandle:
        """Record every step PENDING and queue the first; returns the chain's handle.
        Raises ``SerializationError`` for arguments JSON cannot hold and ``ValueError``
        when the later steps' arguments are too big to travel in a header."""
        self.steps[0].check()
        messages, first = self._messages()
        app = _app(self.steps[0])
        await app._submit_messages([first], messages[1:])
        return ChainHandle(app, [m.id for m in messages], [s.name for s in self.steps])

    def delay(self) -> ChainHandle:
        """:meth:`submit` for sync code: blocks until the first step is queued."""
        self.steps[0].check()
        app = _app(self.steps[0])
        app._check_queueable("chain.delay()")
        return app._call_sync("chain.delay()", "await chain(...).submit()", self.submit)

    def _messages(self) -> tuple[list[TaskMessage], TaskMessage]:
        """Every step's message (later ones as recorded PENDING), and the first step's
        message as queued: with the rest of the chain in its header."""
        now = time.time()
        messages = [step.message(new_task_id(), now) for step in self.steps]
        first = messages[0]
        if len(messages) > 1:
            rest = [
                _step_entry(step, m.id)
                for step, m in zip(self.steps[1:], messages[1:], strict=True)
            ]
            first.headers = {**first.headers, CHAIN_HEADER: _encode_link(1, len(messages), rest)}
        return messages, first

    def __repr__(self) -> str:
        return "chain(" + ", ".join(map(repr, self.steps)) + ")"


def chain(*steps: Signature[Any] | Chain) -> Chain:
    """Run ``steps`` one after another: each step's return value is passed as the first
    positional argument of the next. A step that fails for good stops the chain (see
    :class:`ChainHandle`). A chain given as a step is flattened into this one; a group is
    refused (``TypeError``: a chord is not supported)."""
    flat: list[Signature[Any]] = []
    for given in steps:
        step: object = given  # typed for callers; checked, as callers pass anything
        if isinstance(step, Chain):
            flat.extend(step.steps)
        elif isinstance(step, Signature):
            flat.append(step)
        elif isinstance(step, Group):
            raise TypeError(
                "a group inside a chain (a chord) is not supported: submit the group, "
                "wait for its results, then submit what uses them"
            )
        else:
            raise TypeError(f"a chain's steps are signatures (task.s(...)), got {step!r}")
    if not flat:
        raise ValueError("a chain needs at least one step")
    if len(flat) > MAX_CHAIN_STEPS:
        raise ValueError(f"a chain has at most {MAX_CHAIN_STEPS} steps, got {len(flat)}")
    _same_app(flat)
    for step in flat[1:]:
        step.check(prepended=1)  # the first step is checked at submit: a chain may be
    return Chain(flat)  # a later part of another, where it gets the result before it


def _step_entry(step: Signature[Any], task_id: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": task_id,
        "task": step.name,
        "args": list(step.args),
        "kwargs": dict(step.kwargs),
        "priority": step.priority,
        "queue": step.queue or step.task.queue,
    }
    if step.delay is not None:
        entry["delay"] = step.delay
    elif step.eta is not None:
        entry["eta"] = step.eta
    if step.headers:
        entry["headers"] = dict(step.headers)
    return entry


def _encode_link(step: int, total: int, rest: list[dict[str, Any]]) -> str:
    """The :data:`CHAIN_HEADER` of step number ``step`` (1-based) of ``total``."""
    for entry in rest:
        ensure_encodable(entry["args"], f"the arguments of chain step {entry['task']!r}")
        ensure_encodable(entry["kwargs"], f"the keyword arguments of chain step {entry['task']!r}")
    text = dumps({"v": _LINK_FORMAT, "step": step, "of": total, "rest": rest})
    if len(text) > MAX_CHAIN_HEADER:
        raise ValueError(
            f"the rest of this chain takes {len(text):,} characters as JSON, more than the "
            f"{MAX_CHAIN_HEADER:,} a chain's header may hold: pass smaller arguments (an id "
            "the task looks up, rather than the data itself), or fewer steps"
        )
    return text


class ChainLink:
    """What a chain step's message carries of the chain (its :data:`CHAIN_HEADER`): its
    place (``step`` of ``total``, from 1) and the steps after it, in order."""

    __slots__ = ("rest", "step", "total")

    def __init__(self, step: int, total: int, rest: list[dict[str, Any]]) -> None:
        self.step = step
        self.total = total
        self.rest = rest

    @classmethod
    def of(cls, message: TaskMessage) -> ChainLink | None:
        """``message``'s link, or ``None`` if it is no chain step (or has a malformed
        header: the chain cannot go on)."""
        text = message.headers.get(CHAIN_HEADER)
        if text is None:
            return None
        try:
            data = loads(text)
            rest = data["rest"]
            link = cls(int(data["step"]), int(data["of"]), rest)
            if not isinstance(rest, list) or not all(
                isinstance(e, dict) and "id" in e and "task" in e for e in rest
            ):
                raise TypeError("rest is a list of steps")
        except (ValueError, TypeError, KeyError) as exc:
            logger.error(
                "task %s[%s]: its %s header is malformed (%s); the chain stops here",
                message.name,
                message.id,
                CHAIN_HEADER,
                exc,
            )
            return None
        return link

    def next_message(self, message: TaskMessage, value: Any, now: float) -> TaskMessage:
        """The next step's message: ``value`` (what ``message`` returned) before its
        arguments, ``message``'s headers with the next step's own, and the rest of the
        chain. Raises ``SerializationError`` if ``value`` cannot travel."""
        entry, later = self.rest[0], self.rest[1:]
        args = (value, *entry.get("args", ()))
        ensure_encodable(list(args), f"the result passed on to chain step {entry['task']!r}")
        delay, eta = entry.get("delay"), entry.get("eta")
        headers = {k: v for k, v in message.headers.items() if k != CHAIN_HEADER}
        headers.update(entry.get("headers") or {})
        if later:
            headers[CHAIN_HEADER] = _encode_link(self.step + 1, self.total, later)
        following = TaskMessage(
            str(entry["id"]),
            str(entry["task"]),
            args,
            dict(entry.get("kwargs") or {}),
            priority=int(entry.get("priority", 0)),
            eta=now + float(delay) if delay is not None else None if eta is None else float(eta),
            submitted_at=message.submitted_at,
        )
        if headers:
            following.headers = headers
        following.queue = str(entry.get("queue") or DEFAULT_QUEUE)
        return following

    def stopped(self, message: TaskMessage, error: str | None, finished: float) -> list[TaskResult]:
        """The records of the steps after ``message`` when it failed for good with
        ``error``: FAILED, with a ``ChainStopped`` error naming the step that failed."""
        reason = (
            f"ChainStopped: step {self.step} ({message.name}, id {message.id}) failed: "
            f"{error or 'unknown error'}"
        )
        records = []
        for entry in self.rest:
            later = TaskMessage(
                str(entry["id"]),
                str(entry["task"]),
                tuple(entry.get("args") or ()),
                dict(entry.get("kwargs") or {}),
                priority=int(entry.get("priority", 0)),
                submitted_at=message.submitted_at,
            )
            records.append(TaskResult.failed(later, reason, finished=finished))
        return records


class ChainHandle:
    """A submitted chain: its steps' ``ids`` in order; :meth:`wait` for its outcome."""

    def __init__(self, app: _App, ids: Sequence[str], names: Sequence[str]) -> None:
        self._app = app
        #: Every step's task id, in order.
        self.ids: list[str] = list(ids)
        self._names = list(names)

    @property
    def id(self) -> str:
        """The last step's id: its result is the chain's."""
        return self.ids[-1]

    async def wait(self, timeout: float | None = None) -> TaskResult:
        """Wait until the chain is over: the last step's SUCCESS record, or the FAILED (or
        CANCELLED) record of the step that stopped it (its ``error`` says why). Raises
        ``ResultTimeoutError`` after ``timeout`` seconds, as ``wait_for_result`` does."""
        last = await self._app.wait_for_result(self.ids[-1], timeout)
        if last.status is TaskStatus.SUCCESS:
            return last
        for record in await self.results():
            if record is not None and (
                record.status is TaskStatus.FAILED or record.status is TaskStatus.CANCELLED
            ):
                return record
        return last

    def wait_sync(self, timeout: float | None = None) -> TaskResult:
        """:meth:`wait` for sync code."""
        return self._app._call_sync(
            "chain_handle.wait_sync()", "await handle.wait(...)", lambda: self.wait(timeout)
        )

    async def results(self) -> list[TaskResult | None]:
        """Every step's latest record, in order, without waiting (``None``: the backend
        no longer holds it)."""
        return [await self._app.get_result(task_id) for task_id in self.ids]

    def __repr__(self) -> str:
        return f"<ChainHandle {' | '.join(self._names)} ids={self.ids}>"


# -- groups ------------------------------------------------------------------------------


class Group:
    """Signatures run in parallel (see :func:`group`)."""

    __slots__ = ("members",)

    def __init__(self, members: Sequence[Signature[Any]]) -> None:
        self.members: tuple[Signature[Any], ...] = tuple(members)

    async def submit(self) -> GroupHandle:
        """Record and queue every task, in one round trip to the backend and one to the
        broker where they can; returns the group's handle."""
        if not self.members:
            return GroupHandle(None, [])
        now = time.time()
        messages = [member.message(new_task_id(), now) for member in self.members]
        app = _app(self.members[0])
        await app._submit_messages(messages)
        return GroupHandle(app, [m.id for m in messages])

    def delay(self) -> GroupHandle:
        """:meth:`submit` for sync code: blocks until the tasks are queued."""
        if not self.members:
            return GroupHandle(None, [])
        app = _app(self.members[0])
        app._check_queueable("group.delay()")
        return app._call_sync("group.delay()", "await group(...).submit()", self.submit)

    def __len__(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        return "group(" + ", ".join(map(repr, self.members)) + ")"


def group(*members: Signature[Any] | Iterable[Signature[Any]]) -> Group:
    """Run signatures in parallel: ``group(a.s(1), b.s(2))`` or ``group(a.s(i) for i in
    range(100))``. A failure does not stop the others. Chains and groups inside a group
    are refused (``TypeError``)."""
    flat: list[Signature[Any]] = []
    for member in members:
        if isinstance(member, Signature):
            flat.append(member)
        elif isinstance(member, Chain | Group):
            raise TypeError(f"a group's members are signatures (task.s(...)), got {member!r}")
        elif isinstance(member, Iterable) and not isinstance(member, str | bytes | Mapping):
            for item in member:
                if not isinstance(item, Signature):
                    raise TypeError(f"a group's members are signatures (task.s(...)), got {item!r}")
                flat.append(item)
        else:
            raise TypeError(f"a group's members are signatures (task.s(...)), got {member!r}")
    _same_app(flat)
    for member in flat:
        member.check()
    return Group(flat)


class GroupResults(list[TaskResult]):
    """A group's records in the group's order (a ``list``), and which of them failed."""

    @property
    def failed(self) -> list[TaskResult]:
        """The FAILED records, in the group's order."""
        return [record for record in self if record.status is TaskStatus.FAILED]

    @property
    def ok(self) -> bool:
        """True if every task succeeded."""
        return all(record.status is TaskStatus.SUCCESS for record in self)

    @property
    def values(self) -> list[Any]:
        """Every task's return value, in order (``None`` for one that failed)."""
        return [record.result for record in self]


class GroupHandle:
    """A submitted group: its tasks' ``ids`` in order; :meth:`wait` for all of them."""

    def __init__(self, app: _App | None, ids: Sequence[str]) -> None:
        self._app = app
        #: Every task's id, in the group's order.
        self.ids: list[str] = list(ids)

    async def wait(self, timeout: float | None = None) -> GroupResults:
        """Wait until every task is complete; their records in the group's order (see
        :attr:`GroupResults.failed`). Raises ``ResultTimeoutError`` if they are not all
        complete within ``timeout`` seconds."""
        if self._app is None:
            return GroupResults()
        app = self._app
        waits = [asyncio.ensure_future(app.wait_for_result(i, timeout)) for i in self.ids]
        try:
            return GroupResults(await asyncio.gather(*waits))
        except BaseException:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
            raise

    def wait_sync(self, timeout: float | None = None) -> GroupResults:
        """:meth:`wait` for sync code."""
        if self._app is None:
            return GroupResults()
        return self._app._call_sync(
            "group_handle.wait_sync()", "await handle.wait(...)", lambda: self.wait(timeout)
        )

    async def results(self) -> list[TaskResult | None]:
        """Every task's latest record, in order, without waiting (``None``: unknown)."""
        if self._app is None:
            return []
        return [await self._app.get_result(task_id) for task_id in self.ids]

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"<GroupHandle of {len(self.ids)} tasks>"
