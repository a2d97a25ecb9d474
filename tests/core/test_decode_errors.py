"""Our error texts for bad documents, whatever msgspec says (its wording is not our API)."""

from __future__ import annotations

import re

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from infernet_core.decode_errors import describe_decode_error, describe_validation_error
from infernet_core.errors import BadRequest
from infernet_core.parsing import parse_batch, parse_compute_request, parse_status_update

# Every message a bad body can get, as a whole.
OUR_MESSAGES = re.compile(
    r"Invalid JSON: (a string is not valid UTF-8|the document ends early|nested too deeply"
    r"|malformed at byte \d+|malformed)"
    r"|Request body must be a JSON object, got (an array|a string|a number|a boolean|null)"
    r"|Batch body must be a JSON array, got (an object|a string|a number|a boolean|null)"
    r"|Invalid (job request|delegated subscription request|status|batch): ("
    r"Expected `[a-z0-9 |]+`, got `[a-z]+`"
    r"|Object missing required field `[a-z_]+`"
    r"|Expected `[a-z]+` of length [<>]= \d+"
    r"|Expected `[a-z]+` [<>]=? [-\d.e+]+"
    r"|Invalid enum value .+"
    r"|Invalid value)"
)


@pytest.mark.parametrize(
    ("text", "ours"),
    [
        ("Invalid UTF-8 encoded string", "a string is not valid UTF-8"),
        ("Input data was truncated", "the document ends early"),
        ("JSON is malformed: trailing comma in array (byte 3)", "malformed at byte 3"),
        ("JSON is malformed: invalid character (byte 0)", "malformed at byte 0"),
        ("Something a later msgspec says", "malformed"),
    ],
)
def test_decode_errors_in_our_words(text: str, ours: str) -> None:
    assert describe_decode_error(msgspec.DecodeError(text)) == ours


def test_recursion_and_unicode_errors() -> None:
    assert describe_decode_error(RecursionError()) == "nested too deeply"
    assert describe_decode_error(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")) == "a string is not valid UTF-8"


@pytest.mark.parametrize(
    ("text", "ours"),
    [
        ("Expected `str`, got `int` - at `$.containers[0]`", ("Expected `str`, got `int`", "$.containers[0]")),
        ("Object missing required field `data`", ("Object missing required field `data`", "$")),
        ("Expected `str` of length >= 1 - at `$.id`", ("Expected `str` of length >= 1", "$.id")),
        ("Expected `float` > 0.0 - at `$.x`", ("Expected `float` > 0.0", "$.x")),
        ("Invalid enum value 'x' - at `$.status`", ("Invalid enum value 'x'", "$.status")),
        # A wording we do not know is not passed on.
        ("Value looks odd in a brand new way - at `$.data`", ("Invalid value", "$.data")),
        ("Entirely new", ("Invalid value", "$")),
    ],
)
def test_validation_errors_in_our_words(text: str, ours: tuple[str, str]) -> None:
    assert describe_validation_error(msgspec.ValidationError(text)) == ours


def test_our_own_value_errors_keep_their_words() -> None:
    class Checked(msgspec.Struct):
        n: int

        def __post_init__(self) -> None:
            raise ValueError("n is not to our taste")

    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert({"n": 1}, Checked)
    assert describe_validation_error(info.value) == ("n is not to our taste", "$")


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["containers", "data", "id", "status", "requires_proof", "subscription", "signature", "x"]),
            inner,
            max_size=5,
        )
    ),
    max_leaves=12,
)
BODIES = st.one_of(
    st.binary(max_size=64),
    JSONISH.map(msgspec.json.encode),
    JSONISH.map(msgspec.json.encode).flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),
    st.binary(max_size=8).map(lambda b: b'{"containers": ["a"], "data": {"k": "' + b + b'"}}'),
)


@given(body=BODIES)
def test_every_bad_body_gets_one_of_our_messages(body: bytes) -> None:
    for parse in (parse_compute_request, parse_status_update):
        try:
            parse(body)
        except BadRequest as exc:
            assert OUR_MESSAGES.fullmatch(exc.message), exc.message
    try:
        entries = parse_batch(body)
    except BadRequest as exc:
        assert OUR_MESSAGES.fullmatch(exc.message), exc.message
    else:
        for entry in entries:
            if isinstance(entry, BadRequest):
                assert OUR_MESSAGES.fullmatch(entry.message), entry.message
