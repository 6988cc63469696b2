"""Writing result records: everything stored in one event-loop turn is one script call.

A worker records RUNNING and then SUCCESS for every task, and with N tasks in flight their
records come in bursts. :class:`RecordWriter` collects the records stored during one loop
turn and sends them as ONE ``EVALSHA`` of :data:`STORE`, so the per-call cost of a Lua
script (and of a command on the wire) is paid once per burst, not once per record.

Each record is one JSON encoding (:func:`flowrra_redis.codec.encode_result`) that serves
three purposes: the stored value, the event published on the ``events`` channel (monitors
decode it with :func:`~flowrra_redis.backend.decode_event`), and, for a complete record, the
``<id>|<record>`` notification on the ``done`` channel that wakes ``wait_for``. Only a
record over :data:`INLINE_LIMIT` has a second, small encoding for the events channel (it
is announced on ``done`` by id alone).

Within one burst, a record followed by a later one for the same task (a short task's
RUNNING, then its SUCCESS) is not written: only its event is published, so monitors still
see every status change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from flowrra.task import TaskStatus
from flowrra_redis.connection import Keys, retrieved
from flowrra_redis.pipeline import AutoPipeline, Script

__all__ = ["BURST_LIMIT", "INDEX_LIMIT", "INLINE_LIMIT", "STORE", "RecordWriter"]

logger = logging.getLogger("flowrra.redis.backend")
_CANCELLED = TaskStatus.CANCELLED

#: Completed records up to this size travel in the ``done`` notification itself; larger
#: ones are announced by id and read with GET.
INLINE_LIMIT = 64 * 1024
#: Records per script call at most; a larger burst is sent in slices as it is built.
BURST_LIMIT = 1000
#: Most task ids kept in the index that ``list`` reads (oldest dropped first).
INDEX_LIMIT = 100_000

# Per record, a mode: what to do with it.
_PENDING = "p"  # SET NX: a PENDING never overwrites what a worker already recorded
_RECORD = "r"  # SET, unless the stored record is complete
_DONE_INLINE = "c"  # SET with the TTL unless complete, then notify with "<id>|<record>"
_DONE_BY_ID = "C"  # the same, notifying waiters with "<id>" (they GET the large record)
_EVENT_ONLY = "e"  # superseded by a later record of the same task in this call

# KEYS: index, then one record key per record
# ARGV: ttl ms, index limit, events channel, done channel, then per record
#       (task id, record JSON, mode, index score, event JSON or '' for the record's)
#
# A complete record (SUCCESS, FAILED; CANCELLED is written "failed") is never replaced:
# what a redelivery of a finished task writes (RUNNING, another outcome) is dropped, with
# its events. Its status is read from the stored record's head: a record is
# ``[<id JSON>,"<status>",...`` and ``,"`` cannot occur inside a JSON string (its quotes
# are escaped), so the first ``,"`` starts the status. Only a complete record carries the
# TTL: one still PENDING, RUNNING or RETRYING is kept as long as its task may run (as the
# in-memory backend keeps it).
# Returns how many records were refused.
STORE = Script("""
local function complete(key)
  local head = redis.call('GETRANGE', key, 0, 1023)
  local comma = string.find(head, ',"', 1, true)
  if not comma and #head == 1024 then  -- an id of over 1,000 characters
    head = redis.call('GET', key)
    comma = string.find(head, ',"', 1, true)
  end
  if not comma then return false end
  local status = string.sub(head, comma + 2, comma + 9)
  return status == 'success"' or string.sub(status, 1, 7) == 'failed"'
