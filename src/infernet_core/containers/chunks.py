"""Streamed container output: how values become byte chunks, and collected bytes an output.

A streaming container's response is raw bytes with no framing. The same two rules apply
wherever a stream meets a JSON world: an in-process container's yielded values become
chunks by :func:`encode_chunk`, and a stream job's collected bytes become its stored output
(or a non-streaming call's result) by :func:`decode_output`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..codec import decode as _decode
from ..codec import encode as _encode
from ..errors import ContainerFailure
from ..json_limits import depth_exceeds

__all__ = ("decode_output", "encode_chunk")


def encode_chunk(value: Any) -> bytes:
    """One streamed value as bytes: bytes-like values as they are, ``str`` as UTF-8, anything
    else JSON-encoded.

    Raises:
        ContainerFailure: The value is not JSON-representable.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    try:
        return _encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError):
        raise ContainerFailure(f"chunk is not JSON-representable ({type(value).__name__})") from None


def decode_output(body: bytes, max_depth: int = 64) -> Any:
    """The output a stream's collected ``body`` stands for: its JSON value when the whole body
    is JSON nested at most ``max_depth`` levels, else its text (UTF-8, invalid bytes replaced)."""
    if depth_exceeds(body, max_depth):
        return body.decode("utf-8", "replace")
    try:
        return _decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return body.decode("utf-8", "replace")
