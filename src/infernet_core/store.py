"""The result store protocol: where jobs live between submission and collection.

Jobs are scoped by client: a client sees only the jobs it created, and two clients may
even use the same job id without seeing each other's. A store is told about a job when it
is accepted (state ``RUNNING``, with the request that started it) and again when it ends;
``put`` replaces the job's record, except that a finished job is final.

Retention is the store's own business and is done by the store (key expiry, an index on
deadlines), never by scanning every job: finished jobs are kept, or dropped after
``finished_ttl`` or beyond ``max_finished``. A job still running after ``pending_ttl`` is not
forgotten: :meth:`ResultStore.expire_running` (which the node calls every second) fails it
with :data:`EXPIRED_REASON`, and from then on it is kept like any finished job. Only a running
job that no sweep reaches within :data:`OVERDUE_GRACE` after its deadline (no node is running)
is dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from .jobs import Job, JobAborted, apply
from .models import JobRequest

__all__ = ("EXPIRED_REASON", "OVERDUE_GRACE", "ResultStore", "Retention", "expired")

EXPIRED_REASON = "expired: still running after pending_ttl"
"""The error of a job failed because it was still running after ``pending_ttl``."""

OVERDUE_GRACE = 60.0
"""Seconds a store keeps a running job past its deadline for a sweep to fail it."""


def expired(job: Job, now: float) -> Job:
    """``job``, failed because it was still running after ``pending_ttl``."""
    return apply(job, JobAborted(container="", reason=EXPIRED_REASON), now=now)


@dataclass(frozen=True, slots=True)
class Retention:
    """How long a store keeps jobs.

    Attributes:
        pending_ttl: Seconds a job may be running before it is failed (expired).
        finished_ttl: Seconds a finished job is kept; ``None`` keeps it.
        max_finished: Finished jobs kept, oldest dropped first; ``None`` is unbounded.
    """

    pending_ttl: float = 15 * 60.0
    finished_ttl: float | None = None
    max_finished: int | None = None

    def __post_init__(self) -> None:
        if self.pending_ttl <= 0:
            raise ValueError("pending_ttl must be positive")
        if self.finished_ttl is not None and self.finished_ttl <= 0:
            raise ValueError("finished_ttl must be positive")
        if self.max_finished is not None and self.max_finished < 1:
            raise ValueError("max_finished must be at least 1")


class ResultStore(ABC):
    """Where jobs are kept. Implementations must be safe to call from one event loop.

    Every method may raise :class:`~infernet_core.errors.StoreUnavailable` when the
    backing service cannot be reached.
    """

    @abstractmethod
    async def put(self, job: Job, request: JobRequest | None = None) -> bool:
        """Insert or replace ``job`` under ``(job.client, job.id)``, unless that job has finished.

        A running job counts as pending until it is put again in a terminal state or its
        pending time-to-live runs out. Finished jobs are final, as in the state machine: a
        put over one changes nothing.

        Args:
            job: The job.
            request: For a running job, the request that started it; a store that outlives
                its node keeps it so that an interrupted job can be run again.

        Returns:
            True if the job was stored, False if a finished job already held its key.
        """

    @abstractmethod
    async def get(self, client: str, ids: Sequence[str]) -> list[Job]:
        """Return the jobs among ``ids`` that ``client`` owns, in the order asked.

        Unknown ids are skipped; a repeated id is returned once.
        """

    @abstractmethod
    async def ids(self, client: str, pending: bool | None = None) -> list[str]:
        """List the ids of ``client``'s jobs.

        Args:
            client: The owning client.
            pending: ``True`` for running jobs only, ``False`` for finished ones only,
                ``None`` for all (pending first).
        """

    @abstractmethod
    async def pending_count(self) -> int:
        """How many jobs, across all clients (and all nodes sharing the store), are pending."""

    @abstractmethod
    async def expire_running(self, limit: int = 1000) -> int:
        """Fail the jobs still running after ``pending_ttl`` (:func:`expired`): from now on
        they read as failed and are kept like any finished job.

        Args:
            limit: At most this many in one call (the node calls again a second later).

        Returns:
            How many jobs this call failed.
        """

    async def open(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Connect or open files; called once when the node starts.

        Raises:
            StoreUnavailable: The backing service or file cannot be used.
        """

    async def interrupted(self) -> list[tuple[Job, JobRequest | None]]:
        """Jobs a previous run of this node left running, with their requests.

        Called once at start, before new work is accepted. Only a store owned by one node
        can answer this; the default (memory, shared stores) is an empty list.
        """
        return []

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release the store's resources."""
