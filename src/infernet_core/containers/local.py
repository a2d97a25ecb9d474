"""In-process containers: a Python callable that a host app registers as a container."""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing, asynccontextmanager
from typing import Any, Literal

import anyio
import anyio.to_thread
import msgspec

from ..errors import ContainerFailure
from ..json_limits import NOT_JSON
from ..models import ContainerInfo, ContainerInput
from .base import ContainerClient
from .chunks import decode_output, encode_chunk

__all__ = ("ContainerFunction", "LocalContainer", "Resources", "echo")

ContainerFunction = (
    Callable[[ContainerInput], Any]
    | Callable[[ContainerInput], Awaitable[Any]]
    | Callable[[ContainerInput], AsyncIterator[Any]]
)
"""A plain function, a coroutine function or an async generator function of the input."""

Resources = Mapping[str, Any] | Callable[[str | None], Any] | Callable[[str | None], Awaitable[Any]]
"""What an in-process container reports as its resources: a fixed mapping, or a (sync or
async) function of the ``model_id`` asked about (``None`` when none is)."""


class LocalContainer(ContainerClient):
    """A container backed by a Python callable.

    Coroutine functions are awaited on the event loop; plain functions run in a worker
    thread so a slow one cannot stall the node. Whatever the function returns must be
    JSON-representable (it is converted to plain JSON values at once); an exception, a
    timeout or an unrepresentable value fails the job with a message naming it.

    An async generator function *streams*: each value it yields is a chunk of its response
    (bytes as they are, ``str`` UTF-8 encoded, anything else JSON-encoded), which
    :meth:`stream` hands on as it comes. Run as an ordinary job (:meth:`run`), its chunks are
    joined and decoded as a stream job's output is: the JSON value if the whole is JSON, else
    the text. Other functions stream their output as one JSON chunk.

    Args:
        id: The container id jobs refer to.
        function: Takes a :class:`ContainerInput`, returns (or yields) the output.
        external: May the container come first in a job.
        description: Shown in ``GET /info``.
        timeout: Seconds one :meth:`run` may take (a stream job has the node's own limit).
        resources: What ``GET /resources`` reports for this container; without it, the
            container is left out there.
    """

    def __init__(
        self,
        id: str,
        function: ContainerFunction,
        *,
        external: bool = True,
        description: str = "",
        timeout: float = 180.0,
        resources: Resources | None = None,
    ) -> None:
        self.info = ContainerInfo(id=id, image="", description=description, external=external)
        self._function: Callable[[ContainerInput], Any] = function
        self._kind = _kind_of(function)
        self._timeout = timeout
        self._resources = resources

    async def run(self, payload: ContainerInput) -> Any:
        try:
            with anyio.fail_after(self._timeout):
                if self._kind == "generator":
                    output = await self._collect(payload)
                elif self._kind == "coroutine":
                    output = await self._function(payload)
                else:
                    output = await anyio.to_thread.run_sync(self._function, payload, abandon_on_cancel=True)
        except TimeoutError:
            raise ContainerFailure(f"timed out after {self._timeout:g}s") from None
        except ContainerFailure:
            raise
        except Exception as exc:
            raise _raised(exc) from exc
        try:
            return msgspec.to_builtins(output)
        except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError):
            raise ContainerFailure(NOT_JSON) from None

    @asynccontextmanager
    async def stream(self, payload: ContainerInput) -> AsyncIterator[AsyncIterator[bytes]]:
        if self._kind != "generator":
            async with super().stream(payload) as chunks:
                yield chunks
            return
        async with aclosing(self._function(payload)) as values, aclosing(_encoded(values)) as chunks:
            yield chunks

    async def resources(self, model_id: str | None = None) -> Any:
        offered = self._resources
        if offered is None:
            return await super().resources(model_id)
        try:
            found = offered(model_id) if callable(offered) else offered
            if inspect.isawaitable(found):
                found = await found
            return msgspec.to_builtins(found)
        except Exception as exc:
            raise _raised(exc) from exc

    async def _collect(self, payload: ContainerInput) -> Any:
        async with self.stream(payload) as chunks:
            return decode_output(b"".join([chunk async for chunk in chunks]))


def _kind_of(function: ContainerFunction) -> Literal["generator", "coroutine", "sync"]:
    # An object whose class defines `async def __call__` counts as async too.
    call = getattr(type(function), "__call__", None)  # noqa: B004 - the class attribute, not callable()
    if inspect.isasyncgenfunction(function) or inspect.isasyncgenfunction(call):
        return "generator"
    if inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call):
        return "coroutine"
    return "sync"


async def _encoded(values: AsyncIterator[Any]) -> AsyncGenerator[bytes, None]:
    """The chunks of an async generator container's values; what it raises fails the call."""
    while True:
        try:
            value = await anext(values)
        except StopAsyncIteration:
            return
        except Exception as exc:
            raise _raised(exc) from exc
        yield encode_chunk(value)


def _raised(exc: Exception) -> ContainerFailure:
    return ContainerFailure(f"{type(exc).__name__}: {exc}")


async def echo(payload: ContainerInput) -> Any:
    """The built-in ``echo`` container: returns its input data unchanged."""
    return payload.data