end
local ttl = ARGV[1]
local index = {}
local refused = 0
for i = 2, #KEYS do
  local a = 5 + (i - 2) * 5
  local id, body, mode = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local written = true
  if mode == 'p' then
    redis.call('SET', KEYS[i], body, 'NX')
  elseif mode ~= 'e' then
    if complete(KEYS[i]) then
      written = false
      refused = refused + 1
    elseif mode == 'r' then
      redis.call('SET', KEYS[i], body)
    else
      redis.call('SET', KEYS[i], body, 'PX', ttl)
    end
  end
  if written then
    if mode ~= 'e' then
      index[#index + 1] = ARGV[a + 3]
      index[#index + 1] = id
    end
    if ARGV[a + 4] == '' then
      redis.call('PUBLISH', ARGV[3], body)
    else
      redis.call('PUBLISH', ARGV[3], ARGV[a + 4])
    end
    if mode == 'c' then
      redis.call('PUBLISH', ARGV[4], id .. '|' .. body)
    elseif mode == 'C' then
      redis.call('PUBLISH', ARGV[4], id)
    end
  end
end
local added = 0
for i = 1, #index, 4000 do  -- one ZADD per 2,000 ids (Lua's unpack has a stack limit)
  added = added + redis.call('ZADD', KEYS[1], 'NX', unpack(index, i, math.min(i + 3999, #index)))
end
if added > 0 and redis.call('ZCARD', KEYS[1]) > tonumber(ARGV[2]) then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[2]) - 1)
end
return refused
""")


class _Burst:
    """The records of one loop turn, as the script's KEYS and ARGV tail; the
    :class:`~flowrra_redis.pipeline.ReplySink` of its script call, which settles the
    waiters of its records."""

    __slots__ = ("args", "keys", "positions", "settled", "waiters")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.args: list[Any] = []
        self.waiters: list[asyncio.Future[None]] = []
        self.positions: dict[str, int] = {}  # task id -> index of its mode in args
        self.settled = False

    def done(self) -> bool:
        return self.settled

    def set_result(self, result: Any, /) -> None:
        self.settled = True
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)

    def set_exception(self, exception: BaseException, /) -> None:
        self.settled = True
        if not self.waiters:
            logger.warning(
                "Redis could not store %d result records: %s: %s",
                len(self.keys),
                type(exception).__name__,
                exception,
            )
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(exception)


class RecordWriter:
    """Batches record writes for one backend (see the module docstring)."""

    def __init__(self, pipe: AutoPipeline, keys: Keys, ttl_ms: int) -> None:
        self._pipe = pipe
        self._keys = keys
        self._result_key = keys.result("")  # + a task id
        self._ttl_ms = ttl_ms
        self._burst: _Burst | None = None

    def write(
        self, task_id: str, body: str, status: TaskStatus, score: str, event: str = ""
    ) -> asyncio.Future[None]:
        """Queue one record (``body``: its JSON, ``score``: its place in the index as text,
        ``event``: what to publish on the events channel instead of ``body``, or ``""``)
        for this loop turn's script call; the future completes when Redis has stored it,
        or fails with the reason."""
        burst = self._add(task_id, body, status, score, event)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        burst.waiters.append(waiter)
        return waiter

    def write_many(
        self, calls: Iterable[tuple[str, str, TaskStatus, str, str]]
    ) -> list[asyncio.Future[None]]:
        """:meth:`write` for many records (each the arguments of one call, taken from
        ``calls`` one at a time: a full burst goes out before the next record is made);
        returns one future per script call they went into, not one per record. If
        ``calls`` raises, the records before are written and the error propagates."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        last: _Burst | None = None
        try:
            for call in calls:
                burst = self._add(*call)
                if burst is not last:
                    waiter: asyncio.Future[None] = loop.create_future()
                    burst.waiters.append(waiter)
                    futures.append(waiter)
                    last = burst
        except BaseException:
            for waiter in futures:  # nobody will await them
                waiter.add_done_callback(retrieved)
            raise
        return futures

    def write_behind(
        self, task_id: str, body: str, status: TaskStatus, score: str, event: str = ""
    ) -> None:
        """Like :meth:`write`, for a record nobody waits for: a failure is only logged."""
        self._add(task_id, body, status, score, event)

    def _add(self, task_id: str, body: str, status: TaskStatus, score: str, event: str) -> _Burst:
        burst = self._burst
        if burst is None:
            burst = self._burst = _Burst()
            self._pipe.before_flush(self._flush)  # out with this turn's write
        if status is TaskStatus.PENDING:
            mode = _PENDING
        elif status is TaskStatus.SUCCESS or status is TaskStatus.FAILED or status is _CANCELLED:
            mode = _DONE_INLINE if len(body) <= INLINE_LIMIT else _DONE_BY_ID
        else:  # RUNNING, RETRYING
            mode = _RECORD
        earlier = burst.positions.get(task_id)
        if earlier is not None and mode is not _PENDING:  # a PENDING (NX) replaces nothing
            burst.args[earlier] = _EVENT_ONLY
        burst.positions[task_id] = len(burst.args) + 2
        burst.keys.append(self._result_key + task_id)
        burst.args += (task_id, body, mode, score, event)
        if len(burst.keys) >= BURST_LIMIT:
            # A large batch (submit_many) goes in slices: Redis stores one while the
            # caller encodes the next.
            self._flush()
            self._pipe.flush_now()
        return burst

    def _flush(self) -> None:
        burst, self._burst = self._burst, None
        if burst is None:
            return
        k = self._keys
        self._pipe.request_script_into(  # the reply settles the burst's waiters in place
            burst,
            STORE,
            [k.results_index, *burst.keys],
            [self._ttl_ms, INDEX_LIMIT, k.events, k.done, *burst.args],
        )
