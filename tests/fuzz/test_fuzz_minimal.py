"""The smallest requests that showed each problem the fuzzers found, pinned as plain tests so
that a regression names itself at once (the fuzzers would find it again, more slowly).

Every case goes through the same checks as a fuzzed request (``fuzz_support.send_checked``):
a response in time, no 5xx, a JSON error body, and the connection released afterwards."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from fuzz_support import Target, request, send_checked, wait_finished

pytestmark = pytest.mark.e2e

HOST = b"Host: 127.0.0.1\r\n"

# KNOWN BUG (2): each of these is answered by hypercorn itself (the app never sees it), with
# an empty body and no content-type instead of a JSON error. They pass once the node answers
# protocol errors in JSON like every other error.
PROTOCOL_ERRORS = {
    "not-http": b"THIS IS NOT HTTP\r\n\r\n",
    "no-host": b"GET /health HTTP/1.1\r\n\r\n",
    "bad-header-name": b"GET /health HTTP/1.1\r\n" + HOST + b"Bad Name: x\r\n\r\n",
    "header-block-too-large-431": b"GET /health HTTP/1.1\r\n" + HOST + b"X-A: " + b"a" * 70_000 + b"\r\n\r\n",
    "two-content-lengths": b"POST /api/jobs HTTP/1.1\r\n" + HOST + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "bad-version": b"GET /health HTTP/11\r\n" + HOST + b"\r\n",
    # 501 is the one 5xx allowed here: RFC 9112 6.1 asks for it for a transfer coding the
    # server does not implement (see fuzz_support.server_error_allowed); its body is JSON too.
    "unknown-transfer-encoding-501": b"POST /api/jobs HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip\r\n\r\n{}",
    # Found by the fuzzer, still open after the fix of (2): hypercorn's WebSocket handshake
    # check answers 400 with an empty body (from its WSStream, not the H11Protocol method the
    # node overrides) when an upgrade lacks Sec-WebSocket-Key, has another version, or a body.
    "websocket-handshake-without-key": b"GET /health HTTP/1.1\r\n"
    + HOST
    + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
}


@pytest.mark.parametrize("wire", list(PROTOCOL_ERRORS.values()), ids=list(PROTOCOL_ERRORS))
def test_protocol_error_is_a_json_4xx(target: Target, wire: bytes) -> None:
    send_checked(target, [wire], complete=True, head_request=False, context=repr(wire))


# KNOWN BUG (3): a body the app never reads, in more than 10 chunks that arrive in one read,
# leaves the connection open forever (CLOSE-WAIT) once the client is done.
UNREAD_CHUNKED = {
    "get-health": b"GET /health HTTP/1.1\r\n",
    "get-jobs": b"GET /api/jobs HTTP/1.1\r\n",
    "not-found": b"POST /nope HTTP/1.1\r\n",
    "method-not-allowed": b"DELETE /api/jobs HTTP/1.1\r\n",
}


@pytest.mark.parametrize("line", list(UNREAD_CHUNKED.values()), ids=list(UNREAD_CHUNKED))
def test_unread_chunked_body_releases_the_connection(target: Target, line: bytes) -> None:
    wire = line + HOST + b"Transfer-Encoding: chunked\r\n\r\n" + b"1\r\na\r\n" * 11 + b"0\r\n\r\n"
    send_checked(target, [wire], complete=True, head_request=False, context=repr(wire))


def test_websocket_upgrade_is_not_a_server_error(target: Target) -> None:
    # Found by the fuzzer: InfernetApp raises RuntimeError on a "websocket" scope, so
    # hypercorn answers 500 (empty body) and logs "Error in ASGI Framework" with a traceback
    # for every such request: a client-triggered 5xx and log flood. Any path.
    wire = (
        b"GET /health HTTP/1.1\r\n" + HOST + b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    send_checked(target, [wire], complete=True, head_request=False, context=repr(wire))


@pytest.mark.xfail(
    strict=True,
    reason="open: the node closes a connection whose body it did not read as soon as the response is"
    " handed over; body bytes arriving after that make the kernel reset the connection and the client"
    " can lose the end of a large response (a lingering close is needed in the server layer)",
)
def test_unread_body_arriving_late_does_not_truncate_the_response(target: Target) -> None:
    # KNOWN BUG (3), second face (found by the fuzzer): a GET whose Content-Length body
    # arrives in a second write, after the node has started a large response. The node
    # closes the connection as soon as the response is handed over (the body was never
    # read), the late body bytes meet a closed socket, the kernel answers RST, and the client
    # gets a truncated response (e.g. 128 KiB of ~700 KiB) then "connection reset". A
    # lingering close (keep reading and discarding for a while before closing) avoids it.
    data = {"x": "a" * 700_000, "tag": uuid.uuid4().hex}
    reply = request(target, "POST", "/api/jobs", msgspec.json.encode({"containers": ["echo"], "data": data}))
    assert reply.status == 200, reply
    job_id = reply.json()["id"]
    assert wait_finished(target, job_id)["status"] == "success"
    head = b"GET /api/jobs?id=" + job_id.encode() + b" HTTP/1.1\r\n" + HOST + b"Content-Length: 4\r\n\r\nab"
    # The rest of the body 0.1 s later, once the response is under way.
    send_checked(target, [head, b"cd"], complete=True, head_request=False, context=repr((head, b"cd")), gap=0.1)
