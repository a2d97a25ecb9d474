"""Request parsing: bytes in, typed requests or a BadRequest naming the field out."""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_core import BadRequest, PayloadTooLarge
from infernet_core.models import DelegatedSubscriptionRequest, JobRequest, Signature, StatusUpdate, SubscriptionRequest
from infernet_core.parsing import parse_batch, parse_compute_request, parse_status_update

SUBSCRIPTION: dict[str, Any] = {
    "owner": "0x1111111111111111111111111111111111111111",
    "active_at": 1_700_000_000,
    "period": 60,
    "frequency": 3,
    "redundancy": 1,
    "max_gas_price": 1_000_000_000,
    "max_gas_limit": 500_000,
    "container_id": "a,b",
    "inputs": "0xdeadbeef",
}
SIGNATURE: dict[str, Any] = {"nonce": 7, "expiry": 1_800_000_000, "v": 28, "r": 2**256 - 1, "s": 2**200 + 5}


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def delegated_body(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "subscription": copy.deepcopy(SUBSCRIPTION),
        "signature": copy.deepcopy(SIGNATURE),
        "data": {"x": 1},
    }
    for dotted, replacement in overrides.items():
        *parents, leaf = dotted.split("__")
        target = value
        for parent in parents:
            target = target[parent]
        if replacement is _DELETE:
            del target[leaf]
        else:
            target[leaf] = replacement
    return value


_DELETE = object()


def bad(parse: Any, raw: bytes) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        parse(raw)
    error = info.value
    assert type(error) is BadRequest
    assert error.code == "request.invalid"
    assert error.status_hint == 400
    return error


# -- JobRequest -----------------------------------------------------------------------------


def test_valid_job_request() -> None:
    request = parse_compute_request(b'{"containers": ["a", "b"], "data": {"text": "hi", "n": [1, 2]}}')
    assert request == JobRequest(containers=["a", "b"], data={"text": "hi", "n": [1, 2]}, requires_proof=False)


def test_requires_proof() -> None:
    request = parse_compute_request(b'{"containers": ["a"], "data": {}, "requires_proof": true}')
    assert isinstance(request, JobRequest)
    assert request.requires_proof is True


def test_extra_keys_such_as_id_and_ip_are_ignored() -> None:
    request = parse_compute_request(body({"id": "mine", "ip": "6.6.6.6", "containers": ["a"], "data": {}, "z": [1]}))
    assert request == JobRequest(containers=["a"], data={})
    assert not hasattr(request, "id") and not hasattr(request, "ip")


def test_empty_containers_parses() -> None:
    # "No containers specified" is the guardian's job, not the parser's
    assert parse_compute_request(b'{"containers": [], "data": {}}') == JobRequest(containers=[], data={})


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"{'containers': []}", b'{"containers": ["a"], "data": {}', b"\xff\xfe", b"nul", b'{"a":1}x'],
)
def test_invalid_json(raw: bytes) -> None:
    error = bad(parse_compute_request, raw)
    assert error.message.startswith("Invalid JSON: ")
    assert error.params is None


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"[]", "an array"),
        (b'[{"containers": ["a"], "data": {}}]', "an array"),
        (b'"x"', "a string"),
        (b"42", "a number"),
        (b"4.5", "a number"),
        (b"null", "null"),
        (b"true", "a boolean"),
    ],
)
def test_body_not_an_object(raw: bytes, kind: str) -> None:
    error = bad(parse_compute_request, raw)
    assert error.message == f"Request body must be a JSON object, got {kind}"
    assert error.params == {"path": "$"}


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        ({"containers": [1], "data": {}}, "$.containers[0]", "Expected `str`, got `int`"),
        ({"containers": ["a", None], "data": {}}, "$.containers[1]", "Expected `str`, got `null`"),
        ({"containers": "a", "data": {}}, "$.containers", "Expected `array`, got `str`"),
        ({"containers": {"a": 1}, "data": {}}, "$.containers", "Expected `array`, got `object`"),
        ({"containers": ["a"], "data": []}, "$.data", "Expected `object`, got `array`"),
        ({"containers": ["a"], "data": "text"}, "$.data", "Expected `object`, got `str`"),
        ({"containers": ["a"], "data": None}, "$.data", "Expected `object`, got `null`"),
        ({"containers": ["a"], "data": {}, "requires_proof": 1}, "$.requires_proof", "Expected `bool`, got `int`"),
        ({"containers": ["a"], "data": {}, "requires_proof": "yes"}, "$.requires_proof", "Expected `bool`, got `str`"),
    ],
)
def test_wrong_types_name_the_field(value: Any, path: str, message: str) -> None:
    error = bad(parse_compute_request, body(value))
    assert error.params == {"path": path}
    assert error.message == f"Invalid job request: {message}"


