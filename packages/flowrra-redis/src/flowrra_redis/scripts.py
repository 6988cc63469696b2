"""The Lua scripts that make each broker operation atomic on the Redis server.

Message layout (see :mod:`flowrra_redis.broker`): a queued message is the ZSET member
``<priority key><16-digit sequence>[<8 hex digits>]|<JSON body>`` with score 0 in
``queue``, so ZPOPMIN returns the lowest priority first and, within a priority, the oldest.
The sequence number is taken once per ENQUEUE call (the hex digits are the message's place
in that call) and once per delayed message when it becomes due (no hex digits: each has its
own number). A delayed message is ``<priority key>|<JSON body>`` scored by its due time.
A reserved message keeps its queue member in ``leased``, scored by the lease expiry, so an
expired lease puts that member back, in its place, with a ``~`` before the ``|``: the mark
of a redelivery (a worker took it and did not settle it), which the worker checks against
the task's record before running it again.
"""

from __future__ import annotations

__all__ = [
    "CANCEL",
    "DEAD_LETTER",
    "DEAD_REQUEUE",
    "ENQUEUE",
    "ENQUEUE_UNIQUE",
    "EXTEND",
    "LIMITED_RESERVE",
    "LIMITED_RESERVE_QUEUES",
    "LIMITED_SETTLE",
    "PRIORITIES",
    "RELEASE",
    "RELEASE_UNIQUE",
    "RESERVE",
    "RESERVE_QUEUES",
]

# bulk(command, key, items, from): one command per 4,000 items from items[from], for
# variadic commands (Lua's unpack has a stack limit).
_BULK = """
local function bulk(command, key, items, from)
  for i = from, #items, 4000 do
    redis.call(command, key, unpack(items, i, math.min(i + 3999, #items)))
  end
end
"""

# -- cancellation (issue 14 part 3) ------------------------------------------------------
# marked(cancelled, out): the reserve scripts' last step. When the ``cancelled`` ZSET holds
# any id (one EXISTS: nothing more while nobody cancels), each member about to be returned
# whose message's id it holds is returned with a '!' in front (it stays leased as it is,
# without the '!'), and the id leaves the set: the worker settles that message CANCELLED
# and acks it, without running it. The id is the first '"id":"...' after the '|'.
_MARKED = """
local function marked(cancelled, out)
  if redis.call('EXISTS', cancelled) == 0 then return end
  for i = 1, #out do
    local m = out[i]
    local bar = string.find(m, '|', 1, true)
    local id = bar and string.match(m, '"id":"([^"]*)"', bar)
    if id and redis.call('ZREM', cancelled, id) == 1 then out[i] = '!' .. m end
  end
end
"""

# KEYS: cancelled ; ARGV: now, seconds an id is kept, task id, channel. Marks the task
# cancelled (see _MARKED; ids older than the window are forgotten) and publishes its id for
# the workers (one of them may be running it).
CANCEL = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
return redis.call('PUBLISH', ARGV[4], ARGV[3])
"""
# -- end of cancellation ------------------------------------------------------------------

# KEYS: queue, sequence, wake, delayed, leased, sent
# ARGV: now, leased member to remove ('' for none), seconds a message id is remembered,
# then per message (its dedupe key '<id>:<attempt>', priority key, eta or '',
# '<8 hex digits: its place in this call>|<body>').
# Idempotent: a message whose dedupe key ``sent`` holds (a ZSET scored by the time each
# was queued, pruned past the window; a key '' is not looked up: SUBMIT guards a call of
# many messages by one key) is skipped, so this call sent again after a timeout
# or a lost connection (when Redis had run it, but its reply was lost) queues nothing
# twice. One sequence number per call, formatted once: a message's order key is its
# priority key, that number and its place in the call (no number is formatted per message:
# that and the string it makes were half of this script's time). Returns how many messages
# wait (due and delayed).
ENQUEUE = (
    _BULK
    + """
