"""Dispatchers: how an accepted job reaches the node that runs it.

A job is stored first, then dispatched. The :class:`LocalDispatcher` runs it in this
node's task group at once. A shared dispatcher (Redis streams) puts it on a queue that every
replica reads, so that any replica may run it and a surviving one takes over the jobs of a
replica that died. Either way the dispatcher calls back into the node with
``execute(job, request, interrupted)``; ``interrupted`` is true for a job whose first run
was cut short, which the node fails or runs again as configured.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from anyio.abc import TaskGroup

from .jobs import Job
from .models import JobRequest

__all__ = ("Dispatcher", "Execute", "LocalDispatcher")

Execute = Callable[[Job, JobRequest, bool], Awaitable[None]]
"""``execute(job, request, interrupted)``: run the job to a terminal state and store it; never raises."""


class Dispatcher(ABC):
    """Hands accepted jobs to :data:`Execute` callbacks, here or on another replica."""

    @abstractmethod
    async def start(self, task_group: TaskGroup, execute: Execute) -> None:
        """Begin: run background loops (if any) in ``task_group`` that call ``execute``."""

    @abstractmethod
    async def dispatch(self, job: Job, request: JobRequest) -> None:
        """Hand over an accepted job that is already stored as running.

        When this returns, the job will run even if this node dies (for dispatchers that
        promise it).

        Raises:
            StoreUnavailable: The queue cannot be reached.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release the dispatcher's resources."""


class LocalDispatcher(Dispatcher):
    """Runs every job in this node's own task group, at once."""

    def __init__(self) -> None:
        self._task_group: TaskGroup | None = None
        self._execute: Execute | None = None

    async def start(self, task_group: TaskGroup, execute: Execute) -> None:
        self._task_group = task_group
        self._execute = execute

    async def dispatch(self, job: Job, request: JobRequest) -> None:
        if self._task_group is None or self._execute is None:
            raise RuntimeError("dispatcher not started")
        self._task_group.start_soon(self._execute, job, request, False)
