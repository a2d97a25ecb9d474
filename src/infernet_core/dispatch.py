"""Dispatchers: how an accepted job reaches the node that runs it.

A job is stored first, then dispatched. The :class:`LocalDispatcher` runs it in this
node's task group at once; so does the Redis lease dispatcher, which also recovers the jobs
of replicas that died (those whose lease in Redis expired). Either way the dispatcher hands
the job to the node with ``spawn(job, request, interrupted)``; ``interrupted`` is true for a
job whose first run was cut short, which the node fails or runs again as configured.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from anyio.abc import TaskGroup

from .jobs import Job
from .models import JobRequest

__all__ = ("Dispatcher", "LocalDispatcher", "Spawn")

Spawn = Callable[[Job, JobRequest | None, bool], None]
"""``spawn(job, request, interrupted)``: start running the job in the node's task
group, at once and without waiting for it; its result is stored, never raised."""


class Dispatcher(ABC):
    """Hands accepted jobs to a node's :data:`Spawn`, here or on another replica."""

    @abstractmethod
    async def start(self, task_group: TaskGroup, spawn: Spawn) -> None:
        """Begin: run background loops (if any) in ``task_group`` that feed ``spawn``."""

    @abstractmethod
    async def dispatch(self, job: Job, request: JobRequest) -> None:
        """Hand over an accepted job that is already stored as running.

        When this returns, the job has started here or will run elsewhere; a dispatcher
        that recovers jobs (Redis) ends it even if this node dies.

        Raises:
            StoreUnavailable: A shared dispatcher's service cannot be reached.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release the dispatcher's resources."""


class LocalDispatcher(Dispatcher):
    """Runs every job in this node's own task group, at once."""

    def __init__(self) -> None:
        self._spawn: Spawn | None = None

    async def start(self, task_group: TaskGroup, spawn: Spawn) -> None:
        self._spawn = spawn

    async def dispatch(self, job: Job, request: JobRequest) -> None:
        if self._spawn is None:
            raise RuntimeError("dispatcher not started")
        self._spawn(job, request, False)
