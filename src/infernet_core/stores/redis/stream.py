"""The job queue on a Redis stream, read by every replica through one consumer group."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from anyio.abc import TaskGroup
from redis import exceptions as redis_errors

from ...dispatch import AfterRun, Dispatcher, Spawn
from ...errors import NodeNotRunning, StoreUnavailable
from ...jobs import Job
from ...models import JobRequest
from . import scripts
from ._common import MAX_BACKOFF, decode_job, decode_request, encode, is_nogroup, text

if TYPE_CHECKING:
    from .backend import RedisBackend

__all__ = ("MAX_IN_FLIGHT", "RedisStreamDispatcher")

log = logging.getLogger("infernet_core.stores.redis")

MAX_IN_FLIGHT = 256
"""Jobs one process takes from the stream and runs at once, at most."""

_READ_BLOCK_MS = 1000


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
        self._heartbeat_script = self._redis.register_script(scripts.HEARTBEAT)
        self._forget_script = self._redis.register_script(scripts.FORGET_CONSUMERS)
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
            await self._redis.xadd(self.stream, {b"job": encode(job), b"request": encode(request)})

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
            await anyio.sleep(min(0.05 * 2**failures, MAX_BACKOFF))

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
            # redis-py types the reply as any Redis reply; XREADGROUP's is a list (RESP2) or a
            # dict (RESP3) of (stream, [(entry id, fields)]).
            response: Any = await self._redis.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=min(self._free(), 64), block=_READ_BLOCK_MS
            )
        except redis_errors.ResponseError as exc:
            if is_nogroup(exc):  # Redis lost its data (a restart without persistence)
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
            if is_nogroup(exc):
                return  # Redis lost its data; nothing to keep alive
            raise
        lost = set(ids) - set(kept)
        for entry_id in lost & self._in_flight:
            log.warning(
                "job stream entry %s was taken over by another replica while running here; it may run twice",
                text(entry_id),
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
                if is_nogroup(exc):
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
            if text(next_start) == "0-0":
                break
            start = next_start
        # Forget consumers of dead replicas that have nothing left pending.
        idle_ms = max(1, int(self.forget_idle * 1000))
        gone = await self._forget_script(keys=[self.stream], args=[self.group, idle_ms, self.consumer])
        for name in gone:
            log.info("forgot idle consumer %s of job stream %s", text(name), self.stream)

    # -- entries ---------------------------------------------------------------------------

    async def _take(self, entry_id: bytes, fields: dict[bytes, bytes], *, interrupted: bool) -> None:
        """Hand one stream entry to the node (or back to the stream if the node is stopping)."""
        try:
            job = decode_job(fields[b"job"])
            raw_request = fields.get(b"request")
            request = decode_request(raw_request) if raw_request else None
        except (KeyError, TypeError, msgspec.DecodeError) as exc:
            log.error("dropping unreadable job stream entry %s: %s", text(entry_id), exc)
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
            log.warning("could not acknowledge job stream entry %s: %s", text(entry_id), exc)

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
                text(entry_id),
                exc,
            )