@pytest.mark.parametrize(
    ("value", "field"),
    [({"data": {}}, "containers"), ({"containers": ["a"]}, "data"), ({}, "containers")],
)
def test_missing_fields(value: Any, field: str) -> None:
    error = bad(parse_compute_request, body(value))
    assert error.params == {"path": "$"}
    assert error.message == f"Invalid job request: Object missing required field `{field}`"


def test_deeply_nested_body_is_bad_request() -> None:
    for raw in (b"[" * 100_000, b'{"a":' * 100_000, b'{"containers": ["a"], "data": ' + b"[" * 100_000):
        error = bad(parse_compute_request, raw)
        assert error.message.startswith("Invalid JSON")


# -- delegated subscriptions ----------------------------------------------------------------------


def test_valid_delegated_request() -> None:
    request = parse_compute_request(body(delegated_body()))
    assert request == DelegatedSubscriptionRequest(
        subscription=SubscriptionRequest(**SUBSCRIPTION),
        signature=Signature(**SIGNATURE),
        data={"x": 1},
    )
    assert isinstance(request, DelegatedSubscriptionRequest)
    # 256-bit r and s come through exactly
    assert request.signature.r == 2**256 - 1
    assert request.signature.s == 2**200 + 5


def test_delegated_extra_keys_ignored_and_inputs_defaults_empty() -> None:
    value = delegated_body(subscription__inputs=_DELETE)
    value["id"] = "client-id"
    value["subscription"]["extra"] = 1
    request = parse_compute_request(body(value))
    assert isinstance(request, DelegatedSubscriptionRequest)
    assert request.subscription.inputs == ""


def test_body_with_containers_and_subscription_is_a_job_request() -> None:
    value = delegated_body()
    value["containers"] = ["a"]
    request = parse_compute_request(body(value))
    assert request == JobRequest(containers=["a"], data={"x": 1})
    # and its errors are job-request errors
    value["containers"] = [1]
    error = bad(parse_compute_request, body(value))
    assert error.params == {"path": "$.containers[0]"}
    assert error.message.startswith("Invalid job request")


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("subscription__active_at", 2**32 - 1),
        ("subscription__frequency", 2**32 - 1),
        ("subscription__period", 2**32 - 1),
        ("subscription__redundancy", 2**16 - 1),
        ("subscription__max_gas_price", 2**48 - 1),
        ("subscription__max_gas_limit", 2**32 - 1),
        ("signature__nonce", 2**32 - 1),
        ("signature__expiry", 2**32 - 1),
        ("signature__v", 255),
        ("signature__r", 2**256 - 1),
        ("signature__s", 2**256 - 1),
    ],
)
def test_delegated_uint_ranges(field: str, limit: int) -> None:
    path = "$." + field.replace("__", ".")
    assert isinstance(parse_compute_request(body(delegated_body(**{field: 0}))), DelegatedSubscriptionRequest)
    accepted = parse_compute_request(body(delegated_body(**{field: limit})))
    assert isinstance(accepted, DelegatedSubscriptionRequest)
    section, name = field.split("__")
    assert getattr(getattr(accepted, section), name) == limit

    negative = bad(parse_compute_request, body(delegated_body(**{field: -1})))
    assert negative.params == {"path": path}
    assert negative.message.startswith("Invalid delegated subscription request: Expected `int` >= 0")

    too_big = bad(parse_compute_request, body(delegated_body(**{field: limit + 1})))
    assert too_big.message.startswith("Invalid delegated subscription request: ")
    # msgspec names the field itself, or (for the 256-bit values, checked after decoding)
    # the enclosing object with the field's name in the message
    assert too_big.params in ({"path": path}, {"path": path.rsplit(".", 1)[0]})
    assert name in too_big.message or too_big.params == {"path": path}


