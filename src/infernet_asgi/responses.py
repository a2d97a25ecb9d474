"""Responses: what a handler returns, to be sent; JSON ones are rendered in full before anything is sent."""

from __future__ import annotations

from typing import Any, Final, Protocol

from infernet_core.codec import encode as _encode
from infernet_core.errors import InfernetError

from .types import Send

__all__ = ("CONNECTION_CLOSE", "BytesResponse", "JSONResponse", "Response", "error_body", "error_response")


CONNECTION_CLOSE: Final = (b"connection", b"close")
"""The header of a response after which the server closes the connection."""


class Response(Protocol):
    """Anything a handler may return: it sends itself (``http.response.*`` messages)."""

    async def __call__(self, send: Send) -> None: ...


class JSONResponse:
    """A complete JSON response: status, headers and body fixed at construction."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, content: Any, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status = status
        self.body = _encode(content)
        self.headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode("ascii")),
            *(headers or ()),
        ]

    async def __call__(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


class BytesResponse(JSONResponse):
    """A complete response whose body is given as bytes, with its content type."""

    def __init__(self, body: bytes, content_type: str, status: int = 200) -> None:
        self.status = status
        self.body = body
        self.headers = [
            (b"content-type", content_type.encode("ascii")),
            (b"content-length", str(len(body)).encode("ascii")),
        ]


def error_body(error: InfernetError) -> dict[str, Any]:
    """``{"error": message, "params"?: {...}}``: how every error looks on the wire."""
    body: dict[str, Any] = {"error": error.message}
    if error.params is not None:
        body["params"] = error.params
    return body


def error_response(error: InfernetError, headers: list[tuple[bytes, bytes]] | None = None) -> JSONResponse:
    """The error's body with the error's HTTP status (and ``Retry-After`` when it has one)."""
    if error.retry_after is not None:
        headers = [*(headers or ()), (b"retry-after", str(error.retry_after).encode("ascii"))]
    return JSONResponse(error_body(error), status=error.status_hint, headers=headers)
