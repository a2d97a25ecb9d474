"""Our own words for what msgspec found wrong with a document.

The node's error texts are part of its API: a client (and a test) must see the same message
whatever msgspec release is installed. msgspec's messages are read here, never passed on:
each shape we know is rewritten into our template, and anything else becomes a generic
message, so a new wording upstream can change nothing on the wire.

Pure: string handling only.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

__all__ = ("describe_decode_error", "describe_validation_error")

_BACKTICKED: Final = r"`([^`]+)`"
# msgspec's validation messages, by shape, and the text we answer with for each.
_VALIDATION_SHAPES: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(rf"Expected {_BACKTICKED}, got {_BACKTICKED}"), "Expected `{0}`, got `{1}`"),
    (re.compile(rf"Object missing required field {_BACKTICKED}"), "Object missing required field `{0}`"),
    (re.compile(rf"Object contains unknown field {_BACKTICKED}"), "Object contains unknown field `{0}`"),
    (re.compile(rf"Expected {_BACKTICKED} of length (<=|>=) (\d+)"), "Expected `{0}` of length {1} {2}"),
    (re.compile(rf"Expected {_BACKTICKED} (<=|>=|<|>) (-?[\d.e+]+)"), "Expected `{0}` {1} {2}"),
    (re.compile(r"Invalid enum value (.+)"), "Invalid enum value {0}"),
    (re.compile(rf"Expected {_BACKTICKED} matching regex (.+)"), "Expected `{0}` matching {1}"),
)
_MALFORMED_AT: Final = re.compile(r"\(byte (\d+)\)")
_PATH: Final = re.compile(r" - at `(\$[^`]*)`$")


def describe_validation_error(error: msgspec.ValidationError) -> tuple[str, str]:
    """Our message for a value of the wrong type or shape, and the JSON path it is at.

    Returns:
        ``(message, path)``, e.g. ``("Expected `str`, got `int`", "$.containers[0]")``; the
        path is ``"$"`` when the problem is with the document itself.
    """
    text = str(error)
    path_match = _PATH.search(text)
    path = path_match.group(1) if path_match else "$"
    detail = text[: path_match.start()] if path_match else text
    for pattern, template in _VALIDATION_SHAPES:
        match = pattern.fullmatch(detail)
        if match:
            return template.format(*match.groups()), path
    # A value msgspec's constraints or our __post_init__ refused: our own ValueError texts
    # come through (msgspec keeps their message), anything else is described generically.
    return (detail if _is_ours(error) else "Invalid value"), path


def describe_decode_error(error: msgspec.DecodeError | RecursionError | UnicodeDecodeError) -> str:
    """Our message for a document that is not JSON at all (syntax, encoding, nesting)."""
    if isinstance(error, RecursionError):
        return "nested too deeply"
    text = str(error)
    if isinstance(error, UnicodeDecodeError) or "UTF-8" in text:
        return "a string is not valid UTF-8"
    if "truncated" in text:
        return "the document ends early"
    if "nest" in text.lower() or "recursion" in text.lower():
        return "nested too deeply"
    byte = _MALFORMED_AT.search(text)
    if byte:
        return f"malformed at byte {byte.group(1)}"
    return "malformed"


def _is_ours(error: msgspec.ValidationError) -> bool:
    """Whether the message was raised by our own ``__post_init__`` (a ValueError we wrote)."""
    cause = error.__cause__ or error.__context__
    return isinstance(cause, ValueError) and not isinstance(cause, msgspec.MsgspecError)
