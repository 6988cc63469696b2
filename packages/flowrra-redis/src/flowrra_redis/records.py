"""Writing result records (everything stored in one event-loop turn is one script call),
and reading them a page at a time from the indexes the writes keep (:data:`PAGE`).

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
import time
from collections.abc import Iterable
from typing import Any

from flowrra.task import TaskStatus
from flowrra_redis.connection import Keys, retrieved
from flowrra_redis.pipeline import AutoPipeline, Script

__all__ = [
    "BURST_LIMIT",
    "INDEX_LIMIT",
    "INLINE_LIMIT",
    "MINUTE_TTL",
    "PAGE",
    "STORE",
    "STORE_FUNCTION",
    "RecordWriter",
]

logger = logging.getLogger("flowrra.redis.backend")
_CANCELLED = TaskStatus.CANCELLED

#: Completed records up to this size travel in the ``done`` notification itself; larger
#: ones are announced by id and read with GET.
INLINE_LIMIT = 64 * 1024
#: Records per script call at most; a larger burst is sent in slices as it is built.
BURST_LIMIT = 1000
#: Most task ids kept in the index that ``list`` reads (oldest dropped first).
INDEX_LIMIT = 100_000

# Per record, a mode: what to do with it, and which status index it goes to.
_PENDING = "p"  # SET NX: a PENDING never overwrites what a worker already recorded
_RUNNING = "r"  # SET, unless the stored record is complete
_RETRYING = "t"  # the same
_SUCCESS_INLINE = "s"  # SET with the TTL unless complete, then notify with "<id>|<record>"
_SUCCESS_BY_ID = "S"  # the same, notifying waiters with "<id>" (they GET the large record)
_FAILED_INLINE = "f"
_FAILED_BY_ID = "F"
_EVENT_ONLY = "e"  # superseded by a later record of the same task in this call
_LIVE_MODES = {TaskStatus.RUNNING: _RUNNING, TaskStatus.RETRYING: _RETRYING}

#: Seconds a per-minute count of completions is kept: the chart's longest window (four
#: hours) and a little more.
MINUTE_TTL = 245 * 60

# KEYS: the index of every record, the index of failed records, the counts, this minute's
#       completions, then per record its key and the key of its task name's index (''
#       when it has no name)
# ARGV: ttl ms, index limit, events channel, done channel, minute ttl s, then per record
#       (task id, record JSON, mode, index score, event JSON or '' for the record's)
#
# A complete record (SUCCESS, FAILED; CANCELLED is written "failed", and indexed and
# counted as failed) is never replaced: what a redelivery of a finished
# task writes (RUNNING, another outcome) is dropped, with its events. Its status is read
# from the stored record's head: a record is ``[<id JSON>,"<status>",...`` and ``,"``
# cannot occur inside a JSON string (its quotes are escaped), so the first ``,"`` starts
# the status. Only a complete record carries the TTL: one still PENDING, RUNNING or
# RETRYING is kept as long as its task may run (as the in-memory backend keeps it).
#
# The indexes (see ``RedisBackend.list_page``), scored by submit time, are written in
# one variadic command per index and call, and cost a task two entries: a record written
# where there was none joins the index of every record and its task's index; a failed
# one also joins the failed index. (An index per live status cost two more commands per
# task, over the budget of the per-task path: ``list_page`` finds live records in the
# index of every record, near its top.) The counts follow each record's status before
# it, which the completeness check read: the records in each live status now (net
# changes per call), completions by outcome (in the totals and in this minute's), and
# retries (a record becoming RETRYING). A call sent
# again counts nothing twice: a complete record is never rewritten, and a RETRYING one
# over a RETRYING one is no new retry.
#
# A channel is published to only while a client subscribes to it (``PUBSUB NUMSUB``, once
# per channel and call; ``SHARDNUMSUB`` with the shard channels of a cluster, see
# ``Script.sharded``): the same as publishing to nobody, since no subscription can begin
# during a script, without the call per record. (Pattern subscriptions, PSUBSCRIBE, are
# not counted: a tool of one's own listens with SUBSCRIBE.) With no page of the UI open
# and nobody waiting, a submitted or finished task costs no publish.
# Returns how many records were refused.
STORE = Script("""
local function stored(key)  -- the status of the record under key ('' unreadable), or false
  local head = redis.call('GETRANGE', key, 0, 1023)
  if head == '' then return false end
  local comma = string.find(head, ',"', 1, true)
  if not comma and #head == 1024 then  -- an id of over 1,000 characters
    head = redis.call('GET', key)
    comma = string.find(head, ',"', 1, true)
  end
  if not comma then return '' end
  local close = string.find(head, '"', comma + 2, true)
  return close and string.sub(head, comma + 2, close - 1) or ''
