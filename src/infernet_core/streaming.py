"""Stream jobs: one container's response handed to the caller chunk by chunk, as it comes.

Theory of operation
-------------------
A stream job is a job like any other -- admitted by the guardian, stored as running, run in
the node's task group, stored again when it ends -- except that only its first container
runs, with destination STREAM, and that container's response body reaches the caller as it
arrives instead of as one JSON value.

Two tasks share a :class:`JobStream`. The node's job task *pumps* (:meth:`JobStream.pump`):
it calls the container and sends each chunk into a memory stream of capacity zero, so a slow
reader slows the container call down and nothing piles up. The caller *reads* by iterating
the :class:`JobStream`. The job succeeds when the container's response ends; its output is
the collected bytes, decoded (see :func:`~infernet_core.containers.chunks.decode_output`).
It fails when the container fails (non-2xx, broken off, ...), when the deadline passes, when
the reader aborts or leaves early, or when the node stops. Either way its final state is
stored *before* the reader sees the end of the stream, so a job read after its stream ended
is always finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final, Self

import anyio

from .containers.base import ContainerClient
from .containers.chunks import decode_output
from .errors import ContainerFailure
from .jobs import ContainerFailed, ContainerSucceeded, Job, JobCompleted, apply
from .models import ContainerError, ContainerInput, ContainerOutput, Destination, Source

__all__ = ("CLOSED_EARLY", "STREAM_ONLY_OFFCHAIN", "JobStream")

log = logging.getLogger("infernet_core.streaming")

STREAM_ONLY_OFFCHAIN: Final = "Streaming only supported for OffchainJob requests."
"""The error a delegated subscription gets when it asks to stream (the reference's text)."""

CLOSED_EARLY: Final = "stream closed before the container finished"
"""The error of a stream job whose reader left before its end."""

_STOP_PATIENCE: Final = 1.0
"""Seconds a stopping node tries to store a stream job's failure."""


class JobStream:
    """A running stream job, as its reader sees it.

    :meth:`Node.stream <infernet_core.Node.stream>` makes one. Enter it, then iterate it for
    the container's response body, chunk by chunk::

        async with node.stream(request, client) as stream:
            print(stream.job_id)
            async for chunk in stream:
                ...
        print(stream.job.status)        # "success" or "failed", as stored

    Iteration ends when the job ends, whether it succeeded or failed; :attr:`job` then holds
    the final state, already stored. Leaving the block earlier aborts the job (it fails with
    :data:`CLOSED_EARLY`) and waits until that is stored.
    """

    def __init__(self, job: Job) -> None:
        self._job = job
        self._send, self._receive = anyio.create_memory_object_stream[bytes](0)
        self._call_scope = anyio.CancelScope()
        self._abort_reason: str | None = None
        self._stored = anyio.Event()

    @property
    def job_id(self) -> str:
        """The job's id: known at once, before any output."""
        return self._job.id

    @property
    def job(self) -> Job:
        """The job: running until it ends, then as stored."""
        return self._job

    def abort(self, reason: str) -> None:
        """Stop the container call; the job fails with ``reason``. No effect once it has ended."""
        if self._abort_reason is None:
            self._abort_reason = reason
        self._call_scope.cancel()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._stored.is_set():
            self.abort(CLOSED_EARLY)
        self._receive.close()
        await self._stored.wait()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def pump(
        self,
        container: ContainerClient,
        data: Any,
        *,
        timeout: float,
        store: Callable[[Job], Awaitable[None]],
        stopped_reason: str,
    ) -> None:
        """Call ``container`` on ``data``, hand its chunks to the reader, store the final job.

        The node runs this in its task group. It never raises, but for cancellation (the node
        stopping), when the job is stored failed with ``stopped_reason``.

        Args:
            container: The job's (first) container.
            data: The request's data.
            timeout: Seconds the whole call may take, reading included.
            store: Stores a finished job (retrying as the node sees fit).
            stopped_reason: The job's error if the node stops first.
        """
        try:
            async with self._send:
                try:
                    outcome = await self._relay(container, data, timeout)
                except anyio.get_cancelled_exc_class():
                    stopped = ContainerError(container=container.info.id, error=stopped_reason)
                    self._job = apply(self._job, ContainerFailed(error=stopped), now=time.time())
                    with anyio.move_on_after(_STOP_PATIENCE, shield=True):
                        await store(self._job)
                    raise
                self._job = _finish(self._job, outcome)
                await store(self._job)
        finally:
            self._stored.set()

    async def _relay(self, container: ContainerClient, data: Any, timeout: float) -> ContainerOutput | ContainerError:
        """Relay the container's chunks to the reader; return the job's output or error."""
        container_id = container.info.id
        payload = ContainerInput(source=Source.OFFCHAIN, destination=Destination.STREAM, data=data)
        body = bytearray()
        with self._call_scope, anyio.move_on_after(timeout) as deadline:
            try:
                async with container.stream(payload) as chunks:
                    async for chunk in chunks:
                        body += chunk
                        await self._send.send(chunk)
            except ContainerFailure as failure:
                return ContainerError(container=container_id, error=failure.message)
            except anyio.BrokenResourceError:  # the reader has gone
                return ContainerError(container=container_id, error=self._abort_reason or CLOSED_EARLY)
            except Exception as exc:
                log.exception("stream job %s crashed", self.job_id)
                return ContainerError(container=container_id, error=f"internal error: {type(exc).__name__}: {exc}")
            return ContainerOutput(container=container_id, output=decode_output(bytes(body)))
        if deadline.cancelled_caught:
            return ContainerError(container=container_id, error=f"timed out after {timeout:g}s")
        return ContainerError(container=container_id, error=self._abort_reason or CLOSED_EARLY)


def _finish(job: Job, outcome: ContainerOutput | ContainerError) -> Job:
    now = time.time()
    if isinstance(outcome, ContainerError):
        return apply(job, ContainerFailed(error=outcome), now=now)
    return apply(apply(job, ContainerSucceeded(output=outcome)), JobCompleted(), now=now)
