"""The Lua scripts behind every Redis store operation and the replicas' leases.

Each script is atomic and takes one round trip. Time is Redis's own clock (``TIME``).
"""

from __future__ import annotations

from ...store import OVERDUE_GRACE

__all__ = ("COMMON", "GET", "IDS", "OVERDUE", "PENDING_COUNT", "PUT", "RENEW", "RETIRE", "TAKE_OVER")

# A running job past its deadline (P:all:pending's score) is kept OVERDUE_GRACE_US longer for
# a sweep (OVERDUE, then a terminal PUT) to fail it; only then does expire() drop it.
COMMON = (
    f"local OVERDUE_GRACE_US = {round(OVERDUE_GRACE * 1_000_000)}\n"
    + r"""
local function split(m)
  local colon = string.find(m, ':', 1, true)
  local n = tonumber(string.sub(m, 1, colon - 1))
  return string.sub(m, 1, colon + n), string.sub(m, colon + n + 2)
end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- A running job is no longer any replica's: out of its owner's running set, its meta gone.
local function release(p, m)
  local meta = p .. ':meta:' .. m
  local owner = redis.call('HGET', meta, 'r')
  if owner then redis.call('SREM', p .. ':running:' .. owner, m) end
  redis.call('DEL', meta)
end

local function forget_finished(p, m)
  local tag, id = split(m)
  redis.call('ZREM', p .. ':finished:' .. tag, id)
  redis.call('DEL', p .. ':done:' .. m)
end

local function expire(p, now, fttl)
  local allp = p .. ':all:pending'
  local gone = redis.call('ZRANGEBYSCORE', allp, '-inf', now - OVERDUE_GRACE_US)
  if #gone > 0 then
    for _, m in ipairs(gone) do
      local tag, id = split(m)
      redis.call('ZREM', p .. ':pending:' .. tag, id)
      redis.call('DEL', p .. ':run:' .. m)
      release(p, m)
    end
    redis.call('ZREMRANGEBYSCORE', allp, '-inf', now - OVERDUE_GRACE_US)
  end
  if fttl > 0 then
    local allf = p .. ':all:finished'
    local cutoff = now - fttl
    local old = redis.call('ZRANGEBYSCORE', allf, '-inf', cutoff)
    if #old > 0 then
      for _, m in ipairs(old) do forget_finished(p, m) end
      redis.call('ZREMRANGEBYSCORE', allf, '-inf', cutoff)
    end
  end
end
"""
)

# ARGV: prefix, tag, id, job, pending ('1'/'0'), pending_ttl_us, finished_ttl_us (0: none),
# max_finished (0: none), key ttl slack ms, replica ('': none), request ('': none).
# Returns 1 if stored, 0 if a finished job held the key.
# A new running job put with a replica becomes that replica's: it joins P:running:{replica}
# and P:meta:{m} records the owner and the request. Any terminal put releases the job from
# whichever replica owns it (even one that loses to a finished job already stored).
PUT = (
    COMMON
    + r"""
local p, tag, id, blob = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local pending = ARGV[5] == '1'
local pttl, fttl, maxf, slack = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local replica, request = ARGV[10], ARGV[11]
local m = tag .. '\n' .. id
local now = now_us()
expire(p, now, fttl)
if not pending then release(p, m) end
local done = p .. ':done:' .. m
if redis.call('EXISTS', done) == 1 then return 0 end
local pz = p .. ':pending:' .. tag
local seq = redis.call('ZSCORE', pz, id)
if not seq then seq = redis.call('INCR', p .. ':seq') end
if pending then
  local run = p .. ':run:' .. m
  local key_ms = math.ceil((pttl + OVERDUE_GRACE_US) / 1000) + slack
  local fresh = redis.call('EXISTS', run) == 0
  redis.call('SET', run, blob, 'PX', key_ms)
  redis.call('ZADD', pz, seq, id)
  redis.call('ZADD', p .. ':all:pending', now + pttl, m)
  local meta = p .. ':meta:' .. m
  if fresh and replica ~= '' then
    redis.call('HSET', meta, 'r', replica, 'q', request)
    redis.call('PEXPIRE', meta, key_ms)
    redis.call('SADD', p .. ':running:' .. replica, m)
  else
    redis.call('PEXPIRE', meta, key_ms)
  end
  return 1
end
redis.call('DEL', p .. ':run:' .. m)
redis.call('ZREM', pz, id)
redis.call('ZREM', p .. ':all:pending', m)
if fttl > 0 then
  redis.call('SET', done, blob, 'PX', math.ceil(fttl / 1000) + slack)
else
  redis.call('SET', done, blob)
end
redis.call('ZADD', p .. ':finished:' .. tag, seq, id)
local clock = p .. ':clock'
local at = now
local last = tonumber(redis.call('GET', clock) or '0')
if at <= last then at = last + 1 end
redis.call('SET', clock, at)
local allf = p .. ':all:finished'
redis.call('ZADD', allf, at, m)
if maxf > 0 then
  local over = redis.call('ZCARD', allf) - maxf
  if over > 0 then
    local popped = redis.call('ZPOPMIN', allf, over)
    for i = 1, #popped, 2 do forget_finished(p, popped[i]) end
  end
end
return 1
"""
)