@pytest.mark.parametrize(
    ("field", "value", "path", "message"),
    [
        ("signature__nonce", "7", "$.signature.nonce", "Expected `int`, got `str`"),
        ("signature__r", 1.5, "$.signature.r", "Expected `int`, got `float`"),
        ("signature__v", True, "$.signature.v", "Expected `int`, got `bool`"),
        ("subscription__owner", 5, "$.subscription.owner", "Expected `str`, got `int`"),
        ("subscription__container_id", ["a"], "$.subscription.container_id", "Expected `str`, got `array`"),
        ("subscription__inputs", None, "$.subscription.inputs", "Expected `str`, got `null`"),
        ("data", [], "$.data", "Expected `object`, got `array`"),
        ("signature", "sig", "$.signature", "Expected `object`, got `str`"),
        ("subscription", [], "$.subscription", "Expected `object`, got `array`"),
    ],
)
def test_delegated_wrong_types(field: str, value: Any, path: str, message: str) -> None:
    error = bad(parse_compute_request, body(delegated_body(**{field: value})))
    assert error.params == {"path": path}
    assert error.message == f"Invalid delegated subscription request: {message}"


@pytest.mark.parametrize(
    ("field", "path", "missing"),
    [
        ("signature", "$", "signature"),
        ("data", "$", "data"),
        ("subscription__owner", "$.subscription", "owner"),
        ("subscription__max_gas_limit", "$.subscription", "max_gas_limit"),
        ("signature__s", "$.signature", "s"),
    ],
)
def test_delegated_missing_fields(field: str, path: str, missing: str) -> None:
    error = bad(parse_compute_request, body(delegated_body(**{field: _DELETE})))
    assert error.params == {"path": path}
    assert error.message == f"Invalid delegated subscription request: Object missing required field `{missing}`"


# -- batches -------------------------------------------------------------------------------------


def test_batch_of_valid_items_in_order() -> None:
    items = [
        {"containers": ["a"], "data": {"i": 0}},
        delegated_body(),
        {"containers": ["b", "c"], "data": {"i": 2}, "id": "ignored"},
    ]
    parsed = parse_batch(body(items))
    assert parsed == [
        JobRequest(containers=["a"], data={"i": 0}),
        DelegatedSubscriptionRequest(
            subscription=SubscriptionRequest(**SUBSCRIPTION), signature=Signature(**SIGNATURE), data={"x": 1}
        ),
        JobRequest(containers=["b", "c"], data={"i": 2}),
    ]


def test_empty_batch() -> None:
    assert parse_batch(b"[]") == []


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b'{"containers": ["a"], "data": {}}', "an object"),
        (b"1", "a number"),
        (b'"[]"', "a string"),
        (b"null", "null"),
        (b"false", "a boolean"),
    ],
)
def test_batch_not_an_array(raw: bytes, kind: str) -> None:
    error = bad(parse_batch, raw)
    assert error.message == f"Batch body must be a JSON array, got {kind}"
    assert error.params == {"path": "$"}


@pytest.mark.parametrize("raw", [b"", b"[", b"[1,]", b"[{]", b"\x00"])
def test_batch_invalid_json(raw: bytes) -> None:
    error = bad(parse_batch, raw)
    assert error.message.startswith("Invalid JSON: ")


def test_batch_per_item_errors_carry_item_paths() -> None:
    items: list[Any] = [
        {"containers": ["a"], "data": {}},
        {"containers": [1], "data": {}},
        "not an object",
        {"data": {}},
        delegated_body(signature__r=-5),
        [],
        {"containers": ["ok"], "data": {"k": [1, 2]}},
        None,
    ]
    parsed = parse_batch(body(items))
    assert len(parsed) == len(items)
    assert parsed[0] == JobRequest(containers=["a"], data={})
    assert parsed[6] == JobRequest(containers=["ok"], data={"k": [1, 2]})
    errors = {i: p for i, p in enumerate(parsed) if isinstance(p, BadRequest)}
    assert sorted(errors) == [1, 2, 3, 4, 5, 7]
    assert {i: e.params for i, e in errors.items()} == {
        1: {"path": "$[1].containers[0]"},
        2: {"path": "$[2]"},
        3: {"path": "$[3]"},
        4: {"path": "$[4].signature.r"},
        5: {"path": "$[5]"},
        7: {"path": "$[7]"},
    }
    assert errors[1].message == "Invalid job request: Expected `str`, got `int`"
    assert errors[2].message == "Request body must be a JSON object, got a string"
    assert errors[3].message == "Invalid job request: Object missing required field `containers`"
    assert errors[7].message == "Request body must be a JSON object, got null"


