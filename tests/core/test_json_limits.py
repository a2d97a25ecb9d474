"""JSON limits: the nesting depth measured on bytes agrees with the decoded value's, the path
names the first value too deep, and outputs that could not be stored are named."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from infernet_core.json_limits import NOT_JSON, deep_path, depth_exceeds, output_problem

# Strings full of what a naive scanner would count: brackets, quotes, backslashes.
tricky_text = st.text(alphabet='[]{}"\\ab\u00e9\n', max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | tricky_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(tricky_text, children, max_size=3),
    max_leaves=40,
)


def depth(value: Any) -> int:
    """Levels of arrays and objects (the reference the byte scanner must agree with)."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def nested(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for level in range(levels):
        value = [value] if level % 2 else {"k": value}
    return value


@given(value=json_values, limit=st.integers(min_value=0, max_value=8))
def test_depth_on_bytes_agrees_with_the_decoded_value(value: Any, limit: int) -> None:
    document = msgspec.json.encode(value)
    assert depth_exceeds(document, limit) == (depth(value) > limit)
    path = deep_path(value, limit)
    assert (path is None) == (depth(value) <= limit)


@pytest.mark.parametrize("levels", [1, 63, 64, 65, 500])
def test_depth_limit_is_exact(levels: int) -> None:
    document = msgspec.json.encode(nested(levels))
    assert depth_exceeds(document, 64) == (levels > 64)


def test_the_path_names_the_first_value_too_deep() -> None:
    value = {"a": 1, "b": [0, {"c": [[1]]}], "d": [[[[2]]]]}
    assert deep_path(value, 3) == "$.b[1].c"  # level 4 (the outer object is level 1)
    assert deep_path(value, 4) == "$.b[1].c[0]"  # found before $.d[0][0][0], also level 5
    assert deep_path(value, 5) is None


def test_outputs_that_cannot_be_kept_are_named() -> None:
    assert output_problem({"ok": [1, "x"]}, 64) is None
    assert output_problem(nested(64), 64) is None
    assert output_problem(nested(65), 64) == "output nested too deeply: more than 64 levels"
    assert output_problem({"f": 1j}, 64) == NOT_JSON
    assert output_problem(float("nan"), 64) is None  # msgspec writes null, as JSON has no NaN
    assert output_problem(object(), 64) == NOT_JSON
