"""One round trip per submit when the broker and the backend share a Redis keyspace.

A submit stores the task's PENDING record (the backend's STORE script: the record, its
indexes, the counts, the event) and queues its message (the broker's ENQUEUE script). On
two servers those are two scripts on two connections, sent together. When both endpoints
reach the same server and database (resolved addresses, not URL text: see
:class:`~flowrra_redis.topology.Server`; a different prefix on one server counts), or the
same slot of one cluster, :data:`SUBMIT` runs STORE and ENQUEUE as Lua functions of one
script, on the broker's connection: one EVALSHA, one reply, atomic.

Faults: the call is one script, so the records and the messages it carries are written
together or not at all. Sent again after a lost reply (the pipeline's retries), a call of
one message is ENQUEUE's (its ``sent`` key skips the message) and STORE's (the ``SET NX``
of a PENDING record writes, indexes and counts nothing twice; it publishes its event
again); a call of more finds its guard (see SUBMIT) and does nothing. A call that
fails gives the caller the broker's BrokerError, never ``MaybeQueuedError``: there is no
state where a record failed while its message went out. If the reply was lost past every
retry the task may have been queued with its record, as with any enqueue whose reply is
lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Coroutine, Iterator, Sequence
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any

from flowrra.task import DEFAULT_QUEUE, PendingRecords, TaskMessage, TaskResult, TaskStatus
from flowrra_redis.backend import _record_call
from flowrra_redis.codec import BatchFrame, arguments_json, number_text
from flowrra_redis.connection import retrieved
from flowrra_redis.pipeline import AutoPipeline, Script
from flowrra_redis.records import BURST_LIMIT, INLINE_LIMIT, STORE_FUNCTION, _mode
from flowrra_redis.scripts import _BULK, _ENQUEUE_FUNCTION

if TYPE_CHECKING:
    from flowrra_redis.backend import RedisBackend
    from flowrra_redis.broker import RedisBroker

__all__ = ["SUBMIT", "SUBMIT_CHUNK", "SUBMIT_FRAMED", "RecordedEnqueue"]

#: Messages (with their records) per SUBMIT call: a large ``submit_many`` is several
#: calls, each sent as soon as it is built, so Redis runs one while the next is encoded.
SUBMIT_CHUNK = BURST_LIMIT

# ENQUEUE's prefix of each message: its place in the call (see scripts.ENQUEUE).
_PLACES = [f"{place:08x}|" for place in range(SUBMIT_CHUNK)]
_NO_ARGUMENTS = ("[]", "{}")
_PENDING_MODE = _mode(TaskStatus.PENDING, "")
_pending = TaskResult.pending
_json_string = encode_basestring_ascii

# KEYS: ENQUEUE's six (queue, sequence, wake, delayed, leased, sent), then STORE's
# ARGV: how many of the arguments are ENQUEUE's, ENQUEUE's ARGV, then STORE's ARGV
# STORE runs first, then ENQUEUE, each unchanged (see their comments); returns ENQUEUE's
# reply (messages waiting). An ENQUEUE with no message (a call carrying only the records
# of a chain's later steps) queues nothing.
#
# The resend guard: a call of one message is ENQUEUE's (its dedupe key in ``sent``). A
# call of more is guarded as a whole, by its first message's key, written to ``sent``
# once everything else is: a call sent again (the pipeline resends a command unchanged)
# finds it and does nothing, and one that failed part way (a script error) has not
# written it, so sending it again queues what it had not (and again what it had: at
# least once; records it had written are kept, and not indexed or counted again). Its
# other messages' keys are not written, one sorted-set insert per message less (a
# quarter of Redis's CPU per task in a ``submit_many``: bench/README.md). A message's key
# guards only a resend of its own call; none is ever sent in another.
SUBMIT = Script(
    _BULK
    + _ENQUEUE_FUNCTION
    + STORE_FUNCTION
    + """
local split = tonumber(ARGV[1])
local enqueue_argv, store_argv, store_keys = {}, {}, {}
for i = 2, split + 1 do enqueue_argv[i - 1] = ARGV[i] end
local call = #enqueue_argv > 7 and enqueue_argv[4]  -- two messages or more: one guard
if call then
  if redis.call('ZSCORE', KEYS[6], call) then  -- this call, sent again: it ran
    return redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[4])
  end
  for i = 4, #enqueue_argv, 4 do enqueue_argv[i] = '' end
