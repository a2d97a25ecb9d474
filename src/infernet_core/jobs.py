"""The job state machine.

Theory of operation
-------------------
Everything that decides how a job moves between states lives here, and nothing else does:
no I/O, no clocks, no knowledge of who drives the job (the pipeline runner, ``PUT
/api/status``, or a store recovering after a restart).

A :class:`Job` is an immutable record. :func:`apply` takes a job and an event and returns the
next job. The allowed moves are the table ``TRANSITIONS[state][event type] -> state``; a
lookup miss raises :class:`~infernet_core.errors.InvalidTransition` and, because jobs are
immutable, leaves the caller's job exactly as it was. ``SUCCEEDED`` and ``FAILED`` accept no
event at all: terminal states are sticky.

Events are nouns describing what happened:

* ``ContainerSucceeded`` -- one container in the chain produced an output;
* ``ContainerFailed`` -- one container failed; the job fails with that error;
* ``JobCompleted`` -- every container ran; the last output is the result;
* ``JobAborted`` -- the node gave up on the job (crash, shutdown, restart);
* ``StatusReported`` -- an outside party reported a status (``PUT /api/status``).
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec

from .errors import InvalidTransition
from .models import ContainerError, ContainerOutput, JobResult, JobStatus, Record

__all__ = (
    "ContainerFailed",
    "ContainerSucceeded",
    "Job",
    "JobAborted",
    "JobCompleted",
    "JobEvent",
    "JobState",
    "StatusReported",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "apply",
    "new_job",
)


class JobState(enum.Enum):
    """Where a job is in its life."""

    RUNNING = "running"
    SUCCEEDED = "success"
    FAILED = "failed"


TERMINAL_STATES: Final = frozenset({JobState.SUCCEEDED, JobState.FAILED})


class ContainerSucceeded(Record, frozen=True, tag=True):
    """A container in the job's chain returned ``output``."""

    output: ContainerOutput


class ContainerFailed(Record, frozen=True, tag=True):
    """A container in the job's chain failed; the job fails with ``error``."""

    error: ContainerError


class JobCompleted(Record, frozen=True, tag=True):
    """All containers ran; the job succeeds with the last output as its result."""


class JobAborted(Record, frozen=True, tag=True):
    """The node gave up on the job; ``container`` is the one it was running (or ``""``)."""

    container: str
    reason: str


class StatusReported(Record, frozen=True, tag=True):
    """Someone outside the pipeline reported ``status`` for the job."""

    status: JobStatus


JobEvent = ContainerSucceeded | ContainerFailed | JobCompleted | JobAborted | StatusReported

_STATE_FOR_STATUS: Final[dict[str, JobState]] = {state.value: state for state in JobState}

# state -> event type -> next state. StatusReported is special-cased in `apply` because its
# target depends on the reported status, but it is still only legal where listed here.
TRANSITIONS: Final[dict[JobState, dict[type[Record], JobState]]] = {
    JobState.RUNNING: {
        ContainerSucceeded: JobState.RUNNING,
        ContainerFailed: JobState.FAILED,
        JobCompleted: JobState.SUCCEEDED,
        JobAborted: JobState.FAILED,
        StatusReported: JobState.RUNNING,
    },
    JobState.SUCCEEDED: {},
    JobState.FAILED: {},
}


class Job(Record, frozen=True):
    """One job: who asked for it, where it is, and what its containers produced.

    ``outputs`` are the outputs so far, in chain order. While running they show progress;
    once succeeded the last one is the result and the others are the intermediates; once
    failed they are the intermediates and ``error`` is the result.
    """

    id: str
    client: str
    state: JobState
    containers: tuple[str, ...] = ()
    outputs: tuple[ContainerOutput, ...] = ()
    error: ContainerError | None = None
    created_at: float = 0.0
    finished_at: float | None = None

    @property
    def status(self) -> JobStatus:
        """The job's status as the wire spells it."""
        return self.state.value

    @property
    def pending(self) -> bool:
        """True until the job reaches a terminal state."""
        return self.state is JobState.RUNNING

    def to_result(self, *, intermediate: bool = False) -> JobResult:
        """Render the job as the REST API's JobResult.

        Args:
            intermediate: Include the ``intermediate`` list.
        """
        result: ContainerOutput | ContainerError | None
        if self.state is JobState.FAILED:
            result, earlier = self.error, self.outputs
        elif self.state is JobState.SUCCEEDED and self.outputs:
            result, earlier = self.outputs[-1], self.outputs[:-1]
        else:
            result, earlier = None, self.outputs
        return JobResult(
            id=self.id,
            status=self.state.value,
            result=result,
            intermediate=list(earlier) if intermediate else msgspec.UNSET,
        )


def new_job(
    job_id: str,
    client: str,
    containers: tuple[str, ...] | list[str],
    *,
    created_at: float,
    status: JobStatus = "running",
) -> Job:
    """Make a job in the state that ``status`` names (``"running"`` for a new pipeline run)."""
    state = _STATE_FOR_STATUS[status]
    return Job(
        id=job_id,
        client=client,
        state=state,
        containers=tuple(containers),
        created_at=created_at,
        finished_at=None if state is JobState.RUNNING else created_at,
    )


def apply(job: Job, event: JobEvent, *, now: float = 0.0) -> Job:
    """Return the job that results from ``event``; ``job`` itself is never modified.

    Args:
        job: The current job.
        event: What happened.
        now: The clock reading to stamp as ``finished_at`` when the job ends.

    Raises:
        InvalidTransition: The event is not allowed in the job's state.
    """
    try:
        target = TRANSITIONS[job.state][type(event)]
    except KeyError:
        raise InvalidTransition(
            f"Can't handle {type(event).__name__} when job is {job.state.value}",
            {"id": job.id, "state": job.state.value, "event": type(event).__name__},
        ) from None

    match event:
        case ContainerSucceeded(output=output):
            return msgspec.structs.replace(job, outputs=(*job.outputs, output))
        case ContainerFailed(error=error):
            return msgspec.structs.replace(job, state=target, error=error, finished_at=now)
        case JobCompleted():
            return msgspec.structs.replace(job, state=target, finished_at=now)
        case JobAborted(container=container, reason=reason):
            error = ContainerError(container=container, error=reason)
            return msgspec.structs.replace(job, state=target, error=error, finished_at=now)
        case StatusReported(status=status):
            target = _STATE_FOR_STATUS[status]
            if target is JobState.RUNNING:
                return job
            return msgspec.structs.replace(job, state=target, finished_at=now)
    raise AssertionError(f"unhandled event {event!r}")  # pragma: no cover
