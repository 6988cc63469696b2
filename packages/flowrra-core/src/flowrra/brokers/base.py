"""A base class for brokers: the bookkeeping done, a few primitives left to each broker.

Subclass :class:`BaseBroker` and write what only your broker can: ``enqueue``,
``reserve``, ``ack``, ``requeue``, ``dead_letter`` and ``pending_count``. The rest has a
default built on those (``enqueue_many`` checks every message, then enqueues each;
``release`` requeues each message as itself), or does nothing where nothing is owed
(``connect``, ``close``, ``extend`` for a broker without leases). ``purge`` raises
``BrokerError`` until overridden. Override a default where your broker can do better in
one round trip, or must (a durable broker makes ``requeue`` atomic and renews leases in
``extend``).

A broker does not have to subclass it: any object satisfying
:class:`flowrra.protocols.Broker` will do. ``flowrra.testing.BrokerContract`` checks
either.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence

from flowrra.exceptions import BrokerError
from flowrra.serialization import ensure_encodable
from flowrra.task import TaskMessage

__all__ = ["BaseBroker"]


class BaseBroker(ABC):
    """Carries task messages to workers; see :class:`flowrra.protocols.Broker` for the
    obligations. Not durable and without leases unless a subclass says otherwise."""

    #: True when queued messages outlive this process.
    durable: bool = False
    #: The lease length in seconds, or ``None`` if reserved messages have no lease.
    lease_seconds: float | None = None

    async def connect(self) -> None:
        """Open connections. The default has none to open."""

    async def close(self) -> None:
        """Release connections. The default has none to release."""

    @abstractmethod
    def enqueue(self, message: TaskMessage) -> Awaitable[None]:
        """Store one message (see ``Broker.enqueue``); an ``async def`` will do. A broker
        that encodes nothing checks the arguments with :meth:`check_encodable` so that it
        fails as a durable one would."""

    def enqueue_many(self, messages: Sequence[TaskMessage]) -> Awaitable[None]:
        """Check now that every message can be encoded (none is stored if one cannot),
        then, when awaited, ``enqueue`` each. Override to store them in one round trip."""
        for message in messages:
            self.check_encodable(message)
        return self._enqueue_each(messages)

    async def _enqueue_each(self, messages: Sequence[TaskMessage]) -> None:
        for message in messages:
            await self.enqueue(message)

    @abstractmethod
    async def reserve(self, max_messages: int, timeout: float) -> list[TaskMessage]:
        """Take up to ``max_messages`` due messages, lowest priority first, waiting up to
        ``timeout`` seconds for the first; ``[]`` on timeout."""

    @abstractmethod
    def ack(self, message: TaskMessage) -> Awaitable[None]:
        """Settle a reserved message: it will not be delivered again (an ``async def``, or
        a method returning :data:`flowrra.awaitables.DONE` when there is nothing to send)."""

    @abstractmethod
    async def requeue(self, message: TaskMessage, retry: TaskMessage) -> None:
        """Settle ``message`` and enqueue ``retry`` (due at ``retry.eta``; its next attempt,
        or its chain's next step), atomically and regardless of any queue-size bound."""

    async def release(self, messages: Sequence[TaskMessage]) -> None:
        """Hand reserved messages back for immediate redelivery: each is requeued as
        itself."""
        for message in messages:
            await self.requeue(message, message)

    @abstractmethod
    async def dead_letter(self, message: TaskMessage, reason: str) -> None:
        """Settle a message that can never run, keeping it and ``reason`` for inspection."""

    async def extend(self, messages: Sequence[TaskMessage]) -> None:
        """Renew leases. The default has none to renew (``lease_seconds`` is ``None``)."""

    async def purge(self) -> list[TaskMessage]:
        """Remove and return every queued message. The default cannot: override it."""
        raise BrokerError(f"{type(self).__name__} cannot purge its queue")

    @abstractmethod
    def pending_count(self) -> int:
        """Messages queued and not reserved, as known to this process."""

    @staticmethod
    def check_encodable(message: TaskMessage) -> None:
        """Raise ``SerializationError`` if the message's arguments cannot travel as JSON."""
        if message.args:
            ensure_encodable(message.args, f"the arguments of task {message.name!r}")
        if message.kwargs:
            ensure_encodable(message.kwargs, f"the keyword arguments of task {message.name!r}")
