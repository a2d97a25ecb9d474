"""Request parsing: bytes from the wire to typed requests, or a 4xx naming the problem.

A body is a JobRequest unless it carries a ``subscription`` key, in which case it is a
DelegatedSubscriptionRequest. Decoding errors keep msgspec's JSON path, so a client learns
exactly which field is wrong (``"params": {"path": "$.containers[0]"}``). A body nested more
than ``max_depth`` levels (``server.max_depth``; the body's own object is level 1) is refused
with the path of the first value too deep.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .decode_errors import describe_decode_error, describe_validation_error
from .errors import BadRequest, PayloadTooLarge
from .json_limits import deep_path, depth_exceeds
from .models import DelegatedSubscriptionRequest, JobRequest, StatusUpdate

__all__ = (
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_DEPTH",
    "ComputeRequest",
    "parse_batch",
    "parse_compute_request",
    "parse_status_update",
)

DEFAULT_MAX_DEPTH = 64
"""Nesting levels a request body may have (``server.max_depth``)."""
DEFAULT_MAX_BATCH = 1000
"""Requests one batch may hold (``server.max_batch``)."""
_PATH_CHARS = 512  # a path longer than this is cut (keys may be long)

ComputeRequest = JobRequest | DelegatedSubscriptionRequest

_job_decoder = msgspec.json.Decoder(JobRequest)
_status_decoder = msgspec.json.Decoder(StatusUpdate)
_any_decoder = msgspec.json.Decoder()
_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw])


def _bad_request(exc: msgspec.DecodeError, what: str) -> BadRequest:
    if isinstance(exc, msgspec.ValidationError):
        message, path = describe_validation_error(exc)
        return BadRequest(f"Invalid {what}: {message}", {"path": path})
    return BadRequest(f"Invalid JSON: {describe_decode_error(exc)}")


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    """Decode, turning what msgspec raises outside DecodeError into BadRequest: RecursionError
    for deep nesting, and (msgspec before 0.23) UnicodeDecodeError for invalid UTF-8."""
    try:
        return decoder.decode(body)
    except (RecursionError, UnicodeDecodeError) as exc:
        raise BadRequest(f"Invalid JSON: {describe_decode_error(exc)}") from None


def _check_depth(body: bytes | msgspec.Raw, max_depth: int) -> None:
    """Refuse a body nested deeper than ``max_depth``, naming the limit and where it is passed."""
    if not depth_exceeds(bytes(body), max_depth):
        return
    path = deep_path(_decode(_any_decoder, body), max_depth) or "$"
    if len(path) > _PATH_CHARS:
        path = path[:_PATH_CHARS] + "..."
    raise BadRequest(f"Request nested too deeply: more than {max_depth} levels", {"path": path, "limit": max_depth})


def parse_compute_request(body: bytes | msgspec.Raw, max_depth: int = DEFAULT_MAX_DEPTH) -> ComputeRequest:
    """Parse a POST /api/jobs body.

    Raises:
        BadRequest: Invalid JSON, not an object, nested deeper than ``max_depth``, or a field
            of the wrong type or missing.
    """
    try:
        _check_depth(body, max_depth)
    except msgspec.DecodeError as exc:
        raise _bad_request(exc, "request") from None
    try:
        request: JobRequest = _decode(_job_decoder, body)
        return request
    except msgspec.DecodeError as first_error:
        error = first_error
    # Slow path: work out what the body is meant to be, for a precise error.
    try:
        raw = _decode(_any_decoder, body)
    except msgspec.DecodeError as exc:
        raise _bad_request(exc, "request") from None
    return _convert(raw, error)


def _convert(raw: Any, job_error: msgspec.DecodeError) -> ComputeRequest:
    if not isinstance(raw, dict):
        raise BadRequest(f"Request body must be a JSON object, got {_json_kind(raw)}", {"path": "$"})
    if "subscription" in raw and "containers" not in raw:
        try:
            return msgspec.convert(raw, DelegatedSubscriptionRequest)
        except msgspec.ValidationError as exc:
            raise _bad_request(exc, "delegated subscription request") from None
    raise _bad_request(job_error, "job request") from None


def parse_batch(
    body: bytes, max_depth: int = DEFAULT_MAX_DEPTH, max_items: int = DEFAULT_MAX_BATCH
) -> list[ComputeRequest | BadRequest]:
    """Parse a POST /api/jobs/batch body into one entry per item, errors included (each item
    nests up to ``max_depth`` levels of its own).

    Raises:
        BadRequest: The body is not valid JSON or not a JSON array.
        PayloadTooLarge: It holds more than ``max_items`` requests (``server.max_batch``).
    """
    try:
        items: list[msgspec.Raw] = _decode(_batch_decoder, body)
    except msgspec.DecodeError as exc:
        try:
            raw = _decode(_any_decoder, body)
        except msgspec.DecodeError:
            raise _bad_request(exc, "batch") from None
        raise BadRequest(f"Batch body must be a JSON array, got {_json_kind(raw)}", {"path": "$"}) from None
    if len(items) > max_items:
        raise PayloadTooLarge("Too many requests in one batch", {"limit": max_items, "count": len(items)})
    parsed: list[ComputeRequest | BadRequest] = []
    for index, item in enumerate(items):
        try:
            parsed.append(parse_compute_request(item, max_depth))
        except BadRequest as exc:
            path = (exc.params or {}).get("path", "$")
            exc.params = {**(exc.params or {}), "path": f"$[{index}]{path[1:]}"}
            parsed.append(exc)
    return parsed


def parse_status_update(body: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> StatusUpdate:
    """Parse a PUT /api/status body.

    Raises:
        BadRequest: Invalid JSON, nested deeper than ``max_depth``, or a field of the wrong
            type, missing, or an unknown status.
    """
    try:
        _check_depth(body, max_depth)
        update: StatusUpdate = _decode(_status_decoder, body)
        return update
    except msgspec.DecodeError as exc:
        raise _bad_request(exc, "status") from None


def _json_kind(value: Any) -> str:
    match value:
        case list():
            return "an array"
        case dict():
            return "an object"
        case str():
            return "a string"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case None:
            return "null"
    return type(value).__name__  # pragma: no cover
