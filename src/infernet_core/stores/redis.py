"""Redis: a result store and a job queue shared by every replica of a node.

Several ``infernet-node`` processes pointed at one Redis behave as one node: a job accepted
by any replica is stored here and put on a Redis stream that every replica reads through one
consumer group, so any replica may run it, and a surviving replica takes over the jobs of one
that died.

Store layout
------------
Every key starts with the configured prefix ``P``. A client is written as its *tag*,
``{byte length}:{client}``, so that no client string (an IPv6 address full of colons, say)
can run into the id that follows it; keys are only ever built, never split::

    P:run:{tag}\\n{id}     the running job (msgspec JSON), expiring a little after pending_ttl
    P:done:{tag}\\n{id}    the finished job, expiring a little after finished_ttl (if set)
    P:pending:{tag}       zset: the client's running ids, scored by first-put order
    P:finished:{tag}      zset: the client's finished ids, scored by first-put order
    P:all:pending         zset: every running ``{tag}\\n{id}``, scored by its deadline (µs)
    P:all:finished        zset: every finished ``{tag}\\n{id}``, scored by finish time (µs)
    P:seq, P:clock        the first-put counter; the last finish time handed out

Each operation is one Lua script, so it is atomic (``put`` over a finished job changes
nothing) and takes one round trip. Time is Redis's own clock (``TIME``), so replicas need not
agree on theirs. Every script first drops what has expired: the members of the two global
zsets whose deadline has passed (found by score, so the work is proportional to what expired,
never a scan of every job) with their keys and per-client entries. The key TTLs are only a
backstop for records that nothing touches any more. ``max_finished`` is enforced on every
finished put by popping the oldest members of ``P:all:finished``.

Queue
-----
Accepted jobs go on the stream ``P:jobs``, read through the consumer group ``P:nodes``; each
process is its own consumer. Delivery is *at least once*: an entry is acknowledged (and
deleted) only once its job's result is stored. While a replica runs a job it refreshes the
entry's idle time (a heartbeat every ``claim_idle / 3`` seconds), and every ``claim_idle / 2``
seconds each replica claims the entries that have been idle for ``claim_idle`` seconds: those of
a replica that died, or of this process's own earlier run. A claimed job is handed to the node
as *interrupted*: it fails it with "node stopped before the job finished", or runs it again
when ``rerun_interrupted`` is set; a job whose result was stored before its replica died is
just acknowledged. A process takes at most ``MAX_IN_FLIGHT`` jobs at once; one that is stopping
puts the entries it read but did not start back on the stream as new ones, and a consumer
that has been silent for long with nothing pending (a dead replica) is deleted.

The scripts compute the keys they touch, so this needs one Redis server (with replicas or
Sentinel if wanted), not Redis Cluster.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import msgspec
from anyio.abc import TaskGroup
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ..dispatch import AfterRun, Dispatcher, Spawn
from ..errors import ConfigError, NodeNotRunning, StoreUnavailable
from ..jobs import Job
from ..models import JobRequest
from ..store import ResultStore, Retention

__all__ = ("RedisBackend", "RedisResultStore", "RedisStreamDispatcher")

log = logging.getLogger("infernet_core.stores.redis")

MAX_IN_FLIGHT = 256
"""Jobs one process takes from the stream and runs at once, at most."""

_READ_BLOCK_MS = 1000
_KEY_TTL_SLACK_MS = 1000
_MAX_BACKOFF = 2.0

_encode = msgspec.json.Encoder().encode
_decode_job = msgspec.json.Decoder(Job).decode
_decode_request = msgspec.json.Decoder(JobRequest).decode


# -- Lua ------------------------------------------------------------------------------------

_LUA_COMMON = r"""
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
_LUA_PUT = (
    _LUA_COMMON
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
_LUA_GET = (
    _LUA_COMMON
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
_LUA_IDS = (
    _LUA_COMMON
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
_LUA_PENDING_COUNT = (
    _LUA_COMMON
    + r"""
expire(ARGV[1], now_us(), tonumber(ARGV[2]))
return redis.call('ZCARD', ARGV[1] .. ':all:pending')
"""
)

# KEYS: stream. ARGV: group, consumer, entry id... Resets the idle time of those entries this
# consumer still owns (never taking back one that another consumer claimed); returns them.
# JUSTID: the delivery count is left alone.
_LUA_HEARTBEAT = r"""
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
_LUA_FORGET_CONSUMERS = r"""
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


# -- helpers ---------------------------------------------------------------------------------


def _safe_url(url: str) -> str:
    """``url`` without its user name and password, for messages."""
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<unparsable url>"


def _client_tag(client: str) -> bytes:
    raw = client.encode("utf-8", "surrogatepass")
    return str(len(raw)).encode() + b":" + raw


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _is_nogroup(exc: BaseException) -> bool:
    return isinstance(exc, redis_errors.ResponseError) and str(exc).startswith("NOGROUP")


class RedisBackend:
    """One Redis connection pool, with the store and dispatchers that share it.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]`` (or ``rediss://``, ``unix://``).
        prefix: Prefix of every key, so several clusters can share one server.
        retention: How long the store keeps jobs.

    Raises:
        ConfigError: The URL cannot be parsed.
    """

    def __init__(self, url: str, *, prefix: str = "infernet", retention: Retention | None = None) -> None:
        self.url = url
        self.where = _safe_url(url)
        self.prefix = prefix
        self.retention = retention if retention is not None else Retention()
        try:
            # Short timeouts and one quick retry (to replace a connection that a Redis restart
            # broke): a Redis that is down fails fast into StoreUnavailable, never a hang.
            self.redis: Redis = Redis.from_url(
                url,
                socket_connect_timeout=2.0,
                socket_timeout=5.0,  # above the stream reader's 1 s BLOCK
                socket_keepalive=True,
                health_check_interval=10,
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
            )
        except ValueError as exc:
            raise ConfigError(f"config: store.url: invalid Redis URL {self.where!r}: {exc}") from None
        self.store = RedisResultStore(self)
        self._users: set[object] = set()
        self._closed = False

    def dispatcher(self, claim_idle: float = 30.0) -> RedisStreamDispatcher:
        """A dispatcher over this backend's stream.

        Args:
            claim_idle: Seconds without a heartbeat after which another replica takes over a job.
        """
        return RedisStreamDispatcher(self, claim_idle=claim_idle)

    def _use(self, user: object) -> None:
        self._users.add(user)
        self._closed = False

    async def _release(self, user: object) -> None:
        """Close the connection pool once neither the store nor a dispatcher still uses it."""
        self._users.discard(user)
        if self._users or self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            await self.redis.aclose()

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Turn Redis errors into :class:`StoreUnavailable` with a message saying what failed."""
        try:
            yield
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"Result store unavailable: cannot reach Redis at {self.where}: {exc}") from exc
        except redis_errors.RedisError as exc:
            raise StoreUnavailable(f"Result store unavailable: Redis at {self.where} failed to {doing}: {exc}") from exc


class RedisResultStore(ResultStore):
    """The result store in Redis, shared by every replica (see the module notes).

    Make one with :class:`RedisBackend`; its ``store`` attribute is one.
    """

    def __init__(self, backend: RedisBackend) -> None:
        self._backend = backend
        self._redis = backend.redis
        self._prefix = backend.prefix.encode()
        retention = backend.retention
        self._pending_ttl_us = max(1, round(retention.pending_ttl * 1_000_000))
        self._finished_ttl_us = round(retention.finished_ttl * 1_000_000) if retention.finished_ttl else 0
        self._max_finished = retention.max_finished or 0
        self._put = self._redis.register_script(_LUA_PUT)
        self._get = self._redis.register_script(_LUA_GET)
        self._ids = self._redis.register_script(_LUA_IDS)
        self._count = self._redis.register_script(_LUA_PENDING_COUNT)

    async def open(self) -> None:
        self._backend._use(self)
        try:
            with self._backend.errors("answer a ping"):
                await self._redis.ping()
        except StoreUnavailable:
            await self._backend._release(self)
            raise

    async def put(self, job: Job, request: JobRequest | None = None) -> bool:
        args = [
            self._prefix,
            _client_tag(job.client),
            job.id.encode("utf-8", "surrogatepass"),
            _encode(job),
            b"1" if job.pending else b"0",
            self._pending_ttl_us,
            self._finished_ttl_us,
            self._max_finished,
            _KEY_TTL_SLACK_MS,
        ]
        with self._backend.errors("store a job"):
            return bool(await self._put(args=args))

    async def get(self, client: str, ids: Sequence[str]) -> list[Job]:
        unique = list(dict.fromkeys(ids))
        if not unique:
            return []
        args = [self._prefix, _client_tag(client), self._finished_ttl_us]
        args += [job_id.encode("utf-8", "surrogatepass") for job_id in unique]
        with self._backend.errors("read jobs"):
            blobs = await self._get(args=args)
        jobs: list[Job] = []
        for job_id, blob in zip(unique, blobs, strict=True):
            if blob is None:
                continue
            try:
                jobs.append(_decode_job(blob))
            except msgspec.DecodeError as exc:
                log.error("skipping unreadable record of job %r of client %r: %s", job_id, client, exc)
        return jobs

    async def ids(self, client: str, pending: bool | None = None) -> list[str]:
        which = b"a" if pending is None else b"p" if pending else b"f"
        with self._backend.errors("list jobs"):
            running, finished = await self._ids(args=[self._prefix, _client_tag(client), self._finished_ttl_us, which])
        return [_text(job_id) for job_id in (*running, *finished)]

    async def pending_count(self) -> int:
        with self._backend.errors("count pending jobs"):
            return int(await self._count(args=[self._prefix, self._finished_ttl_us]))

    async def interrupted(self) -> list[tuple[Job, JobRequest | None]]:
        # The job stream hands interrupted jobs to whichever replica claims them.
        return []

    async def aclose(self) -> None:
        await self._backend._release(self)


class RedisStreamDispatcher(Dispatcher):
    """Puts accepted jobs on a Redis stream that every replica reads (see the module notes).

    Args:
        backend: The Redis connection and store to use.
        claim_idle: Seconds an entry may go without a heartbeat before another consumer
            takes it over. Jobs are never taken from a live replica however long they run,
            but a replica cut off from Redis for longer may lose its jobs to another one.
        max_in_flight: Jobs this process runs from the stream at once, at most.
    """

    def __init__(self, backend: RedisBackend, *, claim_idle: float = 30.0, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        if claim_idle <= 0:
            raise ValueError("claim_idle must be positive")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._backend = backend
        self._redis = backend.redis
        self.claim_idle = claim_idle
        self.max_in_flight = max_in_flight
        self.stream = f"{backend.prefix}:jobs"
        self.group = f"{backend.prefix}:nodes"
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.forget_idle = max(60.0, 10 * claim_idle)
        """Seconds after which a silent consumer with nothing pending (a dead replica) is deleted."""
        self._heartbeat_script = self._redis.register_script(_LUA_HEARTBEAT)
        self._forget_script = self._redis.register_script(_LUA_FORGET_CONSUMERS)
        self._spawn: Spawn | None = None
        self._in_flight: set[bytes] = set()
        self._room: anyio.Event | None = None
        self._stopping = False

    # -- Dispatcher ------------------------------------------------------------------------

    async def start(self, task_group: TaskGroup, spawn: Spawn) -> None:
        self._backend._use(self)
        self._spawn = spawn
        self._stopping = False
        with self._backend.errors("create the job stream's consumer group"):
            await self._ensure_group()
        task_group.start_soon(self._forever, "reader", self._read_once, 0.0)
        task_group.start_soon(
            partial(self._forever, while_stopping=True), "heartbeat", self._heartbeat_once, self.claim_idle / 3
        )
        task_group.start_soon(self._forever, "reclaimer", self._reclaim_once, self.claim_idle / 2)
        log.info("reading jobs from Redis stream %s as %s", self.stream, self.consumer)

    async def dispatch(self, job: Job, request: JobRequest) -> None:
        with self._backend.errors("queue a job"):
            await self._redis.xadd(self.stream, {b"job": _encode(job), b"request": _encode(request)})

    async def aclose(self) -> None:
        # The loops run in the node's task group, which the node cancels before this.
        self._spawn = None
        await self._backend._release(self)

    # -- loops -----------------------------------------------------------------------------

    async def _forever(
        self, name: str, step: Callable[[], Awaitable[None]], interval: float, *, while_stopping: bool = False
    ) -> None:
        """Run ``step`` every ``interval`` seconds until cancelled (or, unless ``while_stopping``,
        until the node stops taking jobs); a failure is logged and retried with backoff, and
        never ends the loop (nor the node)."""
        failures = 0
        while while_stopping or not self._stopping:
            try:
                await step()
            except (StoreUnavailable, redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "job stream %s: Redis at %s is unreachable: %s", name, self._backend.where, exc)
            except Exception:
                failures += 1
                if failures == 1 or failures % 50 == 0:
                    log.exception("job stream %s failed (attempt %d); retrying", name, failures)
            else:
                if failures:
                    log.info("job stream %s: Redis is back", name)
                failures = 0
                if interval:
                    await anyio.sleep(interval)
                continue
            await anyio.sleep(min(0.05 * 2**failures, _MAX_BACKOFF))

    async def _ensure_group(self, *, lost: bool = False) -> None:
        """Create the consumer group (and the stream); ``lost``: it existed but is gone."""
        try:
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis_errors.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise
        else:
            if lost:
                log.warning("job stream %s had lost its consumer group (Redis lost its data?): made again", self.stream)

    def _free(self) -> int:
        return self.max_in_flight - len(self._in_flight)

    async def _read_once(self) -> None:
        if self._free() <= 0:
            self._room = anyio.Event()
            await self._room.wait()
            return
        try:
            response = await self._redis.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=min(self._free(), 64), block=_READ_BLOCK_MS
            )
        except redis_errors.ResponseError as exc:
            if _is_nogroup(exc):  # Redis lost its data (a restart without persistence)
                await self._ensure_group(lost=True)
                return
            raise
        streams = response.items() if isinstance(response, dict) else (response or ())
        for _stream, entries in streams:
            for entry_id, fields in entries:
                await self._take(entry_id, fields, interrupted=False)

    async def _heartbeat_once(self) -> None:
        if not self._in_flight:
            return
        ids = sorted(self._in_flight)
        try:
            kept = await self._heartbeat_script(keys=[self.stream], args=[self.group, self.consumer, *ids])
        except redis_errors.ResponseError as exc:
            if _is_nogroup(exc):
                return  # Redis lost its data; nothing to keep alive
            raise
        lost = set(ids) - set(kept)
        for entry_id in lost & self._in_flight:
            log.warning(
                "job stream entry %s was taken over by another replica while running here; it may run twice",
                _text(entry_id),
            )

    async def _reclaim_once(self) -> None:
        min_idle = max(1, int(self.claim_idle * 1000))
        start: bytes | str = "0-0"
        while self._free() > 0 and not self._stopping:
            try:
                response = await self._redis.xautoclaim(
                    self.stream, self.group, self.consumer, min_idle, start_id=start, count=min(self._free(), 100)
                )
            except redis_errors.ResponseError as exc:
                if _is_nogroup(exc):
                    await self._ensure_group(lost=True)
                    return
                raise
            next_start, claimed = response[0], response[1]
            for entry_id, fields in claimed:
                if entry_id in self._in_flight:
                    continue  # ours and still running (a late heartbeat): keep running it
                if not fields:  # deleted entry (Redis 6.2 reports it so)
                    await self._ack_quietly(entry_id)
                    continue
                await self._take(entry_id, fields, interrupted=True)
            if _text(next_start) == "0-0":
                break
            start = next_start
        # Forget consumers of dead replicas that have nothing left pending.
        idle_ms = max(1, int(self.forget_idle * 1000))
        gone = await self._forget_script(keys=[self.stream], args=[self.group, idle_ms, self.consumer])
        for name in gone:
            log.info("forgot idle consumer %s of job stream %s", _text(name), self.stream)

    # -- entries ---------------------------------------------------------------------------

    async def _take(self, entry_id: bytes, fields: dict[bytes, bytes], *, interrupted: bool) -> None:
        """Hand one stream entry to the node (or back to the stream if the node is stopping)."""
        try:
            job = _decode_job(fields[b"job"])
            raw_request = fields.get(b"request")
            request = _decode_request(raw_request) if raw_request else None
        except (KeyError, TypeError, msgspec.DecodeError) as exc:
            log.error("dropping unreadable job stream entry %s: %s", _text(entry_id), exc)
            await self._ack_quietly(entry_id)
            return
        interrupted = interrupted or fields.get(b"interrupted") == b"1"
        if interrupted:
            latest = await self._latest(job)
            if latest is None:  # its result was stored before its replica stopped
                await self._ack_quietly(entry_id)
                return
            job = latest
        spawn = self._spawn
        if spawn is None or self._stopping:
            await self._requeue(entry_id, fields, interrupted)
            return
        self._in_flight.add(entry_id)
        try:
            spawn(job, request, interrupted, self._after(entry_id))
        except NodeNotRunning:
            # The node is stopping: give the entry back for another replica to take at once.
            self._in_flight.discard(entry_id)
            self._stopping = True
            await self._requeue(entry_id, fields, interrupted)
        except BaseException:
            self._in_flight.discard(entry_id)
            raise
        else:
            if interrupted:
                log.warning("took over job %s of client %r from a replica that stopped", job.id, job.client)

    async def _latest(self, job: Job) -> Job | None:
        """The stored record of an interrupted job, or ``None`` if its result is already stored."""
        try:
            stored = await self._backend.store.get(job.client, [job.id])
        except StoreUnavailable:
            return job
        if stored and not stored[0].pending:
            return None
        return stored[0] if stored else job

    def _after(self, entry_id: bytes) -> AfterRun:
        async def after() -> None:
            try:
                await self._ack_quietly(entry_id)
            finally:
                self._release_slot(entry_id)

        return after

    async def _ack_quietly(self, entry_id: bytes) -> None:
        try:
            await self._ack(entry_id)
        except redis_errors.RedisError as exc:
            # Left pending: a replica takes it over after claim_idle, finds the job's result
            # stored and acknowledges it then.
            log.warning("could not acknowledge job stream entry %s: %s", _text(entry_id), exc)

    def _release_slot(self, entry_id: bytes) -> None:
        self._in_flight.discard(entry_id)
        if self._room is not None:
            self._room.set()
            self._room = None

    async def _ack(self, entry_id: bytes) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, entry_id)
            pipe.xdel(self.stream, entry_id)
            await pipe.execute()

    async def _requeue(self, entry_id: bytes, fields: dict[bytes, bytes], interrupted: bool) -> None:
        """Put an entry back as a new one (atomically), for any replica to take."""
        fresh: dict[Any, Any] = dict(fields)
        if interrupted:
            fresh[b"interrupted"] = b"1"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xadd(self.stream, fresh)
                pipe.xack(self.stream, self.group, entry_id)
                pipe.xdel(self.stream, entry_id)
                await pipe.execute()
        except redis_errors.RedisError as exc:
            log.warning(
                "could not give job stream entry %s back (another replica takes it after claim_idle): %s",
                _text(entry_id),
                exc,
            )