def test_batch_deeply_nested_is_bad_request() -> None:
    assert bad(parse_batch, b"[" * 100_000).message.startswith("Invalid JSON")


# -- status updates -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["running", "success", "failed"])
def test_valid_status_update(status: str) -> None:
    update = parse_status_update(body({"id": "job-9", "status": status, "containers": ["a", "b"], "extra": 1}))
    assert update == StatusUpdate(id="job-9", status=status, containers=["a", "b"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        ({"id": "x", "status": "done", "containers": []}, "$.status", "Invalid enum value 'done'"),
        ({"id": "x", "status": "SUCCESS", "containers": []}, "$.status", "Invalid enum value 'SUCCESS'"),
        ({"id": "x", "status": 1, "containers": []}, "$.status", None),
        ({"id": "x", "status": "success", "containers": [1]}, "$.containers[0]", "Expected `str`, got `int`"),
        ({"id": "x", "status": "success", "containers": "a"}, "$.containers", "Expected `array`, got `str`"),
        ({"id": 5, "status": "success", "containers": []}, "$.id", "Expected `str`, got `int`"),
        ({"id": "", "status": "success", "containers": []}, "$.id", "Expected `str` of length >= 1"),
        ({"id": "x" * 257, "status": "success", "containers": []}, "$.id", "Expected `str` of length <= 256"),
        ({"status": "success", "containers": []}, "$", "Object missing required field `id`"),
        ({"id": "x", "containers": []}, "$", "Object missing required field `status`"),
        ({"id": "x", "status": "success"}, "$", "Object missing required field `containers`"),
        ([], "$", "Expected `object`, got `array`"),
        ("x", "$", "Expected `object`, got `str`"),
        (None, "$", "Expected `object`, got `null`"),
    ],
)
def test_invalid_status_update(value: Any, path: str, message: str | None) -> None:
    error = bad(parse_status_update, body(value))
    assert error.params == {"path": path}
    assert error.message.startswith("Invalid status: ")
    if message is not None:
        assert error.message == f"Invalid status: {message}"


def test_status_update_invalid_json() -> None:
    error = bad(parse_status_update, b'{"id": ')
    assert error.message.startswith("Invalid JSON: ")
    assert bad(parse_status_update, b'{"a":' * 100_000).message.startswith("Invalid JSON")


# -- properties -----------------------------------------------------------------------------------

PARSERS = [parse_compute_request, parse_batch, parse_status_update]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**260), max_value=2**260)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
KEYS = [
    "containers",
    "data",
    "subscription",
    "signature",
    "requires_proof",
    "id",
    "status",
    "ip",
    "owner",
    "r",
    "s",
    "v",
    "expiry",
    "nonce",
    "container_id",
    "active_at",
    "inputs",
]
keys = st.sampled_from(KEYS) | st.text(max_size=4)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=20,
)


def check_outcome(parse: Any, raw: bytes) -> None:
    try:
        result = parse(raw)
    except BadRequest as error:
        assert not isinstance(error, PayloadTooLarge)
        assert isinstance(error.message, str) and error.message
        if error.params is not None:
            assert error.params["path"].startswith("$")
        return
    if parse is parse_batch:
        assert isinstance(result, list)
        for item in result:
            assert isinstance(item, JobRequest | DelegatedSubscriptionRequest | BadRequest)
            if isinstance(item, BadRequest):
                assert item.params is not None and item.params["path"].startswith("$[")
    elif parse is parse_compute_request:
        assert isinstance(result, JobRequest | DelegatedSubscriptionRequest)
    else:
        assert isinstance(result, StatusUpdate)


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=64))
def test_arbitrary_bytes_only_raise_bad_request(raw: bytes) -> None:
    for parse in PARSERS:
        check_outcome(parse, raw)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_arbitrary_json_only_raises_bad_request(value: Any) -> None:
    raw = msgspec.json.encode(value)
    for parse in PARSERS:
        check_outcome(parse, raw)
    if isinstance(value, list):
        assert len(parse_batch(raw)) == len(value)


