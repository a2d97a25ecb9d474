"""The container pipeline: run a job's containers in order and drive its state machine.

Container ``i + 1`` receives container ``i``'s output as its data. Every call but the last
has destination OFFCHAIN; the last gets the job's destination. The first failure ends the
job, and later containers do not run; an output that could not be stored (not JSON, or
nested deeper than ``max_depth``) is a failure of the container that gave it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .containers.base import ContainerClient
from .errors import ContainerFailure
from .jobs import ContainerFailed, ContainerSucceeded, Job, JobCompleted, apply
from .json_limits import output_problem
from .models import ContainerError, ContainerInput, ContainerOutput, Destination, Source

__all__ = ("run_pipeline",)


async def run_pipeline(
    job: Job,
    clients: Mapping[str, ContainerClient],
    data: Any,
    *,
    source: Source = Source.OFFCHAIN,
    destination: Destination = Destination.OFFCHAIN,
    requires_proof: bool = False,
    max_depth: int = 64,
) -> Job:
    """Run ``job.containers`` on ``data`` and return the finished job.

    Args:
        job: A running job; its ``containers`` name entries of ``clients``.
        clients: Container clients by id.
        data: The first container's input.
        source: Where ``data`` came from.
        destination: Where the last container's output goes.
        requires_proof: Passed to every container.
        max_depth: Nesting levels an output may have.

    Returns:
        The job in state SUCCEEDED or FAILED.
    """
    last = len(job.containers) - 1
    for index, container_id in enumerate(job.containers):
        payload = ContainerInput(
            source=source if index == 0 else Source.OFFCHAIN,
            destination=destination if index == last else Destination.OFFCHAIN,
            data=data,
            requires_proof=requires_proof,
        )
        try:
            data = await clients[container_id].run(payload)
            problem = output_problem(data, max_depth)
            if problem is not None:
                raise ContainerFailure(problem)
        except ContainerFailure as failure:
            error = ContainerError(container=container_id, error=failure.message)
            return apply(job, ContainerFailed(error=error), now=time.time())
        job = apply(job, ContainerSucceeded(output=ContainerOutput(container=container_id, output=data)))
    return apply(job, JobCompleted(), now=time.time())
