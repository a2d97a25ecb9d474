"""How a container's final output becomes the ``input``, ``output`` and ``proof`` bytes of an
on-chain delivery (the container protocol's mapping, shared with the reference node).

An output object with all of ``raw_input``, ``processed_input``, ``raw_output``,
``processed_output`` and ``proof`` is taken apart: ``input = abi.encode(bytes, bytes)(raw_input,
processed_input)``, ``output`` likewise, and ``proof`` as is, each value a hex string (an
optional ``0x`` is tolerated) or ``null`` for empty bytes. Any other output is delivered as
``output = abi.encode(string)(<its JSON text>)`` with empty input and proof. (The reference
node sends a Python ``repr`` there, which no consumer can parse; JSON is what a contract or
off-chain reader can decode.)

Pure: ABI encoding only.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import msgspec
from eth_abi import encode

__all__ = ("DeliveryPayload", "container_input", "delivery_payload")

_PROOF_KEYS: Final = ("raw_input", "processed_input", "raw_output", "processed_output", "proof")


class DeliveryPayload(NamedTuple):
    """The three byte strings ``deliverCompute`` takes."""

    input: bytes
    output: bytes
    proof: bytes


def container_input(inputs: bytes) -> str:
    """The ``data`` an on-chain subscription's first container gets: lowercase hex, no ``0x``."""
    return inputs.hex()


def delivery_payload(output: Any) -> DeliveryPayload:
    """Map a container's final output onto a delivery.

    Raises:
        ValueError: The output has the five proof keys but one is not a hex string or null.
    """
    if isinstance(output, dict) and all(key in output for key in _PROOF_KEYS):
        values = {key: _hex_bytes(key, output[key]) for key in _PROOF_KEYS}
        return DeliveryPayload(
            input=encode(["bytes", "bytes"], [values["raw_input"], values["processed_input"]]),
            output=encode(["bytes", "bytes"], [values["raw_output"], values["processed_output"]]),
            proof=values["proof"],
        )
    text = msgspec.json.encode(output).decode()
    return DeliveryPayload(input=b"", output=encode(["string"], [text]), proof=b"")


def _hex_bytes(key: str, value: Any) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise ValueError(f"output field {key!r} must be a hex string or null, not {type(value).__name__}")
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise ValueError(f"output field {key!r} is not valid hex: {value[:40]!r}") from None
