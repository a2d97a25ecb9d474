"""Container resources: what each container reports at ``/service-resources``, gathered at once."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import anyio

from .containers.base import ContainerClient
from .errors import ContainerFailure

__all__ = ("collect_resources",)

log = logging.getLogger("infernet_core.resources")


async def collect_resources(
    containers: Iterable[ContainerClient], model_id: str | None = None, *, timeout: float
) -> dict[str, Any]:
    """Ask every container for its resources, all in parallel.

    A container that fails (an error status, a body that is not JSON, no answer within
    ``timeout``, no resources offered) is left out.

    Args:
        containers: The containers to ask.
        model_id: Passed on to each container, to ask about that model only.
        timeout: Seconds each container has to answer.

    Returns:
        Container id to what it reported, in the order of ``containers``.
    """
    containers = list(containers)
    found: dict[str, Any] = {}

    async def ask(container: ContainerClient) -> None:
        container_id = container.info.id
        with anyio.move_on_after(timeout) as scope:
            try:
                found[container_id] = await container.resources(model_id)
            except ContainerFailure as failure:
                log.debug("no resources from container %s: %s", container_id, failure.message)
            except Exception:
                log.exception("asking container %s for its resources crashed", container_id)
        if scope.cancelled_caught:
            log.debug("no resources from container %s: no answer within %gs", container_id, timeout)

    async with anyio.create_task_group() as task_group:
        for container in containers:
            task_group.start_soon(ask, container)
    return {c.info.id: found[c.info.id] for c in containers if c.info.id in found}
