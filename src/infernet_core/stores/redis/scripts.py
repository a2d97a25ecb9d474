"""The Lua scripts behind every Redis store operation and the stream heartbeat.

Each script is atomic and takes one round trip. Time is Redis's own clock (``TIME``).
"""

from __future__ import annotations

__all__ = ("COMMON", "FORGET_CONSUMERS", "GET", "HEARTBEAT", "IDS", "PENDING_COUNT", "PUT")

COMMON = r"""
local function split(m)
  local colon = string.find(m, ':', 1, true)
  local n = tonumber(string.sub(m, 1, colon - 1))
  return string.sub(m, 1, colon + n), string.sub(m, colon + n + 2)
end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function forget_finished(p, m)
  local tag, id = split(m)
  redis.call('ZREM', p .. ':finished:' .. tag, id)
  redis.call('DEL', p .. ':done:' .. m)
end

local function expire(p, now, fttl)
  local allp = p .. ':all:pending'
  local gone = redis.call('ZRANGEBYSCORE', allp, '-inf', now)
  if #gone > 0 then
    for _, m in ipairs(gone) do
      local tag, id = split(m)
      redis.call('ZREM', p .. ':pending:' .. tag, id)
      redis.call('DEL', p .. ':run:' .. m)
    end
    redis.call('ZREMRANGEBYSCORE', allp, '-inf', now)
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

# ARGV: prefix, tag, id, job, pending ('1'/'0'), pending_ttl_us, finished_ttl_us (0: none),
# max_finished (0: none), key ttl slack ms. Returns 1 if stored, 0 if a finished job held the key.
PUT = (
    COMMON
    + r"""
local p, tag, id, blob = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local pending = ARGV[5] == '1'
local pttl, fttl, maxf, slack = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local m = tag .. '\n' .. id
local now = now_us()
expire(p, now, fttl)
local done = p .. ':done:' .. m
if redis.call('EXISTS', done) == 1 then return 0 end
local pz = p .. ':pending:' .. tag
local seq = redis.call('ZSCORE', pz, id)
if not seq then seq = redis.call('INCR', p .. ':seq') end
if pending then
  redis.call('SET', p .. ':run:' .. m, blob, 'PX', math.ceil(pttl / 1000) + slack)
  redis.call('ZADD', pz, seq, id)
  redis.call('ZADD', p .. ':all:pending', now + pttl, m)
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

# ARGV: prefix, finished_ttl_us.
PENDING_COUNT = (
    COMMON
    + r"""
expire(ARGV[1], now_us(), tonumber(ARGV[2]))
return redis.call('ZCARD', ARGV[1] .. ':all:pending')
"""
)

# KEYS: stream. ARGV: group, consumer, entry id... Resets the idle time of those entries this
# consumer still owns (never taking back one that another consumer claimed); returns them.
# JUSTID: the delivery count is left alone.
HEARTBEAT = r"""
local mine = {}
local claim = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
for i = 3, #ARGV do
  local e = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #e > 0 then
    mine[#mine + 1] = ARGV[i]
    claim[#claim + 1] = ARGV[i]
  end
end
if #mine > 0 then
  claim[#claim + 1] = 'JUSTID'
  redis.call(unpack(claim))
end
return mine
"""

# KEYS: stream. ARGV: group, idle ms, own consumer name. Deletes other consumers with nothing
# pending that have been silent for that long (dead replicas); atomic, so no entry is
# delivered to one in between.
FORGET_CONSUMERS = r"""
local gone = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] ~= ARGV[3] and tonumber(f['pending']) == 0 and tonumber(f['idle']) >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    gone[#gone + 1] = f['name']
  end
end
return gone
"""