end
for i = split + 2, #ARGV do store_argv[i - split - 1] = ARGV[i] end
for i = 7, #KEYS do store_keys[i - 6] = KEYS[i] end
store(store_keys, store_argv)
local waiting = enqueue({KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}, enqueue_argv)
if call then redis.call('ZADD', KEYS[6], enqueue_argv[1], call) end
return waiting
"""
)


# SUBMIT for a framed batch (``submit_many``: every message of the call shares its task,
# priority, eta, time and queue; see ``RecordedEnqueue._send_framed``), its arguments
# said once per call instead of once per message: per message its id, its ENQUEUE body
# ('<place>|<JSON>') and its PENDING record's JSON, and its record's key (declared, as
# every key a script touches must be on a cluster: a slot being migrated answers
# TRYAGAIN, which the pipeline retries), four values where SUBMIT takes eleven. It
# rebuilds SUBMIT's tables from them and runs the same functions, so the stored and queued
# bytes are SUBMIT's.
# KEYS: ENQUEUE's six, STORE's four, the task's index, then each message's record key
# ARGV: ENQUEUE's three (now, '', window), the dedupe key's suffix, priority key, eta or
# '', STORE's five, index score, then per message (id, body, record)
SUBMIT_FRAMED = Script(
    _BULK
    + _ENQUEUE_FUNCTION
    + STORE_FUNCTION
    + """
local enqueue_argv = {ARGV[1], ARGV[2], ARGV[3]}
local store_keys = {KEYS[7], KEYS[8], KEYS[9], KEYS[10]}
local store_argv = {ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]}
local suffix, order, due = ARGV[4], ARGV[5], ARGV[6]
local score, task = ARGV[12], KEYS[11]
local call = #ARGV > 15 and ARGV[13] .. suffix  -- two messages or more: one guard (SUBMIT's)
if call and redis.call('ZSCORE', KEYS[6], call) then  -- this call, sent again: it ran
  return redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[4])
end
local e, k, a, r = 3, 4, 5, 12
for i = 13, #ARGV, 3 do
  local id = ARGV[i]
  enqueue_argv[e + 1] = call and '' or id .. suffix
  enqueue_argv[e + 2] = order
  enqueue_argv[e + 3] = due
  enqueue_argv[e + 4] = ARGV[i + 1]
  store_keys[k + 1] = KEYS[r]
  store_keys[k + 2] = task
  store_argv[a + 1] = id
  store_argv[a + 2] = ARGV[i + 2]
  store_argv[a + 3] = 'p'
  store_argv[a + 4] = score
  store_argv[a + 5] = ''
  e, k, a, r = e + 4, k + 2, a + 5, r + 1