# ARGV: prefix, tag, finished_ttl_us, id... Returns one job (or nil) per id.
GET = (
    COMMON
    + r"""
local p, tag = ARGV[1], ARGV[2]
expire(p, now_us(), tonumber(ARGV[3]))
local out = {}
for i = 4, #ARGV do
  local m = tag .. '\n' .. ARGV[i]
  local v = redis.call('GET', p .. ':done:' .. m)
  if not v then v = redis.call('GET', p .. ':run:' .. m) end
  out[#out + 1] = v
end
return out
"""
)

# ARGV: prefix, tag, finished_ttl_us, which ('p', 'f' or 'a'). Returns {pending ids, finished ids}.
IDS = (
    COMMON
    + r"""
local p, tag, which = ARGV[1], ARGV[2], ARGV[4]
expire(p, now_us(), tonumber(ARGV[3]))
local pend, fin = {}, {}
if which ~= 'f' then pend = redis.call('ZRANGE', p .. ':pending:' .. tag, 0, -1) end
if which ~= 'p' then fin = redis.call('ZRANGE', p .. ':finished:' .. tag, 0, -1) end
return {pend, fin}
"""
)

# ARGV: prefix, limit. Returns {m, job, m, job, ...}: running jobs past their deadline (within
# the grace), for the caller to fail each with a terminal PUT.
OVERDUE = (
    COMMON
    + r"""
local p, limit = ARGV[1], tonumber(ARGV[2])
local now = now_us()
local due = redis.call('ZRANGEBYSCORE', p .. ':all:pending', now - OVERDUE_GRACE_US, now, 'LIMIT', 0, limit)
local out = {}
for _, m in ipairs(due) do
  local v = redis.call('GET', p .. ':run:' .. m)
  if v then
    out[#out + 1] = m
    out[#out + 1] = v
  end
end
return out
"""
)

# ARGV: prefix, finished_ttl_us.
PENDING_COUNT = (
    COMMON
    + r"""
expire(ARGV[1], now_us(), tonumber(ARGV[2]))
return redis.call('ZCARD', ARGV[1] .. ':all:pending')
"""
)

# ARGV: prefix, replica, lease ttl ms, holder (who holds it, for people reading Redis).
# Renews the replica's lease; returns 1 if it was still held, else 0 after taking it afresh and
# registering the replica again (a new replica, or one whose lease had lapsed).
RENEW = r"""
local p, replica, ttl, holder = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local lease = p .. ':lease:' .. replica
if redis.call('SET', lease, holder, 'PX', ttl, 'XX') then return 1 end
redis.call('SET', lease, holder, 'PX', ttl)
redis.call('SADD', p .. ':replicas', replica)
return 0
"""

# ARGV: prefix, replica. A clean stop: the lease goes; the replica leaves the registry unless
# jobs are still its own (left running for a rerun), which a survivor then takes over at once.
# Returns the number of jobs left.
RETIRE = r"""
local p, replica = ARGV[1], ARGV[2]
redis.call('DEL', p .. ':lease:' .. replica)
local left = redis.call('SCARD', p .. ':running:' .. replica)
if left == 0 then redis.call('SREM', p .. ':replicas', replica) end
return left
"""

# ARGV: prefix, taker, finished_ttl_us. Takes over every registered replica (but the taker)
# whose lease has expired: its running jobs become the taker's (running set and owner), and
# it leaves the registry, so exactly one taker gets each job. Returns a flat list of
# (replica, job, request or '') for the jobs still running.
TAKE_OVER = (
    COMMON
    + r"""
local p, me = ARGV[1], ARGV[2]
expire(p, now_us(), tonumber(ARGV[3]))
local registry = p .. ':replicas'
local mine = p .. ':running:' .. me
local out = {}
for _, r in ipairs(redis.call('SMEMBERS', registry)) do
  if r ~= me and redis.call('EXISTS', p .. ':lease:' .. r) == 0 then
    local theirs = p .. ':running:' .. r
    for _, m in ipairs(redis.call('SMEMBERS', theirs)) do
      local meta = p .. ':meta:' .. m
      local run = p .. ':run:' .. m
      local job = redis.call('GET', run)
      if job then
        redis.call('HSET', meta, 'r', me)
        local ttl = redis.call('PTTL', run)
        if ttl > 0 then redis.call('PEXPIRE', meta, ttl) end
        redis.call('SADD', mine, m)
        out[#out + 1] = r
        out[#out + 1] = job
        out[#out + 1] = redis.call('HGET', meta, 'q') or ''
      else
        redis.call('DEL', meta)
      end
    end
    redis.call('DEL', theirs)
    redis.call('SREM', registry, r)
  end
end
return out
"""
)
