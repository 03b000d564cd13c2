"""The Lua scripts of the shared slot ledger (``admission/shared.py``).

Each script runs atomically in Redis, so every decision (take a free slot, queue, hand a
freed slot to the lowest start tag of the whole fleet, reap a dead gateway) sees one
consistent state. Keys of one model share ``KEYS[1]`` as their prefix:

- ``:busy``            slots held fleet-wide
- ``:held:<gw>``       hash ticket -> ``slots|tenant``: the slot leases of gateway ``gw``
- ``:inflight``        hash tenant -> slots held fleet-wide
- ``:q:<rank>``        zset of waiters per priority class, scored by start tag; members
                       ``seq|gw|ticket|finish|slots|tenant`` (ties go by ``seq``: arrival)
- ``:vt``, ``:fin:<rank>``  virtual time per class, last finish tag per tenant
- ``:seen``            zset tenant -> last request time (the headroom's "more than one user")
- ``:gws``, ``:alive:<gw>``  gateways that touched the model; a gateway's lease key (TTL)

A request for ``n`` answers holds n slots (``admission/queue.py``): its member and lease carry
the count, ``take``/``drop`` move ``busy`` and ``inflight`` by it, its tag advances by
n/weight, and ``dispatch`` keeps the local queue's strict order (a waiter needing more
slots than are free stops the round) and clamps a count above the capacity to it. These
entries live under a key prefix of their own (``<prefix>-adm2``, admission/shared.py):
gateways of the version before, whose entries carry no count, keep theirs under
``<prefix>-adm``, so during a rolling upgrade each version keeps a ledger of its own (the
engines may see up to twice their slots until the old gateways are gone) and neither
misreads the other's entries.

``ARGV[1]`` is always the grant-list prefix: slots freed for a waiter of gateway ``gw`` are
announced by ``RPUSH <prefix><gw> "model\\nticket\\nslots\\ntenant"``. The keys are built
inside the scripts, so they need a single Redis (or Sentinel), not Redis Cluster.
"""

from __future__ import annotations

_COMMON = r"""
local base = KEYS[1]
local grants = ARGV[1]
local model = ARGV[2]
local SCAN = 64  -- waiters looked at per class and dispatch: bounds the script's work

local function num(v) return tonumber(v) or 0 end
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local function parse(member)  -- seq, gw, ticket, finish, slots, tenant
  local seq, gw, ticket, finish, slots, tenant =
    string.match(member, '^(%d+)|([^|]+)|(%d+)|([^|]+)|(%d+)|(.*)$')
  return seq, gw, ticket, finish, tonumber(slots), tenant
end
local function lease_of(value)  -- a held entry: slots, tenant
  local slots, tenant = string.match(value, '^(%d+)|(.*)$')
  return tonumber(slots), tenant
end
local function clamp(slots, capacity)
  return math.max(1, math.min(slots, capacity))
end
local function waiting()
  return redis.call('ZCARD', base .. ':q:0') + redis.call('ZCARD', base .. ':q:1')
    + redis.call('ZCARD', base .. ':q:2')
end
local function reserve(capacity)
  if capacity >= 3 and redis.call('ZCARD', base .. ':seen') > 1 then return 1 end
  return 0
end
local function may_take(tenant, free, res, need)
  if free < need then return false end
  if num(redis.call('HGET', base .. ':inflight', tenant)) == 0 then return true end
  return free - need >= res
end
local function take(gw, ticket, tenant, slots)
  redis.call('INCRBY', base .. ':busy', slots)
  redis.call('HSET', base .. ':held:' .. gw, ticket, slots .. '|' .. tenant)
  redis.call('HINCRBY', base .. ':inflight', tenant, slots)
end
local function drop(tenant, slots)
  if redis.call('HINCRBY', base .. ':inflight', tenant, -slots) <= 0 then
    redis.call('HDEL', base .. ':inflight', tenant)
  end
  if redis.call('DECRBY', base .. ':busy', slots) < 0 then
    redis.call('SET', base .. ':busy', 0)
  end
end
local function forget_idle(rank)
  local fin = base .. ':fin:' .. rank
  for _, tenant in ipairs(redis.call('HKEYS', fin)) do
    if redis.call('HEXISTS', base .. ':inflight', tenant) == 0 then
      redis.call('HDEL', fin, tenant)
    end
  end
end
local function tag(rank, tenant, weight, slots)
  local start = math.max(num(redis.call('HGET', base .. ':vt', rank)),
    num(redis.call('HGET', base .. ':fin:' .. rank, tenant)))
  local finish = string.format('%.17g', start + slots / weight)
  redis.call('HSET', base .. ':fin:' .. rank, tenant, finish)
  return start, finish
end
local function dispatch(capacity, own)
  local free = capacity - num(redis.call('GET', base .. ':busy'))
  local mine = 0
  if free <= 0 or waiting() == 0 then return 0 end
  local res = reserve(capacity)
  local passed = {}  -- tenants with a waiter the headroom kept out: not passed by their own
  local blocked = false  -- a waiter needs more slots than are free: nobody goes past it
  for rank = 0, 2 do
    local q = base .. ':q:' .. rank
    local entries = redis.call('ZRANGE', q, 0, SCAN - 1, 'WITHSCORES')
    local served = false
    for i = 1, #entries, 2 do
      if free <= 0 then break end
      local _, gw, ticket, _, slots, tenant = parse(entries[i])
      local need = clamp(slots, capacity)
      if free < need then blocked = true break end
      if not passed[tenant] and may_take(tenant, free, res, need) then
        redis.call('ZREM', q, entries[i])
        redis.call('HSET', base .. ':vt', rank, entries[i + 1])
        take(gw, ticket, tenant, need)
        free = free - need
        served = true
        if entries[i] == own then
          mine = need
        else
          redis.call('RPUSH', grants .. gw, model .. '\n' .. ticket .. '\n' .. need .. '\n'
            .. tenant)
        end
      else
        passed[tenant] = true
      end
    end
    if served and redis.call('ZCARD', q) == 0 then forget_idle(rank) end
    if blocked or free <= 0 then break end
  end
  return mine
end
local function lease(gw, ttl_ms)
  redis.call('SET', base .. ':alive:' .. gw, 1, 'PX', ttl_ms)
  redis.call('SADD', base .. ':gws', gw)
end
local function reap(gw)  -- the slots it held
  local held = redis.call('HGETALL', base .. ':held:' .. gw)
  local slots = 0
  for i = 2, #held, 2 do
    local count, tenant = lease_of(held[i])
    drop(tenant, count)
    slots = slots + count
  end
  redis.call('DEL', base .. ':held:' .. gw, base .. ':alive:' .. gw, grants .. gw)
  for rank = 0, 2 do
    local q = base .. ':q:' .. rank
    for _, member in ipairs(redis.call('ZRANGE', q, 0, -1)) do
      local _, owner = parse(member)
      if owner == gw then redis.call('ZREM', q, member) end
    end
  end
  redis.call('SREM', base .. ':gws', gw)
  return slots
end
local function position(member, rank)
  local ahead = redis.call('ZRANK', base .. ':q:' .. rank, member)
  if not ahead then return -1 end
  for r = 0, rank - 1 do ahead = ahead + redis.call('ZCARD', base .. ':q:' .. r) end
  return ahead
end
"""