local now = tonumber(ARGV[1])
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[5], ARGV[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - tonumber(ARGV[3]))
local seq = string.format('%016.0f', redis.call('INCR', KEYS[2]))
local due, later, nd, nl = {}, {}, 0, 0
for i = 4, #ARGV, 4 do
  if ARGV[i] == '' or redis.call('ZADD', KEYS[6], 'NX', now, ARGV[i]) == 1 then
    local eta = ARGV[i + 2]
    if eta ~= '' and tonumber(eta) > now then
      nl = nl + 2
      later[nl - 1] = eta
      later[nl] = ARGV[i + 1] .. string.sub(ARGV[i + 3], 9)
    else
      nd = nd + 2
      due[nd - 1] = '0'
      due[nd] = ARGV[i + 1] .. seq .. ARGV[i + 3]
    end
  end
end
bulk('ZADD', KEYS[1], due, 1)
bulk('ZADD', KEYS[4], later, 1)
if nd > 0 then
  local tokens = {}
  for i = 1, math.min(nd / 2, 16) do tokens[i] = '1' end
  redis.call('RPUSH', KEYS[3], unpack(tokens))
  redis.call('LTRIM', KEYS[3], -64, -1)
end
return redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[4])
"""
)

# KEYS: queue, delayed, leased, sequence, cancelled
# ARGV: now, lease expiry, max messages, then the members to ack (settled: removed from
# ``leased``). Acks a worker's settled messages, moves due delayed messages and expired
# leases into the queue (marked '~' before the '|': redelivered), then pops up to ARGV[3]
# members into ``leased``. Returns
# {members, messages waiting (due and delayed), next delayed due or '', how many expired
# leases were put back}.
RESERVE = (
    _BULK
    + _MARKED
    + """
bulk('ZREM', KEYS[3], ARGV, 4)
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, m in ipairs(due) do
  local bar = string.find(m, '|', 1, true)
  if bar then
    local seq = redis.call('INCR', KEYS[4])
    redis.call('ZADD', KEYS[1], 0,
      string.sub(m, 1, bar - 1) .. string.format('%016.0f', seq) .. string.sub(m, bar))
  else
    redis.call('ZADD', KEYS[1], 0, m)
  end
  redis.call('ZREM', KEYS[2], m)
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1000)
for _, m in ipairs(expired) do
  redis.call('ZREM', KEYS[3], m)
  local bar = string.find(m, '|', 1, true)
  if bar and string.sub(m, bar - 1, bar - 1) ~= '~' then
    m = string.sub(m, 1, bar - 1) .. '~' .. string.sub(m, bar)  -- marked: a redelivery
  end
  redis.call('ZADD', KEYS[1], 0, m)
