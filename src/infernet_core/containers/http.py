"""HTTP containers: the Infernet container protocol over a shared keep-alive client.

The node's client is :class:`~infernet_core.containers.http_pool.HttpPool` (a small pool on
asyncio streams: a container call costs a fraction of what it costs through httpx, see
``benchmarks/bench_container_client.py``); an ``httpx.AsyncClient`` is accepted as well, so a
host or a test can pass one with its own transport (``httpx.MockTransport``, proxies, ...).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, aclosing, asynccontextmanager
from typing import Any, NoReturn, Protocol
from urllib.parse import urlencode

import anyio
import httpx
import msgspec

from ..codec import encode as _encode
from ..config import ContainerConfig
from ..errors import ContainerFailure
from ..models import ContainerInfo, ContainerInput, Destination, Source
from .base import ContainerClient
from .http_pool import ConnectFailed, ConnectionBroken, HttpError, HttpPool, Response, Target, TimedOut

__all__ = ("HttpContainer",)

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
    HTTP client, not the container, the bottleneck). The timeout counts from when a call is
    sent, and bounds connecting and the whole response.

    :meth:`stream` posts ``{"source", "destination", "data"}`` to the same endpoint and gives
    the response body as it arrives (the timeout then bounds connecting and the response head,
    then each read, not the whole stream); :meth:`resources` is
    ``GET {base}/service-resources[?model_id=X]``. Both send the bearer token when one is
    configured.

    Args:
        config: The container's configuration.
        client: The shared HTTP client (owned by the node): an
            :class:`~infernet_core.containers.http_pool.HttpPool`, or an ``httpx.AsyncClient``.
    """

    def __init__(self, config: ContainerConfig, client: HttpPool | httpx.AsyncClient) -> None:
        self.info = ContainerInfo(
            id=config.id, image=config.image, description=config.description, external=config.external
        )
        self.url = f"{config.base_url}/service_output"
        self.resources_url = f"{config.base_url}/service-resources"
        self._http: _Client = client if isinstance(client, HttpPool) else _HttpxClient(client)
        self._target = _target(self.url)  # None: not an http(s) URL; calls fail, the node still starts
        self._timeout = config.timeout
        self._slots = anyio.CapacityLimiter(config.max_concurrency)
        self._auth: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {config.bearer}"),) if config.bearer else ()
        )
        self._headers = (("content-type", "application/json"), *self._auth)

    async def run(self, payload: ContainerInput) -> Any:
        try:
            target = self._target or _unreachable(self.url)
            async with self._slots:
                response = await self._http.request(
                    "POST", target, body=_encode(payload), headers=self._headers, timeout=self._timeout
                )
        except HttpError as exc:
            raise self._failure(exc, self.url) from None
        return _json(response)

    @asynccontextmanager
    async def stream(self, payload: ContainerInput) -> AsyncIterator[AsyncIterator[bytes]]:
        body = _encode(_StreamCall(payload.source, payload.destination, payload.data))
        async with self._slots, AsyncExitStack() as stack:
            try:
                target = self._target or _unreachable(self.url)
                response = await stack.enter_async_context(
                    self._http.stream("POST", target, body=body, headers=self._headers, timeout=self._timeout)
                )
            except HttpError as exc:
                raise self._failure(exc, self.url) from None
            if not response.is_success:
                raise _status_failure(response.status, response.url, await _head(response))
            async with aclosing(self._chunks(response)) as chunks:
                yield chunks

    async def resources(self, model_id: str | None = None) -> Any:
        url = self.resources_url
        if model_id is not None:
            url += "?" + urlencode({"model_id": model_id})
        try:
            target = _target(url) or _unreachable(url)
            response = await self._http.request("GET", target, headers=self._auth, timeout=self._timeout)
        except HttpError as exc:
            raise self._failure(exc, self.resources_url) from None
        return _json(response)

    async def _chunks(self, response: _Streamed) -> AsyncGenerator[bytes, None]:
        try:
            async with aclosing(response.aiter_bytes()) as parts:
                async for part in parts:
                    yield part
        except HttpError as exc:
            raise self._failure(exc, self.url, broke_off=True) from None

    def _failure(self, exc: HttpError, url: str, *, broke_off: bool = False) -> ContainerFailure:
        if isinstance(exc, TimedOut):
            return ContainerFailure(f"timed out after {self._timeout:g}s calling {url}")
        cause = f"response from {url} broke off" if broke_off else f"could not reach {url}"
        return ContainerFailure(f"{cause}: {exc}")


