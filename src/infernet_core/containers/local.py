"""In-process containers: a Python callable that a host app registers as a container."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
import msgspec

from ..errors import ContainerFailure
from ..models import ContainerInfo, ContainerInput
from .base import ContainerClient

__all__ = ("ContainerFunction", "LocalContainer", "echo")

ContainerFunction = Callable[[ContainerInput], Any] | Callable[[ContainerInput], Awaitable[Any]]


class LocalContainer(ContainerClient):
    """A container backed by a Python callable.

    Coroutine functions are awaited on the event loop; plain functions run in a worker
    thread so a slow one cannot stall the node. Whatever the function returns must be
    JSON-representable (it is converted to plain JSON values at once); an exception, a
    timeout or an unrepresentable value fails the job with a message naming it.

    Args:
        id: The container id jobs refer to.
        function: Takes a :class:`ContainerInput`, returns the output.
        external: May the container come first in a job.
        description: Shown in ``GET /info``.
        timeout: Seconds one call may take.
    """

    def __init__(
        self,
        id: str,
        function: ContainerFunction,
        *,
        external: bool = True,
        description: str = "",
        timeout: float = 180.0,
    ) -> None:
        self.info = ContainerInfo(id=id, image="", description=description, external=external)
        self._function = function
        # An object whose class defines `async def __call__` counts as async too.
        self._is_async = inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
            getattr(type(function), "__call__", None)  # noqa: B004 - the class attribute, not callable()
        )
        self._timeout = timeout

    async def run(self, payload: ContainerInput) -> Any:
        try:
            with anyio.fail_after(self._timeout):
                if self._is_async:
                    output = await self._function(payload)
                else:
                    output = await anyio.to_thread.run_sync(self._function, payload, abandon_on_cancel=True)
        except TimeoutError:
            raise ContainerFailure(f"timed out after {self._timeout:g}s") from None
        except Exception as exc:
            raise ContainerFailure(f"{type(exc).__name__}: {exc}") from exc
        try:
            return msgspec.to_builtins(output)
        except (TypeError, msgspec.EncodeError) as exc:
            raise ContainerFailure(f"output is not JSON-representable: {exc}") from None


async def echo(payload: ContainerInput) -> Any:
    """The built-in ``echo`` container: returns its input data unchanged."""
    return payload.data
