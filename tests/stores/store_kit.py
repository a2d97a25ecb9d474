"""Helpers shared by the store tests: job builders, a controllable clock, and the opener of each
store kind ("memory", "sqlite", "redis") used by the fixtures and the state-machine test."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from infernet_core.jobs import ContainerFailed, ContainerSucceeded, Job, JobCompleted, apply, new_job
from infernet_core.models import ContainerError, ContainerOutput, JobRequest
from infernet_core.store import ResultStore, Retention
from infernet_core.stores.memory import MemoryResultStore
from infernet_core.stores.sqlite import SqliteResultStore

__all__ = (
    "KINDS",
    "REDIS_UNIT",
    "FakeClock",
    "OpenedStore",
    "StoreFactory",
    "Timeline",
    "failed",
    "finished",
    "open_store",
    "progressed",
    "request_for",
    "running",
)

KINDS = ("memory", "sqlite", "redis")
"""The store kinds; memory and sqlite take an injected clock, redis uses its own (``TIME``)."""


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


StoreFactory = Callable[..., Awaitable[ResultStore]]
"""``await store_factory(retention=None)``: an open store of the test's kind."""

REDIS_UNIT = 0.2
"""Seconds of real time that one unit of a TTL test lasts on Redis."""


class Timeline:
    """Moves the time a store sees, in units: seconds of the injected fake clock (memory, sqlite),
    or ``REDIS_UNIT`` seconds of real time (Redis's scripts read Redis's own clock)."""

    def __init__(self, kind: str) -> None:
        self.controllable = kind != "redis"
        self.clock: FakeClock | None = FakeClock() if self.controllable else None
        self.unit = 1.0 if self.controllable else REDIS_UNIT

    def seconds(self, units: float) -> float:
        return units * self.unit

    async def advance(self, units: float) -> None:
        if self.clock is not None:
            self.clock.advance(units * self.unit)
        else:
            await anyio.sleep(units * self.unit)


def running(job_id: str, client: str = "c1", containers: Sequence[str] = ("a",)) -> Job:
    return new_job(job_id, client, list(containers), created_at=1.0)


def progressed(job_id: str, client: str = "c1", output: Any = None) -> Job:
    """A running job with one container output so far (progress of a two-container chain)."""
    job = running(job_id, client, ("a", "b"))
    return apply(job, ContainerSucceeded(output=ContainerOutput(container="a", output=output)))


def finished(job_id: str, client: str = "c1", output: Any = None) -> Job:
    job = apply(running(job_id, client), ContainerSucceeded(output=ContainerOutput(container="a", output=output)))
    return apply(job, JobCompleted(), now=2.0)


def failed(job_id: str, client: str = "c1", error: str = "boom") -> Job:
    return apply(running(job_id, client), ContainerFailed(error=ContainerError(container="a", error=error)), now=2.0)


def request_for(n: int, containers: Sequence[str] = ("a",)) -> JobRequest:
    return JobRequest(containers=list(containers), data={"n": n})


@dataclass
class OpenedStore:
    """An open store, with what it takes to close it (and, for sqlite, to reopen it)."""

    kind: str
    store: ResultStore
    retention: Retention
    clock: FakeClock | None
    path: Path | None = None
    _extra: list[Any] = field(default_factory=list)

    async def close(self) -> None:
        if self.kind == "redis":
            backend = self._extra[0]
            with anyio.CancelScope(shield=True):
                # Tests share one server: delete this test's keys (by its unique prefix).
                keys = [key async for key in backend.redis.scan_iter(match=f"{backend.prefix}:*", count=1000)]
                if keys:
                    await backend.redis.delete(*keys)
        await self.store.aclose()

    async def reopen(self) -> None:
        """Close and open again on the same file (sqlite only)."""
        assert self.kind == "sqlite" and self.path is not None
        await self.store.aclose()
        self.store = SqliteResultStore(self.path, self.retention, clock=self.clock or FakeClock())
        await self.store.open()


async def open_store(
    kind: str, retention: Retention, *, clock: FakeClock | None, tmp_dir: Path, redis_url: str | None
) -> OpenedStore:
    """Open a store of ``kind``; memory and sqlite read ``clock``, redis its own."""
    if kind == "memory":
        store: ResultStore = MemoryResultStore(retention, clock=clock or FakeClock())
        await store.open()
        return OpenedStore(kind, store, retention, clock)
    if kind == "sqlite":
        path = tmp_dir / f"store-{uuid.uuid4().hex}.db"
        store = SqliteResultStore(path, retention, clock=clock or FakeClock())
        await store.open()
        return OpenedStore(kind, store, retention, clock, path)
    if kind == "redis":
        from infernet_core.stores.redis import RedisBackend

        assert redis_url is not None
        backend = RedisBackend(redis_url, prefix=f"test-{uuid.uuid4().hex}", retention=retention)
        await backend.store.open()
        return OpenedStore(kind, backend.store, retention, None, None, [backend])
    raise ValueError(f"unknown store kind {kind!r}")
