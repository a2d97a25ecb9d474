"""A bounded in-memory result store, for the embedded default and for tests."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from ..jobs import Job
from ..models import JobRequest
from ..store import OVERDUE_GRACE, ResultStore, Retention, expired

__all__ = ("DEFAULT_MAX_FINISHED", "MemoryResultStore")

_Key = tuple[str, str]

DEFAULT_MAX_FINISHED = 100_000
"""The memory store's cap on finished jobs when the retention names none."""


class MemoryResultStore(ResultStore):
    """Keeps jobs in process memory.

    Args:
        retention: How long jobs are kept; ``max_finished`` defaults to 100,000 here so
            that memory stays bounded.
        clock: Monotonic clock (injectable for tests).
    """

    def __init__(self, retention: Retention | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        retention = retention or Retention()
        self._pending_ttl = retention.pending_ttl
        self._finished_ttl = retention.finished_ttl
        self._max_finished = retention.max_finished or DEFAULT_MAX_FINISHED
        self._clock = clock
        # Jobs with their expiry deadline (inf = never). Each TTL is the same for every job of
        # its kind, so insertion order is deadline order and expiry only looks at the front.
        self._pending: OrderedDict[_Key, tuple[float, Job]] = OrderedDict()
        self._finished: OrderedDict[_Key, tuple[float, Job]] = OrderedDict()
        # Per client, the ids it owns in insertion order (a dict used as an ordered set).
        self._by_client: dict[str, dict[str, None]] = {}

    async def put(self, job: Job, request: JobRequest | None = None) -> bool:
        self._expire()  # an expired job is gone: a put over it is a new job, not a refused one
        key = (job.client, job.id)
        if key in self._finished:
            return False
        self._by_client.setdefault(job.client, {})[job.id] = None
        now = self._clock()
        if job.pending:
            self._pending[key] = (now + self._pending_ttl, job)
            self._pending.move_to_end(key)
            return True
        self._finish(key, job, now)
        return True

    async def expire_running(self, limit: int = 1000) -> int:
        self._expire()
        now = self._clock()
        failed = 0
        pending = self._pending
        while pending and failed < limit:
            key, (deadline, job) = next(iter(pending.items()))
            if deadline > now:
                break
            self._finish(key, expired(job, time.time()), now)
            failed += 1
        return failed

    def _finish(self, key: _Key, job: Job, now: float) -> None:
        self._pending.pop(key, None)
        deadline = now + self._finished_ttl if self._finished_ttl is not None else float("inf")
        self._finished[key] = (deadline, job)
        while len(self._finished) > self._max_finished:
            old_key, _ = self._finished.popitem(last=False)
            self._forget(old_key)

    async def get(self, client: str, ids: Sequence[str]) -> list[Job]:
        self._expire()
        found: list[Job] = []
        seen: set[str] = set()
        for job_id in ids:
            if job_id in seen:
                continue
            seen.add(job_id)
            key = (client, job_id)
            entry = self._finished.get(key) or self._pending.get(key)
            if entry is not None:
                found.append(entry[1])
        return found

    async def ids(self, client: str, pending: bool | None = None) -> list[str]:
        self._expire()
        owned = self._by_client.get(client, {})
        running = [job_id for job_id in owned if (client, job_id) in self._pending]
        if pending is True:
            return running
        finished = [job_id for job_id in owned if (client, job_id) in self._finished]
        return finished if pending is False else running + finished

    async def pending_count(self) -> int:
        self._expire()
        return len(self._pending)

    def __len__(self) -> int:
        return len(self._pending) + len(self._finished)

    def _expire(self) -> None:
        """Drop finished jobs past their deadline, and running ones that no sweep failed
        within the grace after theirs."""
        now = self._clock()
        for entries, grace in ((self._pending, OVERDUE_GRACE), (self._finished, 0.0)):
            while entries:
                key, (deadline, _) = next(iter(entries.items()))
                if deadline + grace > now:
                    break
                del entries[key]
                self._forget(key)

    def _forget(self, key: _Key) -> None:
        client, job_id = key
        owned = self._by_client.get(client)
        if owned is None:
            return
        owned.pop(job_id, None)
        if not owned:
            del self._by_client[client]