def _target(url: str) -> Target | None:
    try:
        return Target(url)
    except ValueError:
        return None


def _unreachable(url: str) -> NoReturn:
    # A misconfigured URL fails the calls to its container, as it did with httpx, not the node's start.
    raise ConnectFailed(f"not an http(s) URL: {url!r}")


def _json(response: Response) -> Any:
    """The JSON value of a complete response.

    Raises:
        ContainerFailure: The status is not 2xx, or the body is not JSON.
    """
    body = response.body
    if not response.is_success:
        raise _status_failure(response.status, response.url, body)
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise ContainerFailure(f"response from {response.url} is not JSON: {_snippet(body)}") from None


def _status_failure(status: int, url: str, body: bytes) -> ContainerFailure:
    return ContainerFailure(f"HTTP {status} from {url}: {_snippet(body)}")


async def _head(response: _Streamed) -> bytes:
    """Enough of a streamed body to quote in an error (the rest is never read)."""
    body = b""
    try:
        async with aclosing(response.aiter_bytes()) as parts:
            async for part in parts:
                body += part
                if len(body) > _SNIPPET:
                    break
    except HttpError:
        pass  # quote what arrived
    return body


def _snippet(body: bytes) -> str:
    text = body[:_SNIPPET].decode("utf-8", "replace")
    return text + ("..." if len(body) > _SNIPPET else "")


# -- the two clients HttpContainer accepts, as one interface ---------------------------------


class _Streamed(Protocol):
    status: int
    url: str

    @property
    def is_success(self) -> bool: ...

    def aiter_bytes(self) -> AsyncGenerator[bytes, None]: ...


class _Client(Protocol):
    async def request(
        self,
        method: str,
        target: Target,
        *,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
        timeout: float,
    ) -> Response: ...

    def stream(
        self,
        method: str,
        target: Target,
        *,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
        timeout: float,
    ) -> AbstractAsyncContextManager[_Streamed]: ...


class _HttpxClient:
    """An ``httpx.AsyncClient`` behind HttpPool's interface (its errors mapped to HttpPool's)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def request(
        self,
        method: str,
        target: Target,
        *,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
        timeout: float,
    ) -> Response:
        try:
            response = await self._client.request(
                method, target.url, content=body or None, headers=headers, timeout=httpx.Timeout(timeout)
            )
        except httpx.HTTPError as exc:
            raise _mapped(exc, timeout, ConnectFailed) from None
        return Response(response.status_code, dict(response.headers), response.content, str(response.request.url))

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        target: Target,
        *,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
        timeout: float,
    ) -> AsyncIterator[_Streamed]:
        request = self._client.build_request(
            method, target.url, content=body or None, headers=headers, timeout=httpx.Timeout(timeout)
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _mapped(exc, timeout, ConnectFailed) from None
        try:
            yield _HttpxStreamed(response, timeout)
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()


class _HttpxStreamed:
    def __init__(self, response: httpx.Response, timeout: float) -> None:
        self.status = response.status_code
        self.url = str(response.request.url)
        self._response = response
        self._timeout = timeout

    @property
    def is_success(self) -> bool:
        return self._response.is_success

    async def aiter_bytes(self) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in self._response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            raise _mapped(exc, self._timeout, ConnectionBroken) from None


def _mapped(exc: httpx.HTTPError, timeout: float, kind: type[HttpError]) -> HttpError:
    if isinstance(exc, httpx.TimeoutException):
        return TimedOut(f"timed out after {timeout:g}s")
    return kind(str(exc) or type(exc).__name__)
