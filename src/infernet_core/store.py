"""The result store protocol: where jobs live between submission and collection.

Jobs are scoped by client: a client sees only the jobs it created, and two clients may
even use the same job id without seeing each other's. A store is told about a job when it
is accepted (state ``RUNNING``) and again when it ends; ``put`` replaces the job's record.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from .jobs import Job

__all__ = ("ResultStore",)


class ResultStore(ABC):
    """Where jobs are kept. Implementations must be safe to call from one event loop."""

    @abstractmethod
    async def put(self, job: Job) -> bool:
        """Insert or replace ``job`` under ``(job.client, job.id)``, unless that job has finished.

        A running job counts as pending until it is put again in a terminal state or its
        pending time-to-live runs out. Finished jobs are final, as in the state machine: a
        put over one changes nothing.

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
        """How many jobs, across all clients, are pending."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release the store's resources."""
