"""Hypothesis strategies of the fuzz suite: whole HTTP requests as the bytes a client writes.

JSON is built here as bytes, not from Python values, so that bodies can hold what no encoder
produces: numbers out of every range (``1e400``, a 5,000-digit integer), invalid UTF-8, lone
surrogate escapes, nesting as deep as msgspec's own limit, duplicate keys, trailing junk.
Large payloads are drawn as sizes and made with ``bytes * n``, which keeps generation cheap.

:class:`Wire` is one request ready to send; its ``repr`` is the (clipped) bytes on the wire,
one string per write, which is what a failing example shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar
from urllib.parse import quote_from_bytes

import msgspec
from hypothesis import strategies as st

T = TypeVar("T")

ROUTES: dict[str, tuple[str, ...]] = {
    "/health": ("GET",),
    "/ready": ("GET",),
    "/metrics": ("GET",),
    "/openapi.json": ("GET",),
    "/info": ("GET",),
    "/api/jobs": ("GET", "POST"),
    "/api/jobs/batch": ("POST",),
    "/api/jobs/stream": ("POST",),
    "/api/status": ("PUT",),
    "/resources": ("GET",),
}
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
CONTAINERS = ("echo", "fail500", "nonjson", "internal", "proof")
"""The configured nodes' containers (the embedded default has only ``echo``)."""
MAX_BODY = 1 << 20
"""``server.max_body_bytes``' default."""


def enc(value: Any) -> bytes:
    return msgspec.json.encode(value)


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """One of ``choices``, picked in proportion to its weight (shrinking towards the first)."""
    table: list[st.SearchStrategy[T]] = []
    for weight, strategy in choices:
        table.extend([strategy] * weight)
    return st.integers(0, len(table) - 1).flatmap(lambda index: table[index])


def _clip(data: bytes, limit: int = 700) -> str:
    if len(data) <= limit:
        return repr(data)
    return f"{data[: limit - 200]!r} ... {data[-200:]!r} ({len(data)} bytes)"


@dataclass(frozen=True)
class Wire:
    """One request as bytes, and what the checks need to know about it."""

    parts: tuple[bytes, ...]
    """Written one after the other (a few milliseconds apart)."""
    complete: bool
    """The server has the whole request; False: we half-close after writing (a request left
    incomplete or framed ambiguously on purpose), and no response is then acceptable."""
    follow_up: bool
    """For an incomplete request: write ``fuzz_support.FOLLOW_UP`` after it (before the
    half-close), so that a server that took it as complete answers and closes at once."""
    method: str
    path: str
    body: bytes
    """The body as the server receives it (empty when it is sent unframed, cut short when the
    Content-Length is): what a job-creating request carried."""

    @property
    def head(self) -> bool:
        return self.method == "HEAD"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how Hypothesis shows a failing example
        printer.text(repr(self))

    def __repr__(self) -> str:
        shown = _clip(self.parts[0]) if len(self.parts) == 1 else f"({', '.join(map(_clip, self.parts))})"
        return f"Wire({shown}, complete={self.complete}, follow_up={self.follow_up})"


# -- JSON as bytes ------------------------------------------------------------------------------

RAW_ODD_SCALARS = (
    b"null",
    b"true",
    b"false",
    b"0",
    b"-0",
    b"-0.0",
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"1.7976931348623157e308",
    b"2e308",
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"01",
    b"1.",
    b".5",
    b"+1",
    b"0x10",
    b'""',
    b'"\\ud800"',
    b'"\\udc00\\ud800"',
    b'"\\ud83d\\ude00"',
    b'"\\u0000"',
    b'"\\x41"',
    b'"\xff\xfe"',
    b'"\xc3\x28"',
    b'"\xed\xa0\x80"',
    b'"\xf4\x90\x80\x80"',
    b'"\xc0\xaf"',
    b'"tab\there"',
    b"'single'",
    b"undefined",
    b"",
    b"[",
    b"{",
    b'"unterminated',
    b"[1,]",
    b'{"a":1,}',
)


@cache
def huge_numbers() -> st.SearchStrategy[bytes]:
    digits = st.sampled_from([20, 309, 400, 1000, 4300, 5000, 6000])
    return st.one_of(
        digits.map(lambda n: b"1" + b"0" * n),
        digits.map(lambda n: b"-" + b"9" * n),
        digits.map(lambda n: b"0." + b"0" * n + b"1"),
        digits.map(lambda n: b"1." + b"3" * n),
        st.sampled_from([b"1e99999", b"1e-99999", b"1e" + b"9" * 400, b"-1E+400", b"1e400"]),
    )


