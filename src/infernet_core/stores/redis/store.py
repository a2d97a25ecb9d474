"""The result store in Redis (key layout in the package notes)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from ...errors import StoreUnavailable
from ...jobs import Job
from ...models import JobRequest
from ...ratelimit import RateLimit
from ...store import ResultStore, expired
from . import scripts
from ._common import client_tag, decode_job, encode, text
from .ratelimit import RedisRateLimiter

if TYPE_CHECKING:
    from .backend import RedisBackend

__all__ = ("RedisResultStore",)

log = logging.getLogger("infernet_core.stores.redis")

_KEY_TTL_SLACK_MS = 1000


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
        # Puts made in one loop turn (a batch's slice, concurrent requests) share a round trip.
        self._put = self._redis.register_script(scripts.PUT)
        self._get = self._redis.register_script(scripts.GET)
        self._ids = self._redis.register_script(scripts.IDS)
        self._count = self._redis.register_script(scripts.PENDING_COUNT)
        self._overdue = self._redis.register_script(scripts.OVERDUE)

    async def open(self) -> None:
        self._backend._use(self)
        try:
            with self._backend.errors("answer a ping"):
                await self._redis.ping()
        except StoreUnavailable:
            await self._backend._release(self)
            raise

    async def put(self, job: Job, request: JobRequest | None = None) -> bool:
        # With a lease dispatcher running, a new running job becomes this replica's (with its
        # request, for a rerun elsewhere) in the same script; without one, nobody's.
        replica = self._backend.replica
        owned = replica is not None and job.pending
        args: list[bytes | str | int] = [
            self._prefix,
            client_tag(job.client),
            job.id.encode("utf-8", "surrogatepass"),
            encode(job),
            b"1" if job.pending else b"0",
            self._pending_ttl_us,
            self._finished_ttl_us,
            self._max_finished,
            _KEY_TTL_SLACK_MS,
            replica if replica is not None else b"",
            encode(request) if owned and request is not None else b"",
        ]
        with self._backend.errors("store a job"):
            return bool(await self._backend.pipeliner.call(self._put, args))

    async def get(self, client: str, ids: Sequence[str]) -> list[Job]:
        unique = list(dict.fromkeys(ids))
        if not unique:
            return []
        args: list[bytes | str | int] = [self._prefix, client_tag(client), self._finished_ttl_us]
        args += [job_id.encode("utf-8", "surrogatepass") for job_id in unique]
        with self._backend.errors("read jobs"):
            blobs = await self._get(args=args)
        jobs: list[Job] = []
        for job_id, blob in zip(unique, blobs, strict=True):
            if blob is None:
                continue
            try:
                jobs.append(decode_job(blob))
            except msgspec.DecodeError as exc:
                log.error("skipping unreadable record of job %r of client %r: %s", job_id, client, exc)
        return jobs

    async def ids(self, client: str, pending: bool | None = None) -> list[str]:
        which = b"a" if pending is None else b"p" if pending else b"f"
        with self._backend.errors("list jobs"):
            running, finished = await self._ids(args=[self._prefix, client_tag(client), self._finished_ttl_us, which])
        return [text(job_id) for job_id in (*running, *finished)]

    async def pending_count(self) -> int:
        with self._backend.errors("count pending jobs"):
            return int(await self._count(args=[self._prefix, self._finished_ttl_us]))

    async def expire_running(self, limit: int = 1000) -> int:
        # Every replica sweeps; where two fail the same job, the second terminal put is refused.
        with self._backend.errors("find expired jobs"):
            found = await self._overdue(args=[self._prefix, limit])
        failed = 0
        for m, blob in zip(found[::2], found[1::2], strict=True):
            try:
                job = decode_job(blob)
            except msgspec.DecodeError as exc:
                log.error("skipping unreadable record of running job %r: %s", text(m), exc)
                continue
            failed += await self.put(expired(job, time.time()))
        return failed

    async def interrupted(self) -> list[tuple[Job, JobRequest | None]]:
        # A replica's interrupted jobs are taken over, once its lease expires, by whichever
        # replica's lease dispatcher gets there first (this one's included, after a restart).
        return []

    def rate_limiter(self, limit: RateLimit) -> RedisRateLimiter:
        """A rate limiter whose buckets live in this store's Redis (shared by every replica)."""
        return RedisRateLimiter(self._backend, limit)

    async def aclose(self) -> None:
        await self._backend.pipeliner.drain()
        await self._backend._release(self)
