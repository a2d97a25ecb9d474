"""Replicas on one Redis: each runs the jobs it accepts, holds a lease, and recovers the jobs
of replicas whose lease expired (see the package notes)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import redis
from anyio.abc import TaskGroup
from redis import exceptions as redis_errors
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ...dispatch import Dispatcher, Spawn
from ...errors import NodeNotRunning, StoreUnavailable
from ...jobs import Job
from ...models import JobRequest
from . import scripts
from ._common import decode_job, decode_request, text

if TYPE_CHECKING:
    from .backend import RedisBackend

__all__ = ("Lease", "RedisLeaseDispatcher")

log = logging.getLogger("infernet_core.stores.redis")


class Lease:
    """A replica's lease, ``{prefix}:lease:{replica}``, renewed every ``ttl / 5`` seconds by a
    thread of its own over a synchronous Redis connection of its own, so that a busy event
    loop (or an exhausted connection pool) cannot delay a renewal.

    Args:
        url: The Redis URL.
        prefix: The key prefix.
        replica: The replica's id.
        ttl: Seconds the lease lasts unless renewed.

    Attributes:
        renewals: Renewals that found the lease still held.
        lapses: Renewals that found it gone (expired, or Redis lost its data) and took it
            afresh: the replica's running jobs may have been taken over meanwhile.
    """

    def __init__(self, url: str, prefix: str, replica: str, ttl: float) -> None:
        self.replica = replica
        self.ttl = ttl
        self.every = ttl / 5
        self.renewals = 0
        self.lapses = 0
        self._prefix = prefix
        self._ttl_ms = max(1, round(ttl * 1000))
        self._holder = f"{socket.gethostname()}:{os.getpid()}"
        timeout = max(0.1, min(2.0, ttl / 5))
        self._client: redis.Redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            socket_keepalive=True,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
        )
        self._renew = self._client.register_script(scripts.RENEW)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def args(self) -> list[str | int]:
        """The arguments of the RENEW script for this lease."""
        return [self._prefix, self.replica, self._ttl_ms, self._holder]

    def start(self) -> None:
        """Start renewing, in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name=f"infernet-lease-{self.replica[:8]}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (blocking until the thread ends) and close the connection.

        The lease itself is left to expire, or deleted by the dispatcher's clean stop.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._client.close()

    def renew(self) -> bool:
        """Renew the lease once; True if it was still held (False: taken afresh)."""
        held = bool(self._renew(args=self.args()))
        if held:
            self.renewals += 1
        else:
            self.lapses += 1
            log.warning(
                "the lease of replica %s had expired (Redis unreachable, or this process stalled, for over %gs,"
                " or Redis lost its data): took it afresh; another replica may have taken over the jobs running"
                " here, which may then run twice",
                self.replica,
                self.ttl,
            )
        return held

    def _run(self) -> None:
        failures = 0
        due = time.monotonic() + self.every
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due = time.monotonic() + self.every
            try:
                self.renew()
            except (redis_errors.RedisError, OSError) as exc:
                failures += 1
                if failures == 1:
                    log.warning("lease of replica %s: cannot renew it in Redis: %s", self.replica, exc)
                continue
            except Exception:  # never let the thread die: the lease would lapse
                failures += 1
                log.exception("lease of replica %s: renewal failed", self.replica)
                continue
            if failures:
                log.info("lease of replica %s: renewed again", self.replica)
            failures = 0