end
local limit = tonumber(ARGV[2])
local function index(key, items)  -- one ZADD per 2,000 ids (Lua's unpack has a stack limit)
  local added = 0
  for i = 1, #items, 4000 do
    added = added + redis.call('ZADD', key, 'NX', unpack(items, i, math.min(i + 3999, #items)))
  end
  return added > 0 and redis.call('ZCARD', key) > limit
end
local ttl = ARGV[1]
local every, failures = {}, {}  -- score, id...
local names = {}  -- task index key -> score, id...
-- net changes of the counts: pending, running, retrying, success, failed, retries
local dp, dr, dt, ds, df, retried, refused = 0, 0, 0, 0, 0, 0, 0
local listened = {}  -- channel -> whether a client subscribes to it now
local function heard(channel)
  local now = listened[channel]
  if now == nil then
    now = redis.call('PUBSUB', 'NUMSUB', channel)[2] > 0
    listened[channel] = now
  end
  return now
end
-- Two records or more (up to 2,000: Lua's unpack has a stack limit), all PENDING, of as
-- many tasks, and none stored (a submit's, the usual case): one MSETNX writes them all,
-- with no call per record. If any is stored, it writes none, and each is SET NX as it
-- comes (so also when a task's PENDING comes twice in one call: the first is kept).
local fresh = #KEYS > 6 and #KEYS <= 4004
if fresh then
  local written, seen = {}, {}  -- key, record...; key -> true
  for i = 5, #KEYS, 2 do
    local a = 6 + (i - 5) / 2 * 5
    if ARGV[a + 2] ~= 'p' or seen[KEYS[i]] then
      fresh = false
      break
    end
    seen[KEYS[i]] = true
    written[#written + 1] = KEYS[i]
    written[#written + 1] = ARGV[a + 1]
  end
  fresh = fresh and redis.call('MSETNX', unpack(written)) == 1
end
for i = 5, #KEYS, 2 do
  local a = 6 + (i - 5) / 2 * 5
  local id, body, mode = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local written, indexed, was = true, mode ~= 'e', false
  if mode == 'p' then
    indexed = fresh or redis.call('SET', KEYS[i], body, 'NX') ~= false
  elseif indexed then
    was = stored(KEYS[i])
    if was == 'success' or was == 'failed' then
      written = false
      refused = refused + 1
    elseif mode == 'r' or mode == 't' then
      redis.call('SET', KEYS[i], body)
    else
      redis.call('SET', KEYS[i], body, 'PX', ttl)
    end
  end
  if written then
    if indexed then
      local score = ARGV[a + 3]
      if was == 'pending' then
        dp = dp - 1
      elseif was == 'running' then
        dr = dr - 1
      elseif was == 'retrying' then
        dt = dt - 1
      elseif not was then  -- a new record
        every[#every + 1] = score
        every[#every + 1] = id
        local task = KEYS[i + 1]
        if task ~= '' then
          local items = names[task]
          if not items then
            items = {}
            names[task] = items
          end
          items[#items + 1] = score
          items[#items + 1] = id
        end
      end
      if mode == 'p' then
        dp = dp + 1
      elseif mode == 'r' then
        dr = dr + 1
      elseif mode == 't' then
        dt = dt + 1
        if was ~= 'retrying' then retried = retried + 1 end
      elseif mode == 's' or mode == 'S' then
        ds = ds + 1
      else
        df = df + 1
        failures[#failures + 1] = score
        failures[#failures + 1] = id
      end
    end
    if not heard(ARGV[3]) then
    elseif ARGV[a + 4] == '' then
      redis.call('PUBLISH', ARGV[3], body)
    else
      redis.call('PUBLISH', ARGV[3], ARGV[a + 4])
    end
    if mode == 'p' or mode == 'r' or mode == 't' or mode == 'e' or not heard(ARGV[4]) then
    elseif mode == 's' or mode == 'f' then
      redis.call('PUBLISH', ARGV[4], id .. '|' .. body)
    else
      redis.call('PUBLISH', ARGV[4], id)
    end
  end
end
-- A task's index never holds more than the index of every record held: it is trimmed
-- (ZCARD checked) only in a call that trims that one.
local trim = #every > 0 and index(KEYS[1], every)
if trim then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -limit - 1) end
if #failures > 0 and index(KEYS[2], failures) then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -limit - 1)
end
for task, items in pairs(names) do
  for j = 1, #items, 4000 do
    redis.call('ZADD', task, 'NX', unpack(items, j, math.min(j + 3999, #items)))
  end
  if trim then redis.call('ZREMRANGEBYRANK', task, 0, -limit - 1) end
end
local totals = KEYS[3]
if dp ~= 0 then redis.call('HINCRBY', totals, 'pending', dp) end
if dr ~= 0 then redis.call('HINCRBY', totals, 'running', dr) end
if dt ~= 0 then redis.call('HINCRBY', totals, 'retrying', dt) end
if retried > 0 then redis.call('HINCRBY', totals, 'retries', retried) end
if ds + df > 0 then
  if ds > 0 then
    redis.call('HINCRBY', totals, 'success', ds)
    redis.call('HINCRBY', KEYS[4], 'success', ds)
  end
  if df > 0 then
    redis.call('HINCRBY', totals, 'failed', df)
    redis.call('HINCRBY', KEYS[4], 'failed', df)
  end
  redis.call('EXPIRE', KEYS[4], ARGV[5])
end
return refused
""")


#: STORE as a Lua function, ``store(KEYS, ARGV)``, for a script that stores records with
#: its own writes (:mod:`flowrra_redis.submits`): the same text, so one source.
STORE_FUNCTION = "local function store(KEYS, ARGV)\n" + STORE.body + "\nend\n"


def _mode(status: TaskStatus, body: str) -> str:
    """What STORE does with a record of ``status`` (see the modes above)."""
    if status is TaskStatus.PENDING:
        return _PENDING
    if status is TaskStatus.SUCCESS:
        return _SUCCESS_INLINE if len(body) <= INLINE_LIMIT else _SUCCESS_BY_ID
    if status is TaskStatus.FAILED or status is _CANCELLED:
        return _FAILED_INLINE if len(body) <= INLINE_LIMIT else _FAILED_BY_ID
    return _LIVE_MODES[status]


class _Burst:
    """The records of one loop turn, as the script's KEYS and ARGV tail; the
    :class:`~flowrra_redis.pipeline.ReplySink` of its script call, which settles the
    waiters of its records."""

    __slots__ = ("args", "keys", "positions", "settled", "waiters")

    def __init__(self) -> None:
        self.keys: list[str] = []  # per record: its key and its task index's
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
                len(self.keys) // 2,
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
        self._task_keys: dict[str, str] = {}
        self._fixed_keys = (
            keys.results_index,
            keys.failed_index,
            keys.totals,
        )

    def write(
        self,
        task_id: str,
        body: str,
        status: TaskStatus,
        score: str,
        event: str = "",
        task_name: str | None = None,
    ) -> asyncio.Future[None]:
        """Queue one record (``body``: its JSON, ``score``: its place in the index as text,
        ``event``: what to publish on the events channel instead of ``body``, or ``""``;
        ``task_name``: the index of its task it joins)
        for this loop turn's script call; the future completes when Redis has stored it,
        or fails with the reason."""
        burst = self._add(task_id, body, status, score, event, task_name)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        burst.waiters.append(waiter)
        return waiter

    def write_many(
        self, calls: Iterable[tuple[str, str, TaskStatus, str, str, str | None]]
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
        self,
        task_id: str,
        body: str,
        status: TaskStatus,
        score: str,
        event: str = "",
        task_name: str | None = None,
    ) -> None:
        """Like :meth:`write`, for a record nobody waits for: a failure is only logged."""
        self._add(task_id, body, status, score, event, task_name)

    def _task_key(self, task_name: str | None) -> str:
        """The key of ``task_name``'s index ("" for none), made once per name."""
        if task_name is None:
            return ""
        key = self._task_keys.get(task_name)
        if key is None:
            if len(self._task_keys) >= 10_000:  # names from outside the registry
                self._task_keys.clear()
            key = self._task_keys[task_name] = self._keys.name_index(task_name)
        return key

    def _add(
        self,
        task_id: str,
        body: str,
        status: TaskStatus,
        score: str,
        event: str,
        task_name: str | None,
    ) -> _Burst:
        burst = self._burst
        if burst is None:
            burst = self._burst = _Burst()
            self._pipe.before_flush(self._flush)  # out with this turn's write
        mode = _mode(status, body)
        earlier = burst.positions.get(task_id)
        if earlier is not None and mode is not _PENDING:  # a PENDING (NX) replaces nothing
            burst.args[earlier] = _EVENT_ONLY
        burst.positions[task_id] = len(burst.args) + 2
        burst.keys += (self._result_key + task_id, self._task_key(task_name))
        burst.args += (task_id, body, mode, score, event)
        if len(burst.keys) >= 2 * BURST_LIMIT:
            # A large batch (submit_many) goes in slices: Redis stores one while the
            # caller encodes the next.
            self._flush()
            self._pipe.flush_now()
        return burst

    def store_call(
        self, calls: Iterable[tuple[str, str, TaskStatus, str, str, str | None]]
    ) -> tuple[list[str], list[Any]]:
        """STORE's KEYS and ARGV for these records (each what :meth:`write` takes), for a
        script that runs STORE with its own writes (:data:`STORE_FUNCTION`); nothing is
        sent. Records of one task are not merged: this is for PENDING records."""
        k = self._keys  # store_head()'s lists, inline: a submit's path (a call costs 0.5%)
        keys = [*self._fixed_keys, k.minute(int(time.time()) // 60)]
        args: list[Any] = [self._ttl_ms, INDEX_LIMIT, k.events, k.done, MINUTE_TTL]
        result_key = self._result_key
        task_key = self._task_key
        for task_id, body, status, score, event, task_name in calls:
            keys += (result_key + task_id, task_key(task_name))
            args += (task_id, body, _mode(status, body), score, event)
        return keys, args

    def store_head(self) -> tuple[list[str], list[Any]]:
        """STORE's KEYS and ARGV before those of its records: a script call adds, per
        record, ``result_key + task_id`` and :meth:`task_key` to the first, and ``task_id,
        body, mode, score, event`` to the second (see :meth:`store_call`)."""
        k = self._keys
        return (
            [*self._fixed_keys, k.minute(int(time.time()) // 60)],
            [self._ttl_ms, INDEX_LIMIT, k.events, k.done, MINUTE_TTL],
        )

    @property
    def result_key(self) -> str:
        """A record's key is this + its task id."""
        return self._result_key

    def task_key(self, task_name: str | None) -> str:
        """The key of ``task_name``'s index ("" for none)."""
        return self._task_key(task_name)

    def _flush(self) -> None:
        burst, self._burst = self._burst, None
        if burst is None:
            return
        k = self._keys
        self._pipe.request_script_into(  # the reply settles the burst's waiters in place
            burst,
            STORE,
            [*self._fixed_keys, k.minute(int(time.time()) // 60), *burst.keys],
            [self._ttl_ms, INDEX_LIMIT, k.events, k.done, MINUTE_TTL, *burst.args],
        )


# KEYS: the index to read, the index of every record (an id whose record is gone leaves
#       both)
# ARGV: record key prefix (+ a task id), most records, the cursor's score ('' for the
#       first page), the cursor's task id, most ids to look at, the status wanted as the
#       record's head holds it ('success"'; '': any)
#
# One page of a listing, newest first: the ids after the cursor in the index (score
# descending, then id descending, as ZREVRANGE orders them), their records read in the
# same call. The cursor's id is found by rank (ZREVRANK: the usual case); when it left
# the index, the page starts after the entries above its score and the entries of its
# score that sort after its id (compared as Lua compares strings: byte order for the hex
# ids Flowrra makes). Ids whose record expired are removed from the index read
# and from the index of every record. With a status wanted (reading a task's index with a
# status filter), a record of another status is skipped; its status is read from its
# head as STORE reads it. At most ``most ids`` are looked at, so a call stays short
# whatever lies in the index. Returns {records, last id's score, last id, 1 if the index
# goes on after it else 0}.
PAGE = Script("""
local index, every = KEYS[1], KEYS[2]
local prefix, limit, budget, wanted = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[5]), ARGV[6]
local start = 0
if ARGV[3] ~= '' then
  local rank = redis.call('ZREVRANK', index, ARGV[4])
  local score = rank and redis.call('ZSCORE', index, ARGV[4])
  if score and tonumber(score) == tonumber(ARGV[3]) then
    start = rank + 1
  else
    start = redis.call('ZCOUNT', index, '(' .. ARGV[3], '+inf')
    local ties = redis.call('ZRANGEBYSCORE', index, ARGV[3], ARGV[3])
    for _, id in ipairs(ties) do
      if id > ARGV[4] then start = start + 1 end
    end
  end
end
local out, last_score, last_id, looked = {}, ARGV[3], ARGV[4], 0
local more = 1
while #out < limit and looked < budget do
  local chunk = redis.call('ZREVRANGE', index, start, start + limit - 1, 'WITHSCORES')
  if #chunk == 0 then
    more = 0
    break
  end
  local keys = {}
  for i = 1, #chunk, 2 do keys[#keys + 1] = prefix .. chunk[i] end
  local bodies = redis.call('MGET', unpack(keys))
  local gone, used = {}, 0
  for j = 1, #bodies do
    local body = bodies[j]
    used = j
    last_id, last_score = chunk[2 * j - 1], chunk[2 * j]
    looked = looked + 1
    if not body then
      gone[#gone + 1] = last_id
    else
      local comma = wanted ~= '' and string.find(body, ',"', 1, true)
      if wanted == '' or (comma and string.sub(body, comma + 2, comma + 1 + #wanted) == wanted) then
        out[#out + 1] = body
        if #out == limit then break end
      end
    end
  end
  if #gone > 0 then
    redis.call('ZREM', index, unpack(gone))
    if every ~= index then redis.call('ZREM', every, unpack(gone)) end
  end
  start = start + used - #gone
end
if more == 1 and start >= redis.call('ZCARD', index) then more = 0 end
return {out, last_score, last_id, more}
""")
