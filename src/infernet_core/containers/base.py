"""The container client protocol: how the node runs one container, streams its output, and
asks for its resources."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec

from ..errors import ContainerFailure
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

    @asynccontextmanager
    async def stream(self, payload: ContainerInput) -> AsyncIterator[AsyncIterator[bytes]]:
        """Run the container on ``payload``, giving its response body in chunks as they come::

            async with client.stream(payload) as chunks:
                async for chunk in chunks:
                    ...

        The default, for containers that cannot stream, awaits :meth:`run` and gives its
        output JSON-encoded as a single chunk.

        Raises:
            ContainerFailure: On entering, the call failed or was refused; while iterating,
                the response broke off. The message names the cause.
        """
        output = msgspec.json.encode(await self.run(payload))
        yield _single(output)

    async def resources(self, model_id: str | None = None) -> Any:
        """What the container reports about its resources (a JSON value); ``model_id``, when
        given, asks about that model only. The default offers none.

        Raises:
            ContainerFailure: The container offers no resources, or they could not be read.
        """
        raise ContainerFailure(f"container {self.info.id} offers no resources")


async def _single(chunk: bytes) -> AsyncIterator[bytes]:
    yield chunk