end
local out = {}
local n = tonumber(ARGV[3])
if n > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], n)
  local leases = {}
  for i = 1, #popped, 2 do
    leases[#leases + 1] = ARGV[2]
    leases[#leases + 1] = popped[i]
    out[#out + 1] = popped[i]
  end
  bulk('ZADD', KEYS[3], leases, 1)
end
marked(KEYS[5], out)
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local next_due = ''
if #nxt > 0 then next_due = nxt[2] end
return {out, redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]), next_due, #expired}
"""
)

# KEYS: sequence, then per named queue its queue, delayed and leased keys, then cancelled
# ARGV: now, lease expiry, max messages, '1' for strict order ('' weighted), the cursor of
# the weighted turns (the 0-based queue whose turn it is, and how many it gave in that
# turn), one weight per queue, one ack count per queue, then the acks of each queue in
# that order. RESERVE over several named queues: acks, due delayed messages and expired
# leases are handled per queue as RESERVE does for one; then messages are popped in the
# turns of flowrra.queues.take_in_turns (this is its Lua twin). Returns RESERVE's reply
# (the waiting count and next due time over all these queues) and the cursor after.
RESERVE_QUEUES = (
    _BULK
    + _MARKED
    + """
local now = tonumber(ARGV[1])
local want = tonumber(ARGV[3])
local strict = ARGV[4] == '1'
local nq = (#KEYS - 2) / 3
local a = 7 + 2 * nq
for i = 1, nq do
  local count = tonumber(ARGV[6 + nq + i])
  for j = a, a + count - 1, 4000 do
    redis.call('ZREM', KEYS[3 * i + 1], unpack(ARGV, j, math.min(j + 3999, a + count - 1)))
  end
  a = a + count
end
local expired_total = 0
for i = 1, nq do
  local q, d, l = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  local due = redis.call('ZRANGEBYSCORE', d, '-inf', now, 'LIMIT', 0, 1000)
  for _, m in ipairs(due) do
    local bar = string.find(m, '|', 1, true)
    if bar then
      local seq = redis.call('INCR', KEYS[1])
      redis.call('ZADD', q, 0,
        string.sub(m, 1, bar - 1) .. string.format('%016.0f', seq) .. string.sub(m, bar))
    else
      redis.call('ZADD', q, 0, m)
    end
    redis.call('ZREM', d, m)
  end
  local expired = redis.call('ZRANGEBYSCORE', l, '-inf', now, 'LIMIT', 0, 1000)
  for _, m in ipairs(expired) do
    redis.call('ZREM', l, m)
    local bar = string.find(m, '|', 1, true)
    if bar and string.sub(m, bar - 1, bar - 1) ~= '~' then
      m = string.sub(m, 1, bar - 1) .. '~' .. string.sub(m, bar)
    end
    redis.call('ZADD', q, 0, m)
  end
  expired_total = expired_total + #expired
end
local out = {}
local function take(i, most)
  if most <= 0 then return 0 end
  local popped = redis.call('ZPOPMIN', KEYS[3 * i - 1], most)
  local leases = {}
  for j = 1, #popped, 2 do
    leases[#leases + 1] = ARGV[2]
    leases[#leases + 1] = popped[j]
    out[#out + 1] = popped[j]
  end
  bulk('ZADD', KEYS[3 * i + 1], leases, 1)
  return #popped / 2
end
local index, used = tonumber(ARGV[5]) + 1, tonumber(ARGV[6])
if strict then
  for i = 1, nq do
    if #out >= want then break end
    take(i, want - #out)
  end
  index, used = 1, 0
else
  if index > nq then index, used = 1, 0 end
  local idle = 0
  while #out < want and idle < nq do
    local share = math.min(tonumber(ARGV[6 + index]) - used, want - #out)
    local got = take(index, share)
    used = used + got
    if got > 0 then idle = 0 else idle = idle + 1 end
    if got < share or used >= tonumber(ARGV[6 + index]) then
      index, used = index % nq + 1, 0
    end
  end
end
local waiting, next_due = 0, nil
for i = 1, nq do
  waiting = waiting + redis.call('ZCARD', KEYS[3 * i - 1]) + redis.call('ZCARD', KEYS[3 * i])
  local nxt = redis.call('ZRANGE', KEYS[3 * i], 0, 0, 'WITHSCORES')
  if #nxt > 0 and (next_due == nil or tonumber(nxt[2]) < next_due) then
    next_due = tonumber(nxt[2])
  end
end
marked(KEYS[#KEYS], out)
local next_text = ''
if next_due ~= nil then next_text = string.format('%.17g', next_due) end
return {out, waiting, next_text, expired_total, index - 1, used}
"""
)

# KEYS: queue ; ARGV: most priorities to count. The due messages of one queue by
# priority: {priority key, count, ...}, lowest first, without reading the members: each
# priority's members share its key as a prefix followed by sequence digits, so ZLEXCOUNT
# counts them and the first member after them starts the next priority.
PRIORITIES = """
local out = {}
local first = redis.call('ZRANGE', KEYS[1], 0, 0)
local n = 0
while #first > 0 and n < tonumber(ARGV[1]) do
  local m = first[1]
  local len = tonumber(string.sub(m, 2, 5), 16)
  if string.sub(m, 1, 1) == 'n' then len = 65535 - len end
  local key = string.sub(m, 1, 5 + len)
  out[#out + 1] = key
  out[#out + 1] = redis.call('ZLEXCOUNT', KEYS[1], '[' .. key, '(' .. key .. ':')
  first = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. key .. ':', '+', 'LIMIT', 0, 1)
  n = n + 1
end
return out
"""

# KEYS: leased ; ARGV: new expiry, member* . Renews leases still held (XX: never re-adds
# one that expired and was handed to another worker).
EXTEND = """
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', ARGV[1], ARGV[i])
end
return n
"""

# KEYS: leased, queue, wake ; ARGV: member* . Hands reservations back for redelivery now.
RELEASE = """
local n = 0
for i = 1, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], 0, ARGV[i])
    n = n + 1
  end
end
if n > 0 then
  redis.call('RPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], -64, -1)
end
return n
"""

# KEYS: leased, dead ; ARGV: member, entry (JSON), max entries kept
DEAD_LETTER = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
return 1
"""

# KEYS: dead, queue, sequence, wake ; ARGV: per message (its dead-letter entry exactly as
# stored, priority key, '<8 hex digits: its place>|<body>'). Each entry still in the list
# is removed and its message queued (due now), as ENQUEUE queues one: an entry another
# caller took first is skipped, so a message is never requeued twice. Returns the
# 1-based positions (in ARGV triples) of the messages queued.
DEAD_REQUEUE = """
local seq = string.format('%016.0f', redis.call('INCR', KEYS[3]))
local queued = {}
for i = 1, #ARGV, 3 do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], 0, ARGV[i + 1] .. seq .. ARGV[i + 2])
    queued[#queued + 1] = (i + 2) / 3
  end
end
if #queued > 0 then
  local tokens = {}
  for i = 1, math.min(#queued, 16) do tokens[i] = '1' end
  redis.call('RPUSH', KEYS[4], unpack(tokens))
  redis.call('LTRIM', KEYS[4], -64, -1)
end
return queued
"""


# -- unique jobs (flowrra.unique) ------------------------------------------------------------

# ENQUEUE's body as a function of its own KEYS and ARGV (parameters that shadow the
# globals): ENQUEUE_UNIQUE runs it unchanged on its own arguments after the key's check.
assert ENQUEUE.startswith(_BULK)
_ENQUEUE_FUNCTION = "local function enqueue(KEYS, ARGV)\n" + ENQUEUE[len(_BULK) :] + "\nend\n"

# KEYS: the unique key, then ENQUEUE's (queue, sequence, wake, delayed, leased, sent)
# ARGV: the task id, milliseconds the key lives unless released, then ENQUEUE's ARGV for
# that one message. If the key is held, nothing is queued and the holder's id is returned
# (a resend of a call that ran finds its own id there). If ``sent`` already has the
# message (a resend of a call that ran, whose task has finished and released the key
# since), nothing is taken and nothing queued. Else the key is set to the id and the
# message is queued as ENQUEUE queues it. Returns {holder id, messages waiting, or -1 when
# nothing was queued}.
ENQUEUE_UNIQUE = (
    _BULK
    + _ENQUEUE_FUNCTION
    + """
local holder = redis.call('GET', KEYS[1])
if holder then return {holder, -1} end
if redis.call('ZSCORE', KEYS[7], ARGV[6]) then return {ARGV[1], -1} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local argv = {}
for i = 3, #ARGV do argv[i - 2] = ARGV[i] end
return {ARGV[1], enqueue({KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]}, argv)}
"""
)

# KEYS: the unique key ; ARGV: the task id, milliseconds to keep it ('0': delete).
# Compare and delete: only a key that still holds this id is deleted or set to expire.
# Returns 1 if it was, 0 if the key holds another id or none.
RELEASE_UNIQUE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
"""


# -- task limits (flowrra.limits) ----------------------------------------------------------
# Used only by a worker whose tasks have rate_limit/max_concurrency: RESERVE and
# RESERVE_QUEUES above stay what they are, and these wrap them.
#
# LIMITED_RESERVE / LIMITED_RESERVE_QUEUES run the wrapped script as a function of its own
# KEYS and ARGV, then look at each member it reserved. A member whose task is over a limit
# leaves ``leased`` for its queue's ``delayed`` set (as ``<priority key>|<body>``, as a
# retry waits: when due it is queued with a new sequence number, behind the messages of
# its priority queued meanwhile), due when the limit next allows; if the batch came back
# short and full, the wrapped script runs again for the rest (at most 8 rounds, then the
# reply says "due now" so the worker asks again at once).
#
# - rate (a sliding window log): ``started:<task>`` holds one entry per start, scored by
#   when; entries a window old are dropped; with ``count`` entries in the window, the
#   k-th (0-based) member deferred in this call is due when the window's
#   (k mod count)-th oldest start leaves it, plus a window per full round of count.
# - concurrency: ``running:<task>`` holds the id of each run, scored by its lease expiry
#   (renewed by extend); entries past their expiry are dropped (a dead worker's). A member
#   of a full task is due at the earliest expiry, and listed in ``deferred:<queue>:<task>``
#   so that LIMITED_SETTLE makes it due at once when a run ends.
#
# KEYS: the wrapped script's keys (nb); per consumed queue: delayed, leased; per limited
#   task: started, running; per limited task, per consumed queue: deferred.
# ARGV: nb, na (the wrapped script's argument count), nq (queues), nt (limited tasks);
#   per limited task: name, count (0: no rate), window seconds, max concurrency (0: none);
#   then the wrapped script's arguments (na).
# Returns the wrapped script's reply: the members admitted, the waiting count and next
# due time counting the deferred ones.
_LIMITED = r"""
local nb, na, nq, nt = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local bkeys, bargs = {}, {}
for i = 1, nb do bkeys[i] = KEYS[i] end
local a0 = 4 + 4 * nt
for i = 1, na do bargs[i] = ARGV[a0 + i] end
local now, expiry, want = tonumber(bargs[1]), bargs[2], tonumber(bargs[3])
local kt = nb + 2 * nq
local limits = {}
for j = 1, nt do
  local o = 4 * j
  limits[ARGV[o + 1]] = {j = j, count = tonumber(ARGV[o + 2]), per = tonumber(ARGV[o + 3]),
    most = tonumber(ARGV[o + 4]), started = 0, running = 0, excess = 0, loaded = false}
end
local function load(lim)
  if lim.loaded then return end
  lim.loaded = true
  if lim.count > 0 then
    local key = KEYS[kt + 2 * lim.j - 1]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.17g', now - lim.per))
    lim.started = redis.call('ZCARD', key)
  end
  if lim.most > 0 then
    local key = KEYS[kt + 2 * lim.j]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', bargs[1])
    lim.running = redis.call('ZCARD', key)
  end
end
local function queue_of(m)
  if nq == 1 then return 1 end
  for i = 1, nq do
    if redis.call('ZSCORE', KEYS[nb + 2 * i], m) then return i end
  end
  return 0
end
local function waiting_form(m)
  local len = tonumber(string.sub(m, 2, 5), 16)
  if string.sub(m, 1, 1) == 'n' then len = 65535 - len end
  local bar = string.find(m, '|', 1, true)
  return string.sub(m, 1, 5 + len) .. string.sub(m, bar)
end
local round_deferred, round_next = 0, nil
local function defer(m, due, lim)
  local i = queue_of(m)
  if i == 0 then return end
  redis.call('ZREM', KEYS[nb + 2 * i], m)
  local w = waiting_form(m)
  redis.call('ZADD', KEYS[nb + 2 * i - 1], string.format('%.17g', due), w)
  if lim then redis.call('ZADD', KEYS[kt + 2 * nt + (lim.j - 1) * nq + i], bargs[1], w) end
  round_deferred = round_deferred + 1
  if round_next == nil or due < round_next then round_next = due end
end
local admitted, expired, rounds = {}, 0, 0
local reply = base(bkeys, bargs)
while true do
  round_deferred, round_next = 0, nil
  local popped = reply[1]
  expired = expired + reply[4]
  for _, m in ipairs(popped) do
    local bar = string.find(m, '|', 1, true)
    local id, name
    if string.sub(m, 1, 1) == '!' then
      bar = nil  -- a cancelled task's (see marked): the worker settles it, never runs it
    end
    if bar then
      id, name = string.match(m, '^{"v":%d+,"id":"([^"\\]*)","name":"([^"\\]*)"', bar + 1)
      if name == nil then
        local ok, body = pcall(cjson.decode, string.sub(m, bar + 1))
        if ok and type(body) == 'table' then id, name = body['id'], body['name'] end
      end
    end
    local lim = nil
    if type(name) == 'string' and type(id) == 'string' then lim = limits[name] end
    if lim == nil then
      admitted[#admitted + 1] = m
    else
      load(lim)
      if lim.most > 0 and lim.running >= lim.most then
        local first = redis.call('ZRANGE', KEYS[kt + 2 * lim.j], 0, 0, 'WITHSCORES')
        defer(m, tonumber(first[2]) or now + 1, lim)
      elseif lim.count > 0 and lim.started >= lim.count then
        local k = lim.excess
        lim.excess = k + 1
        local at = lim.started - lim.count + k % lim.count
        local start = redis.call('ZRANGE', KEYS[kt + 2 * lim.j - 1], at, at, 'WITHSCORES')
        defer(m, tonumber(start[2]) + lim.per * (1 + math.floor(k / lim.count)), nil)
      else
        if lim.count > 0 then
          redis.call('ZADD', KEYS[kt + 2 * lim.j - 1], bargs[1], id .. '@' .. bargs[1])
          lim.started = lim.started + 1
        end
        if lim.most > 0 then
          redis.call('ZADD', KEYS[kt + 2 * lim.j], expiry, id)
          lim.running = lim.running + 1
          local i = queue_of(m)
          if i > 0 then
            redis.call('ZREM', KEYS[kt + 2 * nt + (lim.j - 1) * nq + i], waiting_form(m))
          end
        end
        admitted[#admitted + 1] = m
      end
    end
  end
  rounds = rounds + 1
  local short = want - #admitted
  if round_deferred == 0 or short <= 0 or #popped < tonumber(bargs[3]) then break end
  if rounds >= 8 then
    round_next = now
    break
  end
  bargs = again(bargs, reply, short, nq)
  reply = base(bkeys, bargs)
end
reply[1] = admitted
reply[2] = reply[2] + round_deferred
reply[4] = expired
if round_next ~= nil and (reply[3] == '' or round_next < tonumber(reply[3])) then
  reply[3] = string.format('%.17g', round_next)
end
return reply
"""


def _wrapped(script: str, again: str) -> str:
    """The limited twin of a reserve script: ``script`` as a function of its own KEYS and
    ARGV, ``again`` (its arguments for another round of ``n`` messages over ``q`` queues,
    without acks) and :data:`_LIMITED`."""
    return f"local function base(KEYS, ARGV)\n{script}\nend\n{again}\n{_LIMITED}"


LIMITED_RESERVE = _wrapped(
    RESERVE,
    """
local function again(args, reply, n, q)
  return {args[1], args[2], tostring(n)}
end
""",
)

LIMITED_RESERVE_QUEUES = _wrapped(
    RESERVE_QUEUES,
    """
local function again(args, reply, n, q)
  local out = {}
  for i = 1, 6 + q do out[i] = args[i] end
  out[3], out[5], out[6] = tostring(n), tostring(reply[5]), tostring(reply[6])
  for i = 1, q do out[6 + q + i] = '0' end
  return out
end
""",
)

# KEYS: running, then per queue the task may be deferred in: deferred, delayed, wake ;
# ARGV: task id*. Runs of a concurrency-limited task ended (acked, retried, released,
# dead-lettered): their places are freed, and as many of the task's deferred messages,
# the longest deferred first over those queues, are made due now (score 0) and a worker
# of their queue woken. An entry of ``deferred`` no longer delayed (it came due and ran)
# is dropped on the way. Returns how many were made due.
LIMITED_SETTLE = """
local freed = 0
for i = 1, #ARGV do freed = freed + redis.call('ZREM', KEYS[1], ARGV[i]) end
local moved, tries, nq = 0, 0, (#KEYS - 1) / 3
while moved < freed and tries < freed + 10 do
  tries = tries + 1
  local best, best_score = 0, nil
  for i = 1, nq do
    local first = redis.call('ZRANGE', KEYS[3 * i - 1], 0, 0, 'WITHSCORES')
    if #first > 0 and (best_score == nil or tonumber(first[2]) < best_score) then
      best, best_score = i, tonumber(first[2])
    end
  end
  if best == 0 then break end
  local first = redis.call('ZPOPMIN', KEYS[3 * best - 1])
  if redis.call('ZSCORE', KEYS[3 * best], first[1]) then
    redis.call('ZADD', KEYS[3 * best], 0, first[1])
    redis.call('RPUSH', KEYS[3 * best + 1], '1')
    redis.call('LTRIM', KEYS[3 * best + 1], -64, -1)
    moved = moved + 1
  end
end
return moved
"""
