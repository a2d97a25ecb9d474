"""HTTP containers: the Infernet container protocol over a pooled httpx client."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
import httpx
import msgspec

from ..config import ContainerConfig
from ..errors import ContainerFailure
from ..models import ContainerInfo, ContainerInput, Destination, Source
from .base import ContainerClient

__all__ = ("HttpContainer",)

_encode = msgspec.json.Encoder().encode
_SNIPPET = 200


class _StreamCall(msgspec.Struct, frozen=True):
    """The body of a streaming call: the reference sends no ``requires_proof`` with it."""

    source: Source
    destination: Destination
    data: Any


class HttpContainer(ContainerClient):
    """A container reached at ``POST {base}/service_output``.

    ``base`` is the container's ``url`` when configured, else ``http://localhost:{port}``.
    A non-2xx status, a body that is not JSON, a timeout and a connection error each fail
    the call with a message naming the cause. At most ``max_concurrency`` calls are in flight
    at once; the rest wait their turn (a backlog of thousands of open requests would make the
    HTTP client's pool bookkeeping, not the container, the bottleneck). The timeout counts from
    when a call is sent.

    :meth:`stream` posts ``{"source", "destination", "data"}`` to the same endpoint and gives
    the response body as it arrives (the timeout then bounds each read, not the whole
    stream); :meth:`resources` is ``GET {base}/service-resources[?model_id=X]``. Both send
    the bearer token when one is configured.

    Args:
        config: The container's configuration.
        client: A shared, pooled HTTP client (owned by the node).
    """

    def __init__(self, config: ContainerConfig, client: httpx.AsyncClient) -> None:
        self.info = ContainerInfo(
            id=config.id, image=config.image, description=config.description, external=config.external
        )
        self.url = f"{config.base_url}/service_output"
        self.resources_url = f"{config.base_url}/service-resources"
        self._client = client
        self._timeout = httpx.Timeout(config.timeout)
        self._slots = anyio.CapacityLimiter(config.max_concurrency)
        self._auth = {"authorization": f"Bearer {config.bearer}"} if config.bearer else {}
        self._headers = {"content-type": "application/json", **self._auth}

    async def run(self, payload: ContainerInput) -> Any:
        try:
            async with self._slots:
                response = await self._client.post(
                    self.url, content=_encode(payload), headers=self._headers, timeout=self._timeout
                )
        except httpx.HTTPError as exc:
            raise self._failure(exc, self.url) from None
        return _json(response)

    @asynccontextmanager
    async def stream(self, payload: ContainerInput) -> AsyncIterator[AsyncIterator[bytes]]:
        body = _encode(_StreamCall(payload.source, payload.destination, payload.data))
        request = self._client.build_request(
            "POST", self.url, content=body, headers=self._headers, timeout=self._timeout
        )
        async with self._slots:
            try:
                response = await self._client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise self._failure(exc, self.url) from None
            try:
                if not response.is_success:
                    raise _status_failure(response, await _head(response))
                async with aclosing(self._chunks(response)) as chunks:
                    yield chunks
            finally:
                with anyio.CancelScope(shield=True):
                    await response.aclose()

    async def resources(self, model_id: str | None = None) -> Any:
        params = {"model_id": model_id} if model_id is not None else None
        try:
            response = await self._client.get(
                self.resources_url, params=params, headers=self._auth, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise self._failure(exc, self.resources_url) from None
        return _json(response)

    async def _chunks(self, response: httpx.Response) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            raise self._failure(exc, self.url, broke_off=True) from None

    def _failure(self, exc: httpx.HTTPError, url: str, *, broke_off: bool = False) -> ContainerFailure:
        if isinstance(exc, httpx.TimeoutException):
            return ContainerFailure(f"timed out after {self._timeout.read:g}s calling {url}")
        cause = f"response from {url} broke off" if broke_off else f"could not reach {url}"
        return ContainerFailure(f"{cause}: {exc or type(exc).__name__}")


def _json(response: httpx.Response) -> Any:
    """The JSON value of a complete response.

    Raises:
        ContainerFailure: The status is not 2xx, or the body is not JSON.
    """
    body = response.content
    if not response.is_success:
        raise _status_failure(response, body)
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise ContainerFailure(f"response from {response.request.url} is not JSON: {_snippet(body)}") from None


def _status_failure(response: httpx.Response, body: bytes) -> ContainerFailure:
    return ContainerFailure(f"HTTP {response.status_code} from {response.request.url}: {_snippet(body)}")


async def _head(response: httpx.Response) -> bytes:
    """Enough of a streamed body to quote in an error (the rest is never read)."""
    body = b""
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > _SNIPPET:
                break
    except httpx.HTTPError:
        pass  # quote what arrived
    return body


def _snippet(body: bytes) -> str:
    text = body[:_SNIPPET].decode("utf-8", "replace")
    return text + ("..." if len(body) > _SNIPPET else "")
