"""Mapping a container's final output onto deliverCompute's input/output/proof bytes."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from eth_abi import decode
from hypothesis import given
from hypothesis import strategies as st

from infernet_core.delivery import container_input, delivery_payload

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def test_proof_shaped_output_is_taken_apart() -> None:
    payload = delivery_payload(
        {"raw_input": "0a", "processed_input": None, "raw_output": "0x0b0c", "processed_output": "", "proof": "ff"}
    )
    assert decode(["bytes", "bytes"], payload.input) == (b"\x0a", b"")
    assert decode(["bytes", "bytes"], payload.output) == (b"\x0b\x0c", b"")
    assert payload.proof == b"\xff"


@given(JSON)
def test_other_outputs_are_delivered_as_json_text(output: Any) -> None:
    payload = delivery_payload(output)
    if isinstance(output, dict) and {"raw_input", "processed_input", "raw_output", "processed_output", "proof"} <= set(
        output
    ):
        return
    assert payload.input == b""
    assert payload.proof == b""
    (text,) = decode(["string"], payload.output)
    assert msgspec.json.decode(text) == output


def test_json_text_not_a_python_repr() -> None:
    (text,) = decode(["string"], delivery_payload({"ok": True, "n": None}).output)
    assert text == '{"ok":true,"n":null}'


@pytest.mark.parametrize(("value", "message"), [(5, "must be a hex string or null"), ("zz", "is not valid hex")])
def test_bad_proof_fields_are_an_error(value: Any, message: str) -> None:
    output = {"raw_input": value, "processed_input": "", "raw_output": "", "processed_output": "", "proof": ""}
    with pytest.raises(ValueError, match=message):
        delivery_payload(output)


def test_container_input_is_bare_lowercase_hex() -> None:
    assert container_input(b"\xab\x01") == "ab01"
    assert container_input(b"") == ""
