"""A bounded in-memory result store, for the embedded default and for tests."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from ..jobs import Job
from ..store import ResultStore

__all__ = ("MemoryResultStore",)

_Key = tuple[str, str]


class MemoryResultStore(ResultStore):
    """Keeps jobs in process memory.

    Args:
        max_finished: Finished jobs kept; past this the oldest finished job is dropped.
        pending_ttl: Seconds a running job is kept before it is forgotten.
        clock: Monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        *,
        max_finished: int = 100_000,
        pending_ttl: float = 15 * 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_finished < 1:
            raise ValueError("max_finished must be at least 1")
        self._max_finished = max_finished
        self._pending_ttl = pending_ttl
        self._clock = clock
        # Running jobs with their expiry deadline. The TTL is the same for every job, so
        # insertion order is deadline order and expiry only ever looks at the front.
        self._pending: OrderedDict[_Key, tuple[float, Job]] = OrderedDict()
        self._finished: OrderedDict[_Key, Job] = OrderedDict()
        # Per client, the ids it owns in insertion order (a dict used as an ordered set).
        self._by_client: dict[str, dict[str, None]] = {}

    async def put(self, job: Job) -> bool:
        key = (job.client, job.id)
        if key in self._finished:
            return False
        self._by_client.setdefault(job.client, {})[job.id] = None
        if job.pending:
            self._pending[key] = (self._clock() + self._pending_ttl, job)
            self._pending.move_to_end(key)
            return True
        self._pending.pop(key, None)
        self._finished[key] = job
        while len(self._finished) > self._max_finished:
            old_key, _ = self._finished.popitem(last=False)
            self._forget(old_key)
        return True

    async def get(self, client: str, ids: Sequence[str]) -> list[Job]:
        self._expire()
        found: list[Job] = []
        seen: set[str] = set()
        for job_id in ids:
            if job_id in seen:
                continue
            seen.add(job_id)
            key = (client, job_id)
            job = self._finished.get(key)
            if job is None and key in self._pending:
                job = self._pending[key][1]
            if job is not None:
                found.append(job)
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
        now = self._clock()
        while self._pending:
            key, (deadline, _) = next(iter(self._pending.items()))
            if deadline > now:
                return
            del self._pending[key]
            self._forget(key)

    def _forget(self, key: _Key) -> None:
        client, job_id = key
        owned = self._by_client.get(client)
        if owned is None:
            return
        owned.pop(job_id, None)
        if not owned:
            del self._by_client[client]
