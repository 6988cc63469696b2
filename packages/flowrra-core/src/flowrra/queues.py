"""Named queues: which queue a task goes to, and which queues a worker takes from.

A task goes to the queue named at submit (``task.with_options(queue=...)``, or
``app.submit(task, ..., queue=...)`` when the task has no ``queue`` parameter of its own),
else to its own (``@app.task(queue=...)``), else to the first of the app's
:class:`Routes` that matches its name, else to :data:`DEFAULT_QUEUE`. Priorities order
the messages of one queue.

A worker takes from a :class:`QueueSelection`: the queues, each with a weight, and an
order between them (``flowrra worker -Q emails:3,reports``):

- **weighted** (the default): the queues take turns, in the order listed; in its turn a
  queue gives up to its weight in messages, then the next queue has its turn. So a queue
  with weight 3 gets three times the share of a queue with weight 1 while both have work,
  whatever the size of each reserve, and no queue with work waits longer than the
  others' weights. A queue that is empty passes its turn on.
- **strict** (``--strict``): the first queue listed is emptied before the second gets
  anything, and so on: a busy first queue starves the others, as asked.

Brokers implement the :class:`~flowrra.protocols.NamedQueues` capability; both brokers
Flowrra ships do. :func:`take_in_turns` is the order both use, for a broker of your own.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from flowrra.task import DEFAULT_QUEUE

__all__ = [
    "DEFAULT_QUEUE",
    "MAX_QUEUE_NAME",
    "QueueSelection",
    "Routes",
    "check_queue_name",
    "take_in_turns",
]

#: The longest queue name accepted (a name becomes part of broker keys).
MAX_QUEUE_NAME = 100
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def check_queue_name(name: object, what: str = "queue") -> str:
    """``name`` if it can name a queue: text of letters, digits, ``_``, ``.`` and ``-``, at
    most :data:`MAX_QUEUE_NAME` characters (it becomes part of broker keys, and ``,``
    and ``:`` separate queues and weights on the command line). Raises ``TypeError`` or
    ``ValueError`` naming the bad value."""
    if name.__class__ is not str:
        raise TypeError(f"{what} must be a queue name (str), got {name!r}")
    assert isinstance(name, str)
    if not name or len(name) > MAX_QUEUE_NAME or _NAME.fullmatch(name) is None:
        raise ValueError(
            f"{what} {name!r} is not a queue name: 1 to {MAX_QUEUE_NAME} letters, digits, "
            "'_', '.' or '-'"
        )
    return name


class Routes:
    """Task name patterns to queues, first match wins (Celery's ``task_routes``):
    ``Flowrra(routes={"reports.*": "reports", "send_email": "emails"})``. A pattern is a
    task name or a shell-style wildcard (``*``, ``?``, ``[...]``, as :mod:`fnmatch`)."""

    __slots__ = ("_compiled", "rules")

    def __init__(self, rules: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
        checked: list[tuple[str, str]] = []
        for pattern, queue in pairs:
            if pattern.__class__ is not str or not pattern:
                raise TypeError(f"a route's pattern is a task name or wildcard, got {pattern!r}")
            checked.append((pattern, check_queue_name(queue, f"the queue of route {pattern!r}")))
        #: The ``(pattern, queue)`` pairs, in the order they are tried.
        self.rules: tuple[tuple[str, str], ...] = tuple(checked)
        self._compiled = [
            (re.compile(fnmatch.translate(pattern)), queue) for pattern, queue in checked
        ]

    def queue_for(self, task_name: str) -> str | None:
        """The queue of the first rule matching ``task_name``, or ``None``."""
        for pattern, queue in self._compiled:
            if pattern.match(task_name):
                return queue
        return None

    def queues(self) -> list[str]:
        """Every queue a rule names, in order, once each."""
        return list(dict.fromkeys(queue for _, queue in self.rules))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __repr__(self) -> str:
        return f"Routes({dict(self.rules)!r})"


@dataclass(frozen=True)
class QueueSelection:
    """The queues a worker takes from, with a weight each, and how it chooses between
    them (see the module docstring). Build it with :meth:`parse` from ``-Q``'s text."""

    names: tuple[str, ...] = (DEFAULT_QUEUE,)
    weights: tuple[int, ...] = (1,)
    strict: bool = False
    #: Also any queue not named, weight 1, once it has messages: what a worker started
    #: without ``-Q`` asks of the in-memory broker, where no other process could take
    #: them. (The Redis broker takes from the named queues only.)
    others: bool = False

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("a worker takes from at least one queue")
        for name in self.names:
            check_queue_name(name)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"a queue is named twice in {', '.join(self.names)}")
        if len(self.weights) != len(self.names):
            raise ValueError("give one weight per queue")
        for weight in self.weights:
            if weight.__class__ is not int or not 1 <= weight <= 1000:
                raise ValueError(f"a queue's weight is an int from 1 to 1000, got {weight!r}")

    @classmethod
    def parse(cls, text: str, *, strict: bool = False) -> QueueSelection:
        """``"emails:3,reports"``: queue names separated by commas, each with an optional
        ``:weight`` (default 1)."""
        names: list[str] = []
        weights: list[int] = []
        for item in text.split(","):
            item = item.strip()
            name, colon, weight = item.partition(":")
            names.append(check_queue_name(name.strip()))
            if colon:
                try:
                    weights.append(int(weight))
                except ValueError:
                    raise ValueError(
                        f"queue {name!r}: the weight after ':' is a whole number, got {weight!r}"
                    ) from None
            else:
                weights.append(1)
        return cls(tuple(names), tuple(weights), strict)

    @classmethod
    def of(
        cls, names: Iterable[str], *, strict: bool = False, others: bool = False
    ) -> QueueSelection:
        """These queues, weight 1 each, once each in the order given."""
        ordered = tuple(dict.fromkeys(names))
        return cls(ordered, (1,) * len(ordered), strict, others)

    def adding(self, name: str) -> QueueSelection:
        """This selection with one more queue, weight 1, last."""
        return QueueSelection((*self.names, name), (*self.weights, 1), self.strict, self.others)

    def __str__(self) -> str:
        text = ",".join(
            name if weight == 1 else f"{name}:{weight}"
            for name, weight in zip(self.names, self.weights, strict=True)
        )
        return f"{text} (strict)" if self.strict else text