end
store(store_keys, store_argv)
local waiting = enqueue({KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}, enqueue_argv)
if call then redis.call('ZADD', KEYS[6], ARGV[1], call) end
return waiting
"""
)


class RecordedEnqueue:
    """A broker's enqueue that stores a backend's PENDING records in the same script
    (what :meth:`RedisBroker.enqueue_with_records` gives for a backend on its keyspace)."""

    __slots__ = ("_backend", "_broker")

    def __init__(self, broker: RedisBroker, backend: RedisBackend) -> None:
        self._broker = broker
        self._backend = backend

    def __repr__(self) -> str:
        return f"RecordedEnqueue({self._broker!r}, {self._backend!r})"

    def __call__(
        self,
        messages: Sequence[TaskMessage],
        records: Sequence[TaskResult],
        places: Sequence[int] | None = None,
    ) -> Awaitable[None]:
        """Send ``messages`` and ``records`` (the messages' PENDING records in order, then
        any of tasks recorded but not queued) now, in calls of up to
        :data:`SUBMIT_CHUNK` messages; an awaitable of the replies (BrokerError if a call
        failed). Raises SerializationError, with nothing sent, if a message cannot be
        encoded. ``places``: each message's place in the caller's batch, when not its
        place in ``messages`` (a sharded broker's share of one: :mod:`flowrra_redis.shards`)."""
        if len(messages) == 1 and len(records) == 1:  # submit: the hot path
            broker = self._broker
            call = broker._enqueue_call(messages, places)
            store_keys, store_args = self._backend.store_call(records)
            return broker._enqueued(self._send(messages[0].queue, call, store_keys, store_args))
        if (
            places is None
            and records.__class__ is PendingRecords
            and records.messages is messages
            and not records.waiting
        ):
            framed = self._send_framed(messages)
            if framed is not None:
                return framed
        return self.send_parts(self.parts(messages, records, places))

    def parts(
        self,
        messages: Sequence[TaskMessage],
        records: Sequence[TaskResult],
        places: Sequence[int] | None = None,
    ) -> list[tuple[str, list[Any], Sequence[TaskResult]]]:
        """The calls :meth:`__call__` sends, as (queue, ENQUEUE's arguments, records),
        with every message encoded (SerializationError before anything is sent)."""
        broker = self._broker
        parts: list[tuple[str, list[Any], Sequence[TaskResult]]] = []
        by_queue: dict[str, list[int]] = {}
        for place, message in enumerate(messages):
            by_queue.setdefault(message.queue, []).append(place)
        chunk = SUBMIT_CHUNK
        for queue, indexes in by_queue.items():
            for start in range(0, len(indexes), chunk):
                some = indexes[start : start + chunk]
                parts.append(
                    (
                        queue,
                        broker._enqueue_call(
                            [messages[i] for i in some],
                            None if places is None else [places[i] for i in some],
                        ),
                        [records[i] for i in some],
                    )
                )
        if len(records) > len(messages):  # a chain's later steps: with the first call
            queue, call, first = parts[0] if parts else (DEFAULT_QUEUE, [], ())
            waiting = records[len(messages) :]
            if not parts:
                call = broker._enqueue_call(())
                parts.append((queue, call, waiting))
            else:
                parts[0] = (queue, call, [*first, *waiting])
        return parts

    def send_parts(
        self, parts: Sequence[tuple[str, list[Any], Sequence[TaskResult]]]
    ) -> Awaitable[None]:
        """Send what :meth:`parts` built (:meth:`encoded`, then :meth:`send_encoded`)."""
        return self.send_encoded(self.encoded(parts))

    def encoded(
        self, parts: Sequence[tuple[str, list[Any], Sequence[TaskResult]]]
    ) -> list[tuple[str, list[Any], list[str], list[Any]]]:
        """``parts`` with their records encoded (SerializationError, nothing sent), as
        (queue, ENQUEUE's arguments, STORE's keys, STORE's arguments)."""
        store_call = self._backend.store_call
        return [(queue, call, *store_call(part)) for queue, call, part in parts]

    def send_encoded(
        self, encoded: Sequence[tuple[str, list[Any], list[str], list[Any]]]
    ) -> Awaitable[None]:
        """Send what :meth:`encoded` made, each call flushed at once (Redis runs one while
        the next is sent); an awaitable of the replies."""
        broker = self._broker
        replies = []
        for queue, call, store_keys, store_args in encoded:
            replies.append(self._send(queue, call, store_keys, store_args))
            broker.pipe.flush_now()
        sizes = [(len(call) - 3) // 4 for _, call, _, _ in encoded]
        return broker._all_enqueued(replies, sizes)

    def _send_framed(self, messages: Sequence[TaskMessage]) -> Awaitable[None] | None:
        """``self(messages, PendingRecords(messages))`` for messages that share all but
        their ids and arguments (a ``submit_many``: see :class:`BatchFrame`), or None,
        with nothing sent, for those that do not. Each task's arguments are encoded once,
        for its message and its record (all of them before the first call is sent:
        SerializationError with nothing sent), and no record is built; each call is sent
        as soon as it is built, so Redis runs one while the next is made."""
        from flowrra_redis.broker import priority_key  # (broker imports this module)

        frame = BatchFrame(messages[0])
        name, priority, attempt = frame.name, frame.priority, frame.attempt
        eta, submitted, headers, queue = frame.eta, frame.submitted_at, frame.headers, frame.queue
        arguments: list[tuple[str, str]] = []
        add = arguments.append
        for message in messages:
            if (
                message.name is not name
                or message.priority is not priority
                or message.attempt is not attempt
                or message.eta is not eta
                or message.submitted_at is not submitted
                or message.headers is not headers
                or message.queue is not queue
            ):
                return None
            add(
                _NO_ARGUMENTS
                if message.args == () and message.kwargs == {}
                else arguments_json(message)
            )
        broker = self._broker
        backend = self._backend
        writer, _ = backend.pending_writer()
        pipe = broker.pipe
        clock = broker.clock
        m0, m1, m2, m3 = frame.message
        r0, r1, r2, r3 = frame.record
        dedupe = f":{attempt}"
        order = priority_key(priority)
        due = "" if eta is None else repr(eta)
        score = number_text(submitted or time.time())
        result_key = writer.result_key
        task_key = writer.task_key(name)
        window = broker._dedupe_window()
        q = broker.queue_keys(queue)
        k = broker.keys
        if queue != DEFAULT_QUEUE:
            broker._list_queue(queue)
        enqueue_keys = (q.queue, k.sequence, q.wake, q.delayed, q.leased, k.sent)
        places = _PLACES
        replies: list[asyncio.Future[Any]] = []
        sizes: list[int] = []
        chunk = SUBMIT_CHUNK

        def calls() -> Iterator[None]:  # builds and sends one call per step
            for start in range(0, len(messages), chunk):
                send(messages[start : start + chunk], arguments[start : start + chunk])
                yield None

        def send(part: Sequence[TaskMessage], arguments: list[tuple[str, str]]) -> None:
            store_keys, store_args = writer.store_head()
            # Asked per call: the rest of a large batch goes on later turns of the loop,
            # when the backend may have stopped listening (it forgets what it expected).
            _, expect = backend.pending_writer()
            # SUBMIT_FRAMED's arguments: once per call, then three per message
            framed: list[Any] = [clock.time(), "", window, dedupe, order, due, *store_args]
            framed.append(score)
            record_keys = [*enqueue_keys, *store_keys, task_key]
            large = False
            for place, message, (args, kwargs) in zip(places, part, arguments, strict=False):
                task_id = message.id
                id_json = _json_string(task_id)
                record = f"{r0}{id_json}{r1}{args}{r2}{kwargs}{r3}"
                framed += (task_id, f"{place}{m0}{id_json}{m1}{args}{m2}{kwargs}{m3}", record)
                record_keys.append(result_key + task_id)
                if len(record) > INLINE_LIMIT:
                    large = True
                if expect is not None:
                    expect(task_id)
            if large:  # SUBMIT itself: a large record's event is a small encoding of its own
                reply = pipe.request_script(SUBMIT, *_unframed(framed, part, store_keys))
            else:
                reply = pipe.request_script(SUBMIT_FRAMED, record_keys, framed)
            reply.add_done_callback(retrieved)  # a caller may give up on it
            pipe.flush_now()  # Redis runs this one while the next is built
            replies.append(reply)
            sizes.append(len(part))

        def _unframed(
            framed: list[Any], part: Sequence[TaskMessage], store_keys: list[str]
        ) -> tuple[tuple[str, ...], tuple[Any, ...]]:
            """SUBMIT's keys and arguments for the same call."""
            call: list[Any] = [*framed[:3]]
            store_args: list[Any] = [*framed[6:11]]
            keys = [*store_keys]
            for n, message in enumerate(part):
                task_id, body, record = framed[12 + 3 * n : 15 + 3 * n]
                call += (task_id + dedupe, order, due, body)
                keys += (result_key + task_id, task_key)
                event = "" if len(record) <= INLINE_LIMIT else _record_call(_pending(message))[4]
                store_args += (task_id, record, _PENDING_MODE, score, event)
            return (*enqueue_keys, *keys), (len(call), *call, *store_args)

        sending = calls()
        for _ in sending:
            if pipe.backlog():  # the socket took less than was written: Redis is busy
                rest = asyncio.ensure_future(_send_rest(sending, pipe))
                rest.add_done_callback(retrieved)  # a caller may give up on it
                return _replies_after(rest, broker._all_enqueued(replies, sizes))
        return broker._all_enqueued(replies, sizes)

    def _send(
        self, queue: str, call: list[Any], store_keys: list[str], store_args: list[Any]
    ) -> asyncio.Future[Any]:
        broker = self._broker
        q = broker.queue_keys(queue)
        k = broker.keys
        if queue != DEFAULT_QUEUE:
            broker._list_queue(queue)
        reply = broker.pipe.request_script(
            SUBMIT,
            (q.queue, k.sequence, q.wake, q.delayed, q.leased, k.sent, *store_keys),
            (len(call), *call, *store_args),
        )
        reply.add_done_callback(retrieved)  # a caller may give up on it
        return reply


async def _send_rest(sending: Iterator[None], pipe: AutoPipeline) -> None:
    """The calls of a ``submit_many`` from the first its connection could not take at
    once: a turn of the loop between calls, so the socket takes each while the next is
    built (not all at the end), and no more than ``WRITE_AHEAD`` bytes ahead of Redis
    (see ``AutoPipeline.written``)."""
    for _ in sending:
        await pipe.written()


async def _replies_after(rest: asyncio.Future[None], replies: Awaitable[None]) -> None:
    """``replies`` once ``rest`` has sent the last calls; a caller's cancellation does not
    stop the sending (every call is sent, as when all leave at once)."""
    try:
        await asyncio.shield(rest)
    except BaseException:
        if isinstance(replies, Coroutine):
            replies.close()
        raise
    await replies