STRING_SIZES = (0, 1, 255, 256, 257, 4096, 65536, 300_000, MAX_BODY - 128, MAX_BODY, MAX_BODY + 1)


@cache
def huge_strings() -> st.SearchStrategy[bytes]:
    sizes = st.sampled_from(STRING_SIZES)
    return st.one_of(
        sizes.map(lambda n: b'"' + b"a" * n + b'"'),
        sizes.map(lambda n: b'"' + b"\\n" * (n // 2) + b'"'),
        sizes.map(lambda n: b'"' + "é".encode() * (n // 2) + b'"'),
        sizes.map(lambda n: b'"' + b"\\u00e9" * (n // 6) + b'"'),
    )


def nest(depth: int, shape: str, leaf: bytes = b"1") -> bytes:
    """``leaf`` inside ``depth`` levels of arrays, objects, or both alternating."""
    if shape == "list":
        return b"[" * depth + leaf + b"]" * depth
    if shape == "dict":
        return b'{"a":' * depth + leaf + b"}" * depth
    opening = b"".join(b"[" if level % 2 else b'{"k":' for level in range(depth))
    closing = b"".join(b"]" if level % 2 else b"}" for level in reversed(range(depth)))
    return opening + leaf + closing


DEPTHS = st.one_of(st.integers(0, 80), st.integers(960, 1000), st.integers(0, 1100))


@cache
def deep_values() -> st.SearchStrategy[bytes]:
    """Nesting swept up to (and past) msgspec's own limit (~1000 levels), ~975-985 included."""
    return st.builds(nest, DEPTHS, st.sampled_from(["list", "dict", "mixed"]), st.sampled_from([b"1", b"[]", b"{}"]))


@cache
def plain_scalars() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.integers(-(2**70), 2**70).map(lambda n: str(n).encode()),
        st.floats(allow_nan=False, allow_infinity=False).map(enc),
        st.text(max_size=20).map(enc),
        st.sampled_from([b"null", b"true", b"false"]),
    )


@cache
def scalars() -> st.SearchStrategy[bytes]:
    return weighted(
        (8, plain_scalars()),
        (2, st.sampled_from(RAW_ODD_SCALARS)),
        (1, huge_numbers()),
        (1, huge_strings()),
        (1, deep_values()),
    )


@cache
def keys() -> st.SearchStrategy[bytes]:
    return weighted(
        (8, st.text(max_size=12).map(enc)),
        (1, st.sampled_from([b'"id"', b'"ip"', b'"data"', b'"containers"', b'"__proto__"', b'""'])),
        (1, st.sampled_from([b"1", b"null", b"'k'", b"k", b'"\xff"', b'"\\ud800"'])),
    )


def array(items: list[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


def obj(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return b"{" + b",".join(key + b":" + value for key, value in pairs) + b"}"


def _extend(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.lists(children, max_size=5).map(array),
        st.lists(st.tuples(keys(), children), max_size=5).map(obj),
    )


@cache
def json_values() -> st.SearchStrategy[bytes]:
    """Any JSON-ish value as bytes (mostly valid; now and then odd or malformed)."""
    return st.recursive(scalars(), _extend, max_leaves=10)


@cache
def valid_json_values() -> st.SearchStrategy[bytes]:
    """Valid, modest JSON (what a real client's ``data`` looks like)."""
    return st.recursive(plain_scalars(), _extend_valid, max_leaves=10)


def _extend_valid(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.lists(children, max_size=5).map(array),
        st.lists(st.tuples(st.text(max_size=12).map(enc), children), max_size=5).map(obj),
    )


@cache
def objects() -> st.SearchStrategy[bytes]:
    """A JSON object (as ``data`` should be): mostly valid, sometimes odd inside."""
    return weighted(
        (6, st.lists(st.tuples(st.text(max_size=12).map(enc), valid_json_values()), max_size=5).map(obj)),
        (3, st.lists(st.tuples(keys(), json_values()), max_size=5).map(obj)),
        (1, st.builds(lambda value: obj([(b'"x"', value)]), deep_values())),
        (1, st.builds(lambda value: obj([(b'"x"', value)]), huge_strings())),
        (1, st.builds(lambda value: obj([(b'"x"', value)]), huge_numbers())),
    )


def with_fields(fields: list[tuple[bytes, bytes | None]], extra: list[tuple[bytes, bytes]]) -> bytes:
    """An object of the fields that are present (value not None), then ``extra`` pairs."""
    return obj([(key, value) for key, value in fields if value is not None] + extra)


def _maybe(strategy: st.SearchStrategy[bytes], absent: int = 1, present: int = 9) -> st.SearchStrategy[bytes | None]:
    return weighted((present, strategy), (absent, st.none()))


@cache
def extra_pairs() -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    return weighted(
        (6, st.just([])),
        (3, st.lists(st.tuples(keys(), json_values()), max_size=3)),
    )


# -- request bodies ---------------------------------------------------------------------------------


@cache
def container_lists() -> st.SearchStrategy[bytes]:
    first = st.sampled_from(("echo",) * 6 + CONTAINERS)
    valid = st.builds(lambda head, tail: enc([head, *tail]), first, st.lists(st.sampled_from(CONTAINERS), max_size=2))
    odd = st.sampled_from(
        [
            b"[]",
            enc(["nope"]),
            enc([""]),
            enc(["ECHO"]),
            enc(["echo "]),
            enc(["echo\u0000"]),
            enc(["é"]),
            enc(["a" * 10_000]),
            enc(["echo"] * 1000),
            enc(["echo", "nope"]),
            b'"echo"',
            b"null",
            b"[1]",
            b"[null]",
            b'[["echo"]]',
            b'[{"id":"echo"}]',
            b'["echo",]',
            b'["\xff"]',
            b"{}",
        ]
    )
    return weighted((7, valid), (3, odd), (1, json_values()), (1, deep_values()))


def _job_request(
    containers: bytes | None,
    data: bytes | None,
    proof: bytes | None,
    extra: list[tuple[bytes, bytes]],
    order: list[int],
) -> bytes:
    fields = [(b'"containers"', containers), (b'"data"', data), (b'"requires_proof"', proof)]
    return with_fields([fields[index] for index in order], extra)


@cache
def job_requests() -> st.SearchStrategy[bytes]:
    """JobRequest bodies: every field right, missing, or wrong in some way (keys in any order)."""
    return st.builds(
        _job_request,
        _maybe(container_lists()),
        _maybe(weighted((8, objects()), (2, json_values()))),
        weighted((6, st.none()), (3, st.sampled_from([b"true", b"false"])), (1, json_values())),
        extra_pairs(),
        st.permutations([0, 1, 2]),
    )


UINT_MAX = {"u8": 2**8 - 1, "u16": 2**16 - 1, "u32": 2**32 - 1, "u48": 2**48 - 1, "u256": 2**256 - 1}
SUBSCRIPTION_FIELDS = {
    "owner": "address",
    "container_id": "container_id",
    "inputs": "hex",
    "active_at": "u32",
    "frequency": "u32",
    "period": "u32",
    "redundancy": "u16",
    "max_gas_price": "u48",
    "max_gas_limit": "u32",
}
SIGNATURE_FIELDS = {"nonce": "u32", "expiry": "u32", "v": "u8", "r": "u256", "s": "u256"}


@cache
def _field_value(kind: str) -> st.SearchStrategy[bytes]:
    if kind in UINT_MAX:
        top = UINT_MAX[kind]
        right = st.integers(0, top).map(lambda n: str(n).encode())
        edges = st.sampled_from([-1, 0, top, top + 1, 2**63, 2**64, 2**256, 2**257]).map(lambda n: str(n).encode())
        wrong = st.sampled_from([b"1.5", b"1e400", b'"1"', b"true", b"null", b"[]", b"{}", b'"0x1b"'])
    else:
        right = {
            "address": st.binary(min_size=20, max_size=20).map(lambda raw: enc("0x" + raw.hex())),
            "container_id": st.sampled_from([b'"echo"', b'"echo,fail500"', b'"echo,nope"', b'""', b'","']),
            "hex": st.binary(max_size=64).map(lambda raw: enc("0x" + raw.hex())),
        }[kind]
        edges = st.sampled_from([b'""', b'"0x"', b'"0xzz"', enc("0x" + "ab" * 21), b'"\\u0000"', enc("a" * 70_000)])
        wrong = st.sampled_from([b"1", b"null", b"true", b"[]", b"{}", b'["echo"]'])
    return weighted((6, right), (2, edges), (1, wrong), (1, json_values()))


@cache
def _struct(which: str) -> st.SearchStrategy[bytes]:
    spec = SUBSCRIPTION_FIELDS if which == "subscription" else SIGNATURE_FIELDS
    names = list(spec)
    return st.builds(
        lambda values, extra: with_fields(
            [(enc(name), value) for name, value in zip(names, values, strict=True)], extra
        ),
        st.tuples(*(_maybe(_field_value(spec[name])) for name in names)),
        extra_pairs(),
    )


@cache
def delegated_requests() -> st.SearchStrategy[bytes]:
    """DelegatedSubscriptionRequest bodies (the chain is disabled: valid ones are a 400 too)."""
    return st.builds(
        lambda subscription, signature, data, extra: with_fields(
            [(b'"subscription"', subscription), (b'"signature"', signature), (b'"data"', data)], extra
        ),
        _maybe(weighted((8, _struct("subscription")), (2, json_values())), absent=1, present=20),
        _maybe(weighted((8, _struct("signature")), (2, json_values()))),
        _maybe(weighted((8, objects()), (2, json_values()))),
        extra_pairs(),
    )


@cache
def batch_bodies() -> st.SearchStrategy[bytes]:
    item = weighted((6, job_requests()), (2, delegated_requests()), (2, json_values()))
    small_job = enc({"containers": ["echo"], "data": {}})
    return weighted(
        (8, st.lists(item, max_size=8).map(array)),
        (1, st.sampled_from([999, 1000, 1001, 1500]).map(lambda n: array([small_job] * n))),
        (1, st.sampled_from([b"[]", b"[[]]", b"[null]", b"[1,2,3]", b'[{"containers":["echo"],"data":{}},]'])),
        (1, objects()),
        (1, deep_values()),
    )


@cache
def status_updates() -> st.SearchStrategy[bytes]:
    """PUT /api/status bodies: id, status and containers each right, missing or wrong."""
    ids = weighted(
        (5, st.text(min_size=1, max_size=40).map(enc)),
        (2, st.uuids(version=4).map(lambda value: enc(str(value)))),
        (2, st.sampled_from([b'""', enc("a" * 256), enc("a" * 257), b'"\\u0000"', b'"../x"', b'"a:b{c}"', b'"*"'])),
        (1, json_values()),
    )
    statuses = weighted(
        (6, st.sampled_from([b'"running"', b'"success"', b'"failed"'])),
        (2, st.sampled_from([b'"Success"', b'""', b'"done"', b'"running "', b"1", b"null", b'["success"]'])),
        (1, json_values()),
    )
    containers = weighted((6, container_lists()), (1, json_values()))
    return st.builds(
        lambda job_id, status, names, extra: with_fields(
            [(b'"id"', job_id), (b'"status"', status), (b'"containers"', names)], extra
        ),
        _maybe(ids),
        _maybe(statuses),
        _maybe(containers),
        extra_pairs(),
    )


@cache
def sized_bytes() -> st.SearchStrategy[bytes]:
    """Bytes of any length up to a few hundred (Hypothesis's own binary() stays far shorter)."""
    return st.one_of(
        st.builds(lambda size, byte: bytes([byte]) * size, st.integers(1, 600), st.integers(0, 255)),
        st.binary(min_size=1, max_size=64),
    )


@cache
def junk_bodies() -> st.SearchStrategy[bytes]:
    return weighted(
        (4, sized_bytes()),
        (2, json_values()),
        (1, st.sampled_from([b"\xef\xbb\xbf{}", b"{}\x00", b"{} {}", b" \n\t{}", b"\xff\xfe{\x00}\x00"])),
        (1, st.sampled_from([1000, MAX_BODY, MAX_BODY + 1]).map(lambda n: b"x" * n)),
    )


@cache
def bodies_for(method: str, path: str) -> st.SearchStrategy[bytes]:
    """A body fit (or meant) for the route, else junk."""
    if method == "POST" and path in ("/api/jobs", "/api/jobs/stream"):
        return weighted((6, job_requests()), (2, delegated_requests()), (1, junk_bodies()))
    if method == "POST" and path == "/api/jobs/batch":
        return weighted((6, batch_bodies()), (1, job_requests()), (1, junk_bodies()))
    if method == "PUT" and path == "/api/status":
        return weighted((6, status_updates()), (1, junk_bodies()))
    return weighted((4, st.just(b"")), (1, junk_bodies()), (1, job_requests()))


# -- request lines, queries, headers ---------------------------------------------------------------

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
URL_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/"
QUERY_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/?%"
PERCENT_JUNK = ("%", "%g", "%zz", "%ff%fe", "%00", "%%", "%2", "%C3%28", "%ED%A0%80", "+", "%2B", "%26", "%3D")
FRAMING_HEADERS = {b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"expect", b"host"}


@cache
def query_values() -> st.SearchStrategy[str]:
    return weighted(
        (3, st.uuids(version=4).map(str)),
        (2, st.sampled_from(["", "true", "false", "1", "0", "TRUE", "yes", "maybe", "null", "[]"])),
        (2, st.lists(st.sampled_from(PERCENT_JUNK), min_size=1, max_size=3).map("".join)),
        (2, st.text(alphabet=URL_SAFE.replace("&", "").replace("/", ""), max_size=20)),
    )


@cache
def query_strings() -> st.SearchStrategy[bytes]:
    param = st.tuples(
        st.sampled_from(["id", "id", "id", "pending", "intermediate", "model_id", "ID", "id[]", "", "x"]),
        query_values(),
    ).map(lambda pair: f"{pair[0]}={pair[1]}" if pair[0] != "x" else pair[1])
    return weighted(
        (6, st.lists(param, max_size=6).map(lambda params: "&".join(params).encode("latin-1"))),
        (1, st.sampled_from([999, 1000, 1001]).map(lambda n: "&".join(["id=x"] * n).encode())),
        (1, st.binary(max_size=40).filter(lambda raw: b" " not in raw and b"\r" not in raw and b"\n" not in raw)),
        (1, st.sampled_from([b"", b"&&&", b"=", b"id", b"id&id=", b"?", b"#frag", b"a=b=c", b";", b"%"])),
    )


@cache
def paths() -> st.SearchStrategy[str]:
    odd = [
        "/",
        "/api",
        "/api/jobs/123",
        "/api/jobs/",
        "/health/",
        "//health",
        "/./health",
        "/api/../health",
        "/HEALTH",
        "/api/jobs%2Fbatch",
        "/%68ealth",
        "/api/jobs;x",
        "/service-resources",
        "/api/jobs/batch/x",
        "/" + "a" * 2000,
    ]
    return weighted(
        (6, st.sampled_from(list(ROUTES))),
        (2, st.sampled_from(odd)),
        (1, st.text(alphabet=URL_SAFE, max_size=30).map(lambda text: "/" + text)),
    )


@cache
def header_values() -> st.SearchStrategy[bytes]:
    visible = st.binary(max_size=40).map(
        lambda raw: bytes(b for b in raw if b == 0x09 or 0x20 <= b < 0x7F or b >= 0x80).strip()
    )
    return weighted(
        (6, visible),
        (1, st.sampled_from([b"a\x00b", b"a\x7fb", b"a\rb", b"a\x01b", b" lead", b"trail ", b"", b"\xff\xfe"])),
        (1, st.sampled_from([100, 8000, 17000, 70000]).map(lambda n: b"v" * n)),
    )


@cache
def header_names() -> st.SearchStrategy[bytes]:
    common = [
        b"Accept",
        b"Accept-Encoding",
        b"Authorization",
        b"Cookie",
        b"User-Agent",
        b"X-Forwarded-For",
        b"Forwarded",
        b"X-Real-IP",
        b"Range",
        b"Origin",
        b"Trailer",
        b"TE",
        b"Keep-Alive",
        b"Content-Encoding",
        b"Content-Range",
    ]
    token = st.text(alphabet=TCHARS, min_size=1, max_size=20).map(lambda text: text.encode())
    invalid = st.sampled_from([b"Bad Name", b"", b"X:Y", b"\xffname", b"na\x00me", b"(x)", b"X-\r"])
    return weighted((4, st.sampled_from(common)), (4, token), (1, invalid)).filter(
        lambda name: name.lower() not in FRAMING_HEADERS
    )


@cache
def header_lines() -> st.SearchStrategy[bytes]:
    pair = st.tuples(header_names(), header_values())
    return weighted(
        (8, pair.map(lambda nv: nv[0] + b": " + nv[1])),
        (1, pair.map(lambda nv: nv[0] + b":" + nv[1])),
        (1, pair.map(lambda nv: nv[0] + b" : " + nv[1])),
        (1, pair.map(lambda nv: nv[0] + b": a\r\n " + nv[1])),  # obs-fold
        (1, st.sampled_from([b"no colon here", b":empty-name", b" leading-space: x"])),
    )


CONTENT_TYPES = (
    b"application/json",
    b"application/json; charset=utf-8",
    b"application/json; charset=utf-16",
    b"text/plain",
    b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=--x",
    b"application/octet-stream",
    b"",
    b"*/*",
    b"application/json, text/plain",
)


@cache
def content_type_lines() -> st.SearchStrategy[list[bytes]]:
    line = st.sampled_from(CONTENT_TYPES).map(lambda value: b"Content-Type: " + value)
    return weighted((6, line.map(lambda one: [one])), (1, st.just([])), (1, st.lists(line, min_size=2, max_size=2)))


# -- framing ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Framing:
    kind: str
    chunk_sizes: tuple[int, ...] = ()
    one_write: bool = True
    delta: int = 0
    junk: bytes = b""


def reads_body(method: str, path: str) -> bool:
    """Whether the node reads the request body (else it answers without it)."""
    return method in ("POST", "PUT") and method in ROUTES.get(path, ())


@cache
def framings(exact: int = 12, odd: bool = True, unfinished: bool = True) -> st.SearchStrategy[Framing]:
    """How the body is delimited: exact Content-Length (``exact`` weight), chunked, left
    ``unfinished`` (the client half-closes), or (``odd``) framing that leaves junk for
    hypercorn to refuse.

    A body left unfinished where the node reads it is a protocol error hypercorn answers
    itself (see KNOWN BUG (2)); where the node does not read it, it answers at once."""
    # Many equal small chunks (each one http.request message), or sizes all different.
    sizes = weighted(
        (3, st.builds(lambda count, size: (size,) * count, st.integers(0, 40), st.integers(1, 8))),
        (1, st.lists(st.integers(1, 64), max_size=40).map(tuple)),
    )
    valid: list[tuple[int, st.SearchStrategy[Framing]]] = [
        (exact, st.just(Framing("length"))),
        (4, st.builds(Framing, st.just("chunked"), sizes, weighted((3, st.just(True)), (1, st.just(False))))),
    ]
    if unfinished:
        valid.append((1, st.builds(Framing, st.just("chunked-unterminated"), sizes)))
        valid.append((1, st.builds(Framing, st.just("length-long"), delta=st.integers(1, 50))))
    if not odd:
        return weighted(*valid)
    junk_lengths = st.sampled_from([b"-1", b"abc", b"1e3", b"+5", b" 5 ", b"0x10", b"5, 5", b"9" * 25, b""])
    codings = st.sampled_from([b"gzip", b"identity", b"chunked, gzip", b"gzip, chunked", b"CHUNKED", b"x"])
    return weighted(
        *valid,
        # A body sent unframed or past its Content-Length: the rest is read as the next request.
        (1, st.just(Framing("none"))),
        (1, st.builds(Framing, st.just("length-short"), delta=st.integers(1, 50))),
        (1, st.builds(Framing, st.just("chunked-bad"), sizes, junk=st.sampled_from([b"zz", b"-1", b"f" * 20, b""]))),
        (1, st.builds(Framing, st.just("length-junk"), junk=junk_lengths)),
        (1, st.builds(Framing, st.just("length-twice"), delta=st.integers(0, 3))),
        (1, st.builds(Framing, st.just("te-other"), junk=codings)),
        (1, st.builds(Framing, st.just("length-and-chunked"), sizes)),
    )


def _chunked(body: bytes, sizes: tuple[int, ...]) -> list[bytes]:
    """``body`` cut into chunks of ``sizes`` (the rest in one last chunk), each framed."""
    chunks: list[bytes] = []
    offset = 0
    for size in sizes:
        if offset >= len(body):
            break
        piece = body[offset : offset + size]
        offset += len(piece)
        chunks.append(b"%x\r\n%s\r\n" % (len(piece), piece))
    if offset < len(body):
        chunks.append(b"%x\r\n%s\r\n" % (len(body) - offset, body[offset:]))
    return chunks


def delivered(body: bytes, framing: Framing) -> bytes:
    """The body the server takes as this request's (the rest, if any, is the next request's)."""
    if framing.kind == "none":
        return b""
    if framing.kind == "length-short":
        return body[: max(0, len(body) - framing.delta)]
    return body


def frame(head: bytes, body: bytes, framing: Framing) -> tuple[list[bytes], list[bytes], bool]:
    """Header lines to add, the parts to write after the head, and whether the request is complete."""
    kind = framing.kind
    if kind == "length":
        return ([b"Content-Length: %d" % len(body)] if body or head.startswith(b"P") else []), [body], True
    if kind == "none":
        return [], [body], True  # a body without framing: the server reads it as the next request
    if kind in ("chunked", "chunked-unterminated", "chunked-bad", "length-and-chunked"):
        # Bodies of many tiny chunks: each is one http.request message to an app that may never read it.
        chunks = _chunked(body, framing.chunk_sizes) if body else []
        if kind == "chunked-bad":
            chunks.append(framing.junk + b"\r\nxx\r\n")
        elif kind != "chunked-unterminated":
            chunks.append(b"0\r\n\r\n")
        lines = [b"Transfer-Encoding: chunked"]
        if kind == "length-and-chunked":
            lines.append(b"Content-Length: %d" % len(body))
        parts = [b"".join(chunks)] if framing.one_write else chunks[:24] + [b"".join(chunks[24:])]
        return lines, parts, kind == "chunked"
    if kind == "length-short":
        return [b"Content-Length: %d" % max(0, len(body) - framing.delta)], [body], True
    if kind == "length-long":
        return [b"Content-Length: %d" % (len(body) + framing.delta)], [body], False
    if kind == "length-junk":
        return [b"Content-Length: " + framing.junk], [body], False
    if kind == "length-twice":
        return [b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) + framing.delta)], [body], False
    assert kind == "te-other", kind
    return [b"Transfer-Encoding: " + framing.junk], [body], False


def assemble(
    method: bytes,
    target: bytes,
    version: bytes,
    lines: list[bytes],
    body: bytes,
    framing: Framing,
    *,
    eol: bytes = b"\r\n",
    split_head: bool = False,
    method_name: str = "",
    path: str = "",
    follow_up: bool = True,
) -> Wire:
    request_line = method + b" " + target + (b" " + version if version else b"")
    framing_lines, body_parts, complete = frame(method, body, framing)
    head = request_line + eol + b"".join(line + eol for line in [*lines, *framing_lines]) + eol
    parts = [head, *body_parts] if split_head else [head + body_parts[0], *body_parts[1:]]
    return Wire(
        parts=tuple(part for part in parts if part) or (b"",),
        complete=complete,
        follow_up=follow_up,
        method=method_name,
        path=path,
        body=delivered(body, framing),
    )


@cache
def host_lines() -> st.SearchStrategy[list[bytes]]:
    return weighted(
        (12, st.just([b"Host: 127.0.0.1"])),
        (1, st.just([])),
        (1, st.just([b"Host: 127.0.0.1", b"Host: example.com"])),
        (
            1,
            st.sampled_from([[b"Host: "], [b"Host: a b"], [b"Host: " + b"h" * 300], [b"Host: [::1"], [b"Host: x:y:z"]]),
        ),
    )


WEBSOCKET_UPGRADE = [
    b"Connection: Upgrade",
    b"Upgrade: websocket",
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    b"Sec-WebSocket-Version: 13",
]


@cache
def connection_lines(junk: bool = True) -> st.SearchStrategy[list[bytes]]:
    """Connection handling: keep-alive or close, Expect, a WebSocket or other upgrade; with
    ``junk`` also an Expect value hypercorn refuses itself."""
    return weighted(
        (4, st.just([])),
        (3, st.just([b"Connection: close"])),
        (1, st.just([b"Connection: keep-alive"])),
        (1, st.just([b"Expect: 100-continue"])),
        (1 if junk else 0, st.just([b"Expect: something-else"])),
        (2, st.just(WEBSOCKET_UPGRADE)),
        (1, st.just([b"Connection: Upgrade", b"Upgrade: foo/2"])),
    )


# -- whole requests ---------------------------------------------------------------------------------


@cache
def method_tokens() -> st.SearchStrategy[bytes]:
    junk = [b"get", b"Post", b"TRACE", b"CONNECT", b"FOO", b"M-SEARCH", b"PROPFIND", b"X" * 64, b"G\x00T", b"\xff"]
    return weighted(
        (8, st.sampled_from(METHODS).map(str.encode)),
        (2, st.sampled_from(junk)),
        (1, st.text(alphabet=TCHARS, min_size=1, max_size=12).map(str.encode)),
        (1, st.binary(min_size=0, max_size=8).filter(lambda raw: b" " not in raw and b"\n" not in raw)),
    )


@cache
def request_targets() -> st.SearchStrategy[bytes]:
    route = st.builds(
        lambda path, query: path.encode("latin-1") + (b"?" + query if query is not None else b""),
        paths(),
        _maybe(query_strings(), absent=1, present=1),
    )
    odd = st.sampled_from(
        [
            b"*",
            b"http://127.0.0.1/health",
            b"127.0.0.1:80",
            b"health",
            b"",
            b"/he alth",
            b"/\xff\xfe",
            b"/health\x00",
            b"/health\t",
            b"/%",
            b"/" + b"a" * 20_000,
        ]
    )
    raw = st.binary(min_size=1, max_size=30).filter(lambda data: b" " not in data and b"\r" not in data)
    return weighted((8, route), (2, odd), (1, raw.map(lambda data: b"/" + data)))


VERSIONS = (b"HTTP/1.0", b"HTTP/1.2", b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1", b"http/1.1", b"HTTP/11", b"HTTPS/1.1", b"")


@st.composite
def protocol_requests(draw: st.DrawFn) -> Wire:
    """Anything a client could write: junk methods, targets, versions, header lines, framing."""
    method = draw(method_tokens())
    target = draw(request_targets())
    version = draw(weighted((10, st.just(b"HTTP/1.1")), (2, st.sampled_from(VERSIONS))))
    method_name = method.decode("latin-1")
    path = target.split(b"?")[0].decode("latin-1")
    body = draw(bodies_for(method_name, path) if path in ROUTES else junk_bodies())
    lines = [
        *draw(host_lines()),
        *draw(connection_lines()),
        *draw(content_type_lines()),
        *draw(st.lists(header_lines(), max_size=4)),
    ]
    lines = draw(st.permutations(lines))
    eol = draw(weighted((12, st.just(b"\r\n")), (1, st.just(b"\n"))))
    return assemble(
        method,
        target,
        version,
        lines,
        body,
        draw(framings(exact=8)),
        eol=eol,
        split_head=draw(st.booleans()),
        method_name=method_name,
        path=path,
    )


@st.composite
def api_requests(draw: st.DrawFn) -> Wire:
    """Well-formed HTTP to the real routes, with odd queries, headers and (mostly) odd bodies,
    framed by Content-Length or, where the route reads its body, chunked."""
    path = draw(weighted((10, st.sampled_from(list(ROUTES))), (1, paths())))
    allowed = ROUTES.get(path, ("GET",))
    method = draw(weighted((8, st.sampled_from(allowed)), (1, st.sampled_from(METHODS))))
    query = None
    if method in ("GET", "HEAD") or draw(st.integers(0, 9)) == 0:
        query = draw(_maybe(query_strings(), absent=1, present=2))
    body = draw(bodies_for(method, path))
    lines = [
        b"Host: 127.0.0.1",
        *draw(
            weighted((6, st.just([])), (2, st.just([b"Connection: close"])), (1, st.just([b"Expect: 100-continue"])))
        ),
        *draw(content_type_lines()),
        *draw(st.lists(st.tuples(header_names(), header_values().filter(_valid_value)), max_size=3).map(_lines)),
    ]
    target = path.encode("latin-1") + (b"?" + quote_from_bytes(query, safe=QUERY_SAFE).encode() if query else b"")
    framing = Framing("length")
    if reads_body(method, path) and body:
        chunk_sizes = st.lists(st.integers(1, 4096), min_size=1, max_size=12).map(tuple)
        framing = draw(weighted((8, st.just(framing)), (1, st.builds(Framing, st.just("chunked"), chunk_sizes))))
    return assemble(method.encode(), target, b"HTTP/1.1", lines, body, framing, method_name=method, path=path)


def _valid_value(value: bytes) -> bool:
    return len(value) < 8000 and all(b == 0x09 or 0x20 <= b < 0x7F or b >= 0x80 for b in value)


def _lines(pairs: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [name + b": " + value for name, value in pairs if name and all(chr(b) in TCHARS for b in name)]


@st.composite
def framing_requests(draw: st.DrawFn) -> Wire:
    """Valid HTTP/1.1 heads (the app, not hypercorn, answers them) with bodies framed every
    valid way, on any route and method: chunked bodies of many small chunks where nothing
    reads them (GET, 404, 405), bodies left unfinished, upgrades, HEAD, Expect."""
    path = draw(paths())
    method = draw(weighted((6, st.sampled_from(METHODS)), (1, st.text(alphabet=TCHARS, min_size=1, max_size=10))))
    query = draw(_maybe(query_strings(), absent=2, present=1))
    target = path.encode("latin-1") + (b"?" + quote_from_bytes(query, safe=QUERY_SAFE).encode() if query else b"")
    body = draw(weighted((1, st.just(b"")), (3, sized_bytes()), (2, bodies_for(method, path))))
    lines = [
        b"Host: 127.0.0.1",
        *draw(connection_lines(junk=False)),
        *draw(content_type_lines()),
        *draw(st.lists(st.tuples(header_names(), header_values().filter(_valid_value)), max_size=3).map(_lines)),
    ]
    return assemble(
        method.encode("latin-1"),
        target,
        draw(weighted((8, st.just(b"HTTP/1.1")), (1, st.just(b"HTTP/1.0")))),
        draw(st.permutations(lines)),
        body,
        draw(framings(exact=4, odd=False, unfinished=not reads_body(method, path))),
        split_head=draw(st.booleans()),
        method_name=method,
        path=path,
        follow_up=False,
    )
