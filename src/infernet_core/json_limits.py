"""Limits on JSON values: how deeply a document nests (measured on its bytes without decoding
it), and whether a container's output can be stored at all.

A node refuses request data nested deeper than ``server.max_depth`` and fails a job whose
output is: a document near the decoder's own limit would be accepted, stored, and then
could not be encoded again inside a job record (which adds levels of its own).
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

import msgspec

__all__ = ("NOT_JSON", "deep_path", "depth_exceeds", "output_problem")

NOT_JSON = "output is not JSON-representable"

# A JSON string, escapes included (brackets inside strings do not nest).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def depth_exceeds(document: bytes, limit: int) -> bool:
    """True if the JSON ``document`` nests arrays and objects more than ``limit`` levels deep
    (the outermost array or object is level 1). Meant for valid JSON; on anything else the
    answer is only an estimate."""
    if document.count(b"[") + document.count(b"{") <= limit:  # cannot nest deeper: no scan
        return False
    brackets = _STRING.sub(b"", document).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > limit


def deep_path(value: Any, limit: int, path: str = "$") -> str | None:
    """The JSON path of the first array or object in ``value`` that sits deeper than
    ``limit`` levels (``value`` itself is level 1), or ``None`` if there is none."""
    pending: list[tuple[Any, str, int]] = [(value, path, 1)]
    while pending:
        node, where, level = pending.pop()
        if isinstance(node, dict):
            items: Any = ((f"{where}.{key}", child) for key, child in node.items())
        elif isinstance(node, list | tuple):
            items = ((f"{where}[{index}]", child) for index, child in enumerate(node))
        else:
            continue
        if level > limit:
            return where
        # Reversed, so that the first child is examined first (the path a reader expects).
        pending.extend((child, child_path, level + 1) for child_path, child in reversed(list(items)))
    return None


def output_problem(output: Any, max_depth: int) -> str | None:
    """Why a container's ``output`` cannot be kept as a job's result, or ``None`` if it can."""
    try:
        encoded = msgspec.json.encode(output)
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError):
        return NOT_JSON
    if depth_exceeds(encoded, max_depth):
        return f"output nested too deeply: more than {max_depth} levels"
    return None
