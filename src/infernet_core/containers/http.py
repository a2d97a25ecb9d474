"""HTTP containers: the Infernet container protocol over a pooled httpx client."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import msgspec

from ..config import ContainerConfig
from ..errors import ContainerFailure
from ..models import ContainerInfo, ContainerInput
from .base import ContainerClient

__all__ = ("HttpContainer",)

_encode = msgspec.json.Encoder().encode
_SNIPPET = 200


class HttpContainer(ContainerClient):
    """A container reached at ``POST {base}/service_output``.

    ``base`` is the container's ``url`` when configured, else ``http://localhost:{port}``.
    A non-2xx status, a body that is not JSON, a timeout and a connection error each fail
    the call with a message naming the cause. At most ``max_concurrency`` calls are in flight
    at once; the rest wait their turn (a backlog of thousands of open requests would make the
    HTTP client's pool bookkeeping, not the container, the bottleneck). The timeout counts from
    when a call is sent.

    Args:
        config: The container's configuration.
        client: A shared, pooled HTTP client (owned by the node).
    """

    def __init__(self, config: ContainerConfig, client: httpx.AsyncClient) -> None:
        self.info = ContainerInfo(
            id=config.id, image=config.image, description=config.description, external=config.external
        )
        self.url = f"{config.base_url}/service_output"
        self._client = client
        self._timeout = httpx.Timeout(config.timeout)
        self._slots = anyio.CapacityLimiter(config.max_concurrency)
        self._headers = {"content-type": "application/json"}
        if config.bearer:
            self._headers["authorization"] = f"Bearer {config.bearer}"

    async def run(self, payload: ContainerInput) -> Any:
        try:
            async with self._slots:
                response = await self._client.post(
                    self.url, content=_encode(payload), headers=self._headers, timeout=self._timeout
                )
        except httpx.TimeoutException:
            raise ContainerFailure(f"timed out after {self._timeout.read:g}s calling {self.url}") from None
        except httpx.HTTPError as exc:
            raise ContainerFailure(f"could not reach {self.url}: {exc or type(exc).__name__}") from None
        body = response.content
        if not response.is_success:
            raise ContainerFailure(f"HTTP {response.status_code} from {self.url}: {_snippet(body)}")
        try:
            return msgspec.json.decode(body)
        except msgspec.DecodeError:
            raise ContainerFailure(f"response from {self.url} is not JSON: {_snippet(body)}") from None


def _snippet(body: bytes) -> str:
    text = body[:_SNIPPET].decode("utf-8", "replace")
    return text + ("..." if len(body) > _SNIPPET else "")