#: Where weighted turns stand: the queue whose turn it is, and how many of its weight it
#: has had in this turn.
Cursor = tuple[int, int]


def take_in_turns(
    selection: QueueSelection, cursor: Cursor, want: int, pop: Callable[[int, int], int]
) -> Cursor:
    """Take up to ``want`` messages from the queues of ``selection`` in their turns;
    ``pop(index, n)`` takes up to ``n`` from queue ``index`` and says how many it took.
    Returns where the turns stand after (a broker keeps it for its next reserve).

    Weighted: the queue of the turn gives up to its weight, less what it gave in this turn
    already; a queue that runs empty or has given its weight passes the turn on; it stops
    when it has ``want``, or when every queue in a row gave nothing. Strict: each queue in
    order gives all it can (the cursor stays at the start)."""
    taken = 0
    count = len(selection.names)
    if selection.strict:
        for index in range(count):
            if taken >= want:
                break
            taken += pop(index, want - taken)
        return (0, 0)
    index, used = cursor
    if index >= count:
        index, used = 0, 0
    weights = selection.weights
    idle = 0
    while taken < want and idle < count:
        share = min(weights[index] - used, want - taken)
        got = pop(index, share)
        taken += got
        used += got
        idle = 0 if got else idle + 1
        if got < share or used >= weights[index]:
            index, used = (index + 1) % count, 0
    return (index, used)


def selection_for(names: Sequence[str] | None, known: Iterable[str]) -> QueueSelection:
    """The selection of ``names``, or of every ``known`` queue (the default one first) and
    any other that appears (``others``)."""
    if names:
        return QueueSelection.of(names)
    return QueueSelection.of([DEFAULT_QUEUE, *sorted(set(known) - {DEFAULT_QUEUE})], others=True)
