"""The response of ``POST /api/jobs/stream``: a stream job sent as it arrives, unbuffered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import anyio

from infernet_core.streaming import JobStream

from .types import Send

__all__ = ("DISCONNECTED", "JobStreamResponse")

DISCONNECTED: Final = "client disconnected"
"""The error of a stream job whose client went away before its end."""

_HEADERS: Final = [(b"content-type", b"application/octet-stream")]


class JobStreamResponse:
    """A 200 whose body is ``"<job-id>\\n"`` and then the container's bytes, unframed.

    Each chunk goes out in its own ``http.response.body`` message (``more_body: True``) the
    moment it arrives; the body ends once the job has ended and been stored, so a client
    that reads the job after the end of the stream finds it finished. There is no end
    marker: a failed job's stream just ends. A client that disconnects aborts the job, which
    is stored failed with :data:`DISCONNECTED`.

    Args:
        stream: The started stream job; this response enters and closes it.
        disconnected: Returns once the client has disconnected (the request body already read).
    """

    __slots__ = ("_disconnected", "_stream")

    def __init__(self, stream: JobStream, disconnected: Callable[[], Awaitable[None]]) -> None:
        self._stream = stream
        self._disconnected = disconnected

    async def __call__(self, send: Send) -> None:
        async with self._stream, anyio.create_task_group() as task_group:
            task_group.start_soon(self._abort_on_disconnect)
            try:
                await self._send_body(send)
            except OSError:  # servers may raise it for a send after the client went away
                self._stream.abort(DISCONNECTED)
            task_group.cancel_scope.cancel()

    async def _send_body(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": f"{self._stream.job_id}\n".encode(), "more_body": True})
        async for chunk in self._stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _abort_on_disconnect(self) -> None:
        await self._disconnected()
        self._stream.abort(DISCONNECTED)