class RedisLeaseDispatcher(Dispatcher):
    """Runs each job on the replica that accepted it, at once; recovers dead replicas' jobs.

    On start the replica gets a new id, takes its lease and joins the registry; a thread
    renews the lease (:class:`Lease`). The store records every running job it puts as this
    replica's, in the same script. Every ``recover_every`` seconds the replica takes over the
    running jobs of every replica whose lease has expired (one atomic script, so one taker per
    job) and hands them to the node as interrupted: failed with "node stopped before the job
    finished", or run again with ``rerun_interrupted``. A clean stop deletes the lease once
    the node's jobs have ended; jobs it left running (for a rerun) are taken over at once.

    Args:
        backend: The Redis connection and store to use.
        claim_idle: Seconds the lease lasts without renewal. A replica that is stalled, or
            cut off from Redis, for longer may have its jobs taken over (and, with
            ``rerun_interrupted``, run twice).

    Attributes:
        replica: This replica's id while started.
        taken_over: Jobs this replica has taken over from others.
    """

    def __init__(self, backend: RedisBackend, *, claim_idle: float = 30.0) -> None:
        if claim_idle <= 0:
            raise ValueError("claim_idle must be positive")
        self._backend = backend
        self._redis = backend.redis
        self.claim_idle = claim_idle
        self.recover_every = max(0.05, min(5.0, claim_idle / 4))
        """Seconds between two looks for expired leases."""
        self.replica: str | None = None
        self.lease: Lease | None = None
        self.taken_over = 0
        retention = backend.retention
        self._finished_ttl_us = round(retention.finished_ttl * 1_000_000) if retention.finished_ttl else 0
        self._prefix = backend.prefix
        self._renew = self._redis.register_script(scripts.RENEW)
        self._retire = self._redis.register_script(scripts.RETIRE)
        self._take_over = self._redis.register_script(scripts.TAKE_OVER)
        self._spawn: Spawn | None = None

    # -- Dispatcher ------------------------------------------------------------------------

    async def start(self, task_group: TaskGroup, spawn: Spawn) -> None:
        self._backend._use(self)
        replica = uuid.uuid4().hex
        lease = Lease(self._backend.url, self._prefix, replica, self.claim_idle)
        try:
            with self._backend.errors("register this replica"):
                await self._renew(args=lease.args())
        except BaseException:
            lease.stop()  # never started: this only closes its (unused) connection pool
            raise
        self.replica, self.lease, self._spawn = replica, lease, spawn
        self._backend.replica = replica
        lease.start()
        task_group.start_soon(self._recover_forever)
        log.info("replica %s holds its lease in Redis at %s (%gs)", replica, self._backend.where, self.claim_idle)

    async def dispatch(self, job: Job, request: JobRequest) -> None:
        if self._spawn is None:
            raise RuntimeError("dispatcher not started")
        self._spawn(job, request, False)

    async def aclose(self) -> None:
        # The node has ended its jobs (and cancelled the recovery loop) before this.
        self._spawn = None
        lease, self.lease = self.lease, None
        replica, self.replica = self.replica, None
        with anyio.CancelScope(shield=True):
            if lease is not None:
                await anyio.to_thread.run_sync(lease.stop)
            if replica is not None:
                self._backend.replica = None
                try:
                    with self._backend.errors("delete this replica's lease"):
                        left = int(await self._retire(args=[self._prefix, replica]))
                except StoreUnavailable as exc:
                    log.warning("replica %s: %s; its lease expires by itself", replica, exc.message)
                else:
                    if left:
                        log.info("replica %s stopped with %d jobs left for another replica to take over", replica, left)
            await self._backend._release(self)

    # -- recovery --------------------------------------------------------------------------

    async def _recover_forever(self) -> None:
        """Recover now and every ``recover_every`` seconds; a failure is logged, never fatal."""
        failures = 0
        while self._spawn is not None:
            try:
                await self.recover()
            except StoreUnavailable as exc:
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "recovery of expired replicas' jobs: %s", exc.message)
            except Exception:
                failures += 1
                if failures == 1 or failures % 50 == 0:
                    log.exception("recovery of expired replicas' jobs failed (attempt %d)", failures)
            else:
                if failures:
                    log.info("recovery of expired replicas' jobs: Redis is back")
                failures = 0
            await anyio.sleep(self.recover_every)

    async def recover(self) -> int:
        """Take over the running jobs of every replica whose lease has expired, once.

        Returns:
            How many jobs were taken over (and handed to the node).

        Raises:
            StoreUnavailable: Redis cannot be reached.
        """
        spawn, replica = self._spawn, self.replica
        if spawn is None or replica is None:
            return 0
        with self._backend.errors("take over expired replicas' jobs"):
            taken: list[Any] = await self._take_over(args=[self._prefix, replica, self._finished_ttl_us])
        handed = 0
        for n in range(0, len(taken), 3):
            dead, blob, raw_request = taken[n : n + 3]
            try:
                job = decode_job(blob)
            except msgspec.DecodeError as exc:
                # Left as this replica's; it ends when its pending time-to-live runs out.
                log.error("took over an unreadable job record from replica %s: %s", text(dead), exc)
                continue
            request: JobRequest | None = None
            if raw_request:
                try:
                    request = decode_request(raw_request)
                except msgspec.DecodeError as exc:
                    log.error("job %s: unreadable request, so it cannot run again: %s", job.id, exc)
            try:
                spawn(job, request, True)
            except NodeNotRunning:
                # Stopping: what is left is this replica's now, and is taken over from it in turn.
                break
            handed += 1
            self.taken_over += 1
            log.warning(
                "took over job %s of client %r from replica %s, whose lease expired", job.id, job.client, text(dead)
            )
        return handed