# ARGV: grants, model, gw, ticket, tenant, rank, weight, capacity, window, ttl_ms, slots
# -> {1, slots} admitted, or {0, position, member} queued
ADMIT = (
    _COMMON
    + r"""
local gw, ticket, tenant, rank = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local weight, capacity = tonumber(ARGV[7]), tonumber(ARGV[8])
local slots = clamp(tonumber(ARGV[11]), capacity)
local t = now()
lease(gw, ARGV[10])
redis.call('ZADD', base .. ':seen', t, tenant)
redis.call('ZREMRANGEBYSCORE', base .. ':seen', '-inf', t - tonumber(ARGV[9]))
local free = capacity - num(redis.call('GET', base .. ':busy'))
if waiting() == 0 and may_take(tenant, free, reserve(capacity), slots) then
  local start = tag(rank, tenant, weight, slots)
  redis.call('HSET', base .. ':vt', rank, string.format('%.17g', start))
  take(gw, ticket, tenant, slots)
  return {1, slots}
end
local start, finish = tag(rank, tenant, weight, slots)
local seq = redis.call('INCR', base .. ':seq')
local member = string.format('%015d', seq) .. '|' .. gw .. '|' .. ticket .. '|' .. finish
  .. '|' .. slots .. '|' .. tenant
redis.call('ZADD', base .. ':q:' .. rank, string.format('%.17g', start), member)
local mine = dispatch(capacity, member)
if mine > 0 then return {1, mine} end
return {0, position(member, tonumber(rank)), member}
"""
)

# ARGV: grants, model, gw, ticket, capacity -> 1 if the lease was held (now freed)
RELEASE = (
    _COMMON
    + r"""
local key = base .. ':held:' .. ARGV[3]
local held = redis.call('HGET', key, ARGV[4])
if held then
  redis.call('HDEL', key, ARGV[4])
  local slots, tenant = lease_of(held)
  drop(tenant, slots)
end
dispatch(tonumber(ARGV[5]), '')
if held then return 1 end
return 0
"""
)

# ARGV: grants, model, member, rank -> 1 if the waiter was still queued (now removed),
# 0 if a slot was granted to it already (its grant message is on the way)
CANCEL = (
    _COMMON
    + r"""
local q = base .. ':q:' .. ARGV[4]
local start = redis.call('ZSCORE', q, ARGV[3])
if not start then return 0 end
redis.call('ZREM', q, ARGV[3])
local _, _, _, finish, _, tenant = parse(ARGV[3])
local fin = base .. ':fin:' .. ARGV[4]
if redis.call('HGET', fin, tenant) == finish then redis.call('HSET', fin, tenant, start) end
if redis.call('ZCARD', q) == 0 then forget_idle(ARGV[4]) end
return 1
"""
)

# ARGV: grants, model, gw, ttl_ms, capacity, then (member, rank) pairs of local waiters
# -> {slots reaped from dead gateways, 1 if this gateway's own lease had lapsed, positions...}
BEAT = (
    _COMMON
    + r"""
local gw = ARGV[3]
local lapsed = 1 - redis.call('EXISTS', base .. ':alive:' .. gw)
lease(gw, ARGV[4])
local reaped = 0
for _, other in ipairs(redis.call('SMEMBERS', base .. ':gws')) do
  if redis.call('EXISTS', base .. ':alive:' .. other) == 0 then reaped = reaped + reap(other) end
end
dispatch(tonumber(ARGV[5]), '')
for rank = 0, 2 do  -- tags of users admitted at once, while nobody waited, stay bounded
  if redis.call('ZCARD', base .. ':q:' .. rank) == 0 then forget_idle(rank) end
end
local out = {reaped, lapsed}
for i = 6, #ARGV, 2 do out[#out + 1] = position(ARGV[i], tonumber(ARGV[i + 1])) end
return out
"""
)

# ARGV: grants, model, gw, capacity -> slots given back (a gateway closing)
LEAVE = (
    _COMMON
    + r"""
local reaped = reap(ARGV[3])
dispatch(tonumber(ARGV[4]), '')
return reaped
"""
)
