"""The container client protocol: how the pipeline runs one container."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ..models import ContainerInfo, ContainerInput

__all__ = ("ContainerClient",)


class ContainerClient(ABC):
    """Runs one configured container.

    Attributes:
        info: How ``GET /info`` describes the container.
    """

    info: ContainerInfo

    @abstractmethod
    async def run(self, payload: ContainerInput) -> Any:
        """Run the container on ``payload`` and return its output (a JSON value).

        Raises:
            ContainerFailure: The container failed; the message names the cause (HTTP
                status, timeout, connection error, invalid JSON, exception raised).
        """