def mutate(draw: st.DrawFn, value: Any) -> Any:
    """Replace one random leaf of a valid body with an arbitrary JSON value."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        return {**value, key: mutate(draw, value[key])}
    return draw(json_values)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), which=st.sampled_from(["job", "delegated", "status"]))
def test_mutated_valid_bodies_only_raise_bad_request(data: st.DataObject, which: str) -> None:
    valid: dict[str, Any] = {
        "job": {"containers": ["a"], "data": {"x": 1}, "requires_proof": False},
        "delegated": delegated_body(),
        "status": {"id": "x", "status": "success", "containers": ["a"]},
    }[which]
    raw = msgspec.json.encode(mutate(data.draw, valid))
    for parse in PARSERS:
        check_outcome(parse, raw)


@pytest.mark.parametrize(
    ("parse", "body"),
    [
        (parse_compute_request, b'"\x80"'),
        (parse_compute_request, b'{"containers": ["\x80"], "data": {}}'),
        (parse_status_update, b'{"id": "\x80", "status": "running", "containers": []}'),
    ],
)
def test_invalid_utf8_inside_a_string_is_a_bad_request(parse: Any, body: bytes) -> None:
    with pytest.raises(BadRequest, match="a string is not valid UTF-8"):
        parse(body)


def test_invalid_utf8_in_a_batch_item_is_that_item_s_error() -> None:
    [entry] = parse_batch(b'["\x80"]')
    assert isinstance(entry, BadRequest)
    assert entry.message == "Invalid JSON: a string is not valid UTF-8"
    assert entry.params == {"path": "$[0]"}


# -- nesting depth (server.max_depth) -------------------------------------------------------------


def nested_data(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"k": value}
    return value


@pytest.mark.parametrize("parse", [parse_compute_request, parse_status_update])
def test_a_body_may_nest_up_to_the_limit_and_no_deeper(parse: Any) -> None:
    # The body's object is level 1, so data may nest max_depth - 1 levels.
    at_limit = {"containers": ["a"], "data": nested_data(63), "id": "x", "status": "running"}
    assert depth_of(at_limit) == 64
    if parse is parse_compute_request:
        assert parse_compute_request(body(at_limit)).data == at_limit["data"]
    too_deep = {**at_limit, "data": nested_data(64)}
    with pytest.raises(BadRequest) as caught:
        parse(body(too_deep))
    assert caught.value.message == "Request nested too deeply: more than 64 levels"
    assert caught.value.params == {"path": "$.data" + ".k" * 63, "limit": 64}


def test_the_depth_limit_is_the_callers() -> None:
    request = {"containers": ["a"], "data": {"d": [[[1]]]}}
    assert parse_compute_request(body(request), max_depth=5).data == {"d": [[[1]]]}
    with pytest.raises(BadRequest) as caught:
        parse_compute_request(body(request), max_depth=4)
    assert caught.value.params == {"path": "$.data.d[0][0]", "limit": 4}


def test_a_batch_item_too_deep_is_that_item_s_error() -> None:
    good = {"containers": ["a"], "data": nested_data(63)}
    bad = {"containers": ["a"], "data": {"x": [nested_data(63)]}}
    first, second = parse_batch(body([good, bad]))
    assert isinstance(first, JobRequest)
    assert isinstance(second, BadRequest)
    assert second.message == "Request nested too deeply: more than 64 levels"
    assert second.params is not None and second.params["path"].startswith("$[1].data.x[0]")


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


def test_a_batch_past_max_items_is_413_naming_the_limit() -> None:
    item = {"containers": ["a"], "data": {}}
    assert len(parse_batch(body([item] * 3), max_items=3)) == 3
    with pytest.raises(PayloadTooLarge) as caught:
        parse_batch(body([item] * 4), max_items=3)
    assert caught.value.message == "Too many requests in one batch"
    assert caught.value.params == {"limit": 3, "count": 4}
    assert caught.value.status_hint == 413
