"""Raw HTTP/1.1 over sockets for the fuzz suite, and the checks every response must pass.

Requests are bytes written to a socket as they are (no client library in between, so that
malformed ones reach the server); responses are parsed here, strictly enough to notice a
truncated or malformed one. Every exchange is bounded in time (:data:`REPLY_TIMEOUT`).

The checks:

* :func:`check_reply` -- a response arrived (or, for a request left incomplete on purpose,
  the server closed the connection), complete and well formed; its status is not 5xx (but
  503 with ``Retry-After``, and 501 for a Transfer-Encoding the server does not implement);
  JSON responses parse, and error responses are JSON ``{"error": str, "params"?: {...}}``.
* :func:`check_released` -- after the response the connection is not stuck: a follow-up
  request on it is answered, or the server closes it (a leaked socket otherwise).
* :func:`wait_finished` / :func:`check_node_healthy` -- an accepted job can be read back, and
  the node still runs jobs correctly after the fuzzing.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import quote

import msgspec

_E2E = str(Path(__file__).resolve().parent.parent / "e2e")
if _E2E not in sys.path:  # running tests/fuzz on its own: the e2e helpers are one directory over
    sys.path.insert(0, _E2E)

from e2e_support import SERVICE_SCRIPT, NodeProcess, running_node, subprocess_env  # noqa: E402

__all__ = (
    "SERVICE_SCRIPT",
    "Exchange",
    "Reply",
    "Target",
    "brief",
    "check_node_healthy",
    "check_released",
    "check_reply",
    "decode_json",
    "exchange",
    "fresh_stack",
    "get_job",
    "request",
    "running_node",
    "send_checked",
    "subprocess_env",
    "wait_finished",
)

REPLY_TIMEOUT = 10.0
"""Seconds a complete response may take to arrive (no request here needs more)."""
SEND_TIMEOUT = 3.0
"""Seconds writing a request may stall (the server stopped reading) before we go on to read."""
RELEASE_TIMEOUT = 0.3
"""Seconds the server may take to answer a follow-up request on the same connection, or close
it, before :func:`check_released` looks closer (a stuck connection costs about twice this)."""
JOB_TIMEOUT = 10.0
"""Seconds an accepted job may take to finish (echo-like containers answer in milliseconds)."""
MAX_HEAD = 256 * 1024
"""Bytes of status line and headers we accept in a response before calling it malformed."""

T = TypeVar("T")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: ([^\r\n]*))?")


@dataclass
class Target:
    """A running node under fuzz, and how to tell a correct ``echo`` result."""

    store: str
    node: NodeProcess
    echo_wraps: bool
    """True when ``echo`` is the HTTP ``fast`` service (output ``{"echo": data, ...}``), False
    for the embedded in-process ``echo`` (output ``data`` itself)."""

    @property
    def host(self) -> str:
        return self.node.host

    @property
    def port(self) -> int:
        return self.node.port

    def echo_output(self, output: Any) -> Any:
        """The data an ``echo`` job's output carries."""
        if self.echo_wraps:
            assert isinstance(output, dict) and "echo" in output, brief(output)
            return output["echo"]
        return output

    def log_tail(self, chars: int = 4000) -> str:
        return self.node.output()[-chars:]

    def alive(self) -> None:
        """Fail (with the end of its log) if the node process has exited."""
        status = self.node.proc.poll()
        assert status is None, f"infernet-node ({self.store}) exited with {status}:\n{self.log_tail()}"


@dataclass
class Reply:
    """One parsed HTTP response."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The last value of a header (name compared case-insensitively), or None."""
        value = None
        for key, candidate in self.headers:
            if key.lower() == name:
                value = candidate
        return value

    def json(self) -> Any:
        return decode_json(self.body)

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.headers!r}, {_clip(self.body)})"


@dataclass
class Exchange:
    """What came back for one request."""

    reply: Reply | None
    """The final response, or None when the server closed the connection without one."""
    complete: bool = True
    informational: list[int] = field(default_factory=list)
    send_stalled: bool = False
    sock: socket.socket | None = None
    """The connection, still open (for :func:`check_released`); None once closed."""


def fresh_stack(function: Callable[[], T]) -> T:
    """``function()`` on a thread of its own, whose Python stack starts empty: decoding or
    comparing JSON nested nearly as deep as the recursion limit fails deep inside pytest and
    Hypothesis, but not there."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:  # re-raised in the caller
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="fuzz-fresh-stack")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return cast(T, outcome["value"])


def brief(value: Any, limit: int = 600) -> str:
    """A clipped repr for assertion messages (even of values too deep for repr)."""
    try:
        text = repr(value)
    except RecursionError:
        return f"<{type(value).__name__} nested too deep to show>"
    return text if len(text) <= limit else f"{text[: limit // 2]}...{text[-limit // 2 :]} ({len(text)} chars)"


def decode_json(data: bytes) -> Any:
    """msgspec's decoding (the node's own), on a fresh stack when the JSON is very deep."""
    try:
        return msgspec.json.decode(data)
    except RecursionError:
        return fresh_stack(lambda: msgspec.json.decode(data))


class Malformed(AssertionError):
    """The server sent something that is not a well-formed HTTP/1.1 response."""


class _Reader:
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buf = bytearray()

    def _fill(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except TimeoutError:
            raise TimeoutError from None
        if not chunk:
            raise EOFError
        self.buf += chunk

    def until(self, marker: bytes, limit: int) -> bytes:
        while True:
            index = self.buf.find(marker)
            if index >= 0:
                data = bytes(self.buf[: index + len(marker)])
                del self.buf[: index + len(marker)]
                return data
            if len(self.buf) > limit:
                raise Malformed(f"no {marker!r} within {limit} bytes: {_clip(bytes(self.buf))}")
            self._fill()

    def exact(self, size: int) -> bytes:
        while len(self.buf) < size:
            self._fill()
        data = bytes(self.buf[:size])
        del self.buf[:size]
        return data

    def rest(self) -> bytes:
        try:
            while True:
                self._fill()
        except EOFError:
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data


def _clip(data: bytes, limit: int = 300) -> str:
    if len(data) <= limit:
        return repr(data)
    return f"{data[: limit // 2]!r}...{data[-limit // 2 :]!r} ({len(data)} bytes)"


def _read_reply(reader: _Reader, head_request: bool) -> Reply:
    """Parse one response (framed by Content-Length, chunked, or the connection's end)."""
    head = reader.until(b"\r\n\r\n", MAX_HEAD)
    lines = head[:-4].split(b"\r\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise Malformed(f"bad status line {lines[0]!r}")
    status = int(match.group(1))
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise Malformed(f"bad header line {line!r}")
        headers.append((name.lower(), value.strip()))
    reply = Reply(status, headers, b"")
    if status < 200 or status in (204, 304) or head_request:
        return reply
    encoding = reply.header(b"transfer-encoding")
    length = reply.header(b"content-length")
    if encoding is not None:
        if encoding.lower() != b"chunked":
            raise Malformed(f"unexpected transfer-encoding {encoding!r}")
        body = bytearray()
        while True:
            size_line = reader.until(b"\r\n", 1024)
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise Malformed(f"bad chunk size line {size_line!r}") from None
            if size == 0:
                while reader.until(b"\r\n", 8192) != b"\r\n":  # trailers
                    pass
                break
            body += reader.exact(size)
            if reader.exact(2) != b"\r\n":
                raise Malformed("chunk not followed by CRLF")
        reply.body = bytes(body)
    elif length is not None:
        if not length.isdigit():
            raise Malformed(f"bad content-length {length!r}")
        reply.body = reader.exact(int(length))
    else:
        reply.body = reader.rest()
    return reply


FOLLOW_UP = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
"""Sent on the same connection after the request: the server must answer it (or close)."""


def exchange(
    target: Target,
    parts: list[bytes],
    *,
    complete: bool = True,
    follow_up: bool = True,
    head_request: bool = False,
    timeout: float = REPLY_TIMEOUT,
    keep_open: bool = True,
    gap: float = 0.005,
) -> Exchange:
    """Send ``parts`` (one write each) on a new connection and read the final response.

    ``complete``: the request is whole. Otherwise (left incomplete or framed ambiguously on
    purpose) our sending side is shut after it, so the server sees the end of the stream
    rather than waiting for more; no response is then acceptable. ``gap``: seconds between
    two writes. With ``follow_up`` too,
    :data:`FOLLOW_UP` is written before that, so that a server that took the request as
    complete (and keeps connections alive) answers it and closes at once. With
    ``keep_open`` the socket is returned in :attr:`Exchange.sock` for :func:`check_released`;
    else it is closed.

    Raises:
        AssertionError: No response (and no close) within ``timeout`` seconds, or a malformed one.
    """
    target.alive()
    try:
        sock = socket.create_connection((target.host, target.port), timeout=SEND_TIMEOUT)
    except ConnectionRefusedError:
        target.alive()
        raise
    result = Exchange(reply=None, complete=complete)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        parts = parts if complete or not follow_up else [*parts, FOLLOW_UP]
        for index, part in enumerate(parts):
            try:
                sock.sendall(part)
            except TimeoutError:
                result.send_stalled = True
                break
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered (and closed) before taking all of it: read what it said
            if index + 1 < len(parts):
                time.sleep(gap)  # let the server read the parts one by one
        if not complete and not result.send_stalled:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        reader = _Reader(sock, time.monotonic() + timeout)
        while True:
            try:
                reply = _read_reply(reader, head_request)
            except EOFError:
                if reader.buf:
                    # KNOWN BUG (3), second face: a response cut short. The node closes the
                    # connection right after answering a request whose body it did not read;
                    # body bytes still arriving then meet a closed socket, the kernel resets
                    # the connection, and the unsent rest of a large response is lost
                    # (minimal case in test_fuzz_minimal.py).
                    raise Malformed(f"connection closed inside a response: {_clip(bytes(reader.buf))}") from None
                break  # closed without (another) response
            except TimeoutError:
                raise AssertionError(
                    f"no complete response within {timeout}s (hang); got so far {_clip(bytes(reader.buf))}"
                ) from None
            if reply.status == 101:  # switched protocols: nothing more to parse as HTTP/1.1
                result.reply = reply
                break
            if reply.status < 200:
                result.informational.append(reply.status)
                continue
            result.reply = reply
            break
    except BaseException:
        sock.close()
        raise
    if keep_open:
        result.sock = sock
    else:
        sock.close()
    return result


def _until_closed(sock: socket.socket, seconds: float, received: bytearray) -> bool:
    """Read (and keep) whatever comes for up to ``seconds``; whether the server closed."""
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return True  # reset: closed
        if not chunk:
            return True
        received += chunk


def _health_seconds(target: Target) -> float:
    """How long a fresh ``GET /health`` takes to be answered (the node's current latency)."""
    started = time.monotonic()
    request(target, "GET", "/health")
    return time.monotonic() - started


def check_released(target: Target, result: Exchange) -> None:
    """After the response the connection is still usable or closed, never stuck.

    The client sends :data:`FOLLOW_UP` on the same connection (already sent for an
    incomplete request) and half-closes: the server must answer it and close, or just close.
    If neither happens within :data:`RELEASE_TIMEOUT`, a fresh ``GET /health`` on another
    connection tells a busy node (slow there too: wait longer) from a stuck connection (the
    node answers others at once but never reads this one: a leaked socket). Half-closing
    alone proves nothing: hypercorn keeps an idle keep-alive connection whose client has gone
    until its keep-alive timer (5 s) by design.
    """
    sock = result.sock
    if sock is None:
        return
    result.sock = None
    try:
        if result.complete:
            try:
                sock.settimeout(SEND_TIMEOUT)
                sock.sendall(FOLLOW_UP)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                return  # the server has closed (or reset) the connection: released
        received = bytearray()
        if _until_closed(sock, RELEASE_TIMEOUT, received):
            return
        latency = _health_seconds(target)
        grace = max(RELEASE_TIMEOUT, 20 * latency)
        if _until_closed(sock, grace, received):
            return
        raise AssertionError(
            f"connection stuck: {RELEASE_TIMEOUT + grace:.1f}s after the response the server has neither answered"
            f" a follow-up request on it nor closed it (received {_clip(bytes(received))}), while a fresh"
            f" GET /health on another connection took {latency * 1000:.0f} ms"
        )
    finally:
        sock.close()


# -- checks ---------------------------------------------------------------------------------------


def unsupported_transfer_coding(request_head: bytes) -> bool:
    """Whether the request names a Transfer-Encoding other than plain ``chunked``."""
    for line in re.split(rb"\r?\n", request_head)[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"transfer-encoding" and value.strip().lower() != b"chunked":
            return True
    return False


def server_error_allowed(reply: Reply, request_head: bytes) -> bool:
    """The 5xx we accept: 503 with Retry-After (overload, store unavailable), and 501 for a
    transfer coding the server does not implement (RFC 9112 section 6.1 asks for exactly that)."""
    if reply.status == 503:
        return reply.header(b"retry-after") is not None
    return reply.status == 501 and unsupported_transfer_coding(request_head)


def check_reply(
    target: Target, result: Exchange, *, complete: bool, head_request: bool, context: str, request_head: bytes = b""
) -> None:
    """The checks every response must pass (see the module docstring); ``request_head`` is
    the request's head as sent (for the few statuses that depend on it)."""
    reply = result.reply
    if reply is None:
        # Only a request we left incomplete (and half-closed) may end without a response.
        assert not complete, f"connection closed without a response to a complete request\n{context}"
        return
    where = f"{context}\n-> {reply!r}"
    if reply.status == 101:
        return
    # Found by this suite: any WebSocket upgrade (GET with "Connection: Upgrade" and
    # "Upgrade: websocket") is a 500, InfernetApp raising on the websocket scope.
    assert reply.status < 500 or server_error_allowed(reply, request_head), (
        f"server error {reply.status}\n{where}\nnode log:\n{target.log_tail()}"
    )
    if head_request:
        return
    content_type = (reply.header(b"content-type") or b"").split(b";")[0].strip().lower()
    if reply.status >= 400:
        # KNOWN BUG (2): hypercorn's own protocol-error responses (bad request line, bad or
        # missing Host, header block too large -> 431, bad Content-Length / Transfer-Encoding,
        # a body cut short by the client's close) have an empty body and no content-type
        # instead of a JSON error. Keep this assertion: it passes once the node answers those
        # in JSON like every other error. Found by this suite, beyond (2): hypercorn's
        # WebSocket handshake refusals (400 from its WSStream: no Sec-WebSocket-Key, a body,
        # another version) are empty too.
        assert content_type == b"application/json", f"error response without a JSON content-type\n{where}"
        body = _decode_json(reply, where)
        assert isinstance(body, dict), f"error body is not a JSON object\n{where}"
        assert isinstance(body.get("error"), str) and body["error"], f"error body without an error message\n{where}"
        assert set(body) <= {"error", "params"}, f"unexpected keys in an error body\n{where}"
        if "params" in body:
            assert isinstance(body["params"], dict), f"error params is not an object\n{where}"
        if reply.status == 405:
            assert reply.header(b"allow"), f"405 without Allow\n{where}"
    elif content_type == b"application/json":
        _decode_json(reply, where)


def _decode_json(reply: Reply, where: str) -> Any:
    try:
        return reply.json()
    except msgspec.DecodeError as exc:
        raise AssertionError(f"response body is not JSON ({exc})\n{where}") from None


def send_wire(target: Target, wire: Any) -> Reply | None:
    """:func:`send_checked` for a generated :class:`~fuzz_strategies.Wire`."""
    return send_checked(
        target,
        list(wire.parts),
        complete=wire.complete,
        follow_up=wire.follow_up,
        head_request=wire.head,
        context=repr(wire),
    )


def send_checked(
    target: Target,
    parts: list[bytes],
    *,
    complete: bool,
    head_request: bool,
    context: str,
    follow_up: bool = True,
    gap: float = 0.005,
) -> Reply | None:
    """Send one request and run every per-request check on what comes back; the response."""
    try:
        result = exchange(target, parts, complete=complete, follow_up=follow_up, head_request=head_request, gap=gap)
    except AssertionError as exc:  # a hang or a malformed response: say to what
        raise AssertionError(f"{exc}\n{context}\nnode log:\n{target.log_tail()}") from None
    try:
        request_head = b"".join(parts).split(b"\r\n\r\n", 1)[0]
        check_reply(
            target, result, complete=complete, head_request=head_request, context=context, request_head=request_head
        )
        if result.reply is None or result.reply.status != 101:
            # KNOWN BUG (3): a request whose body the app never reads (GET /health, a 404, a
            # 405, ...) sent as many small chunks (about 10 or more: hypercorn's
            # max_app_queue_size) in one write deadlocks hypercorn's stream: the node never
            # reads or closes the connection (CLOSE-WAIT on its side once the client leaves,
            # one leaked socket per request, and SIGTERM then cannot stop the node within its
            # grace). Passes once unread bodies are drained or their connection is closed.
            try:
                check_released(target, result)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{context}\n-> {result.reply!r}") from None
    finally:
        if result.sock is not None:
            result.sock.close()
    return result.reply


# -- plain requests (well-formed, for the follow-up checks) ---------------------------------------


def request(target: Target, method: str, path: str, body: bytes | None = None) -> Reply:
    """A well-formed request on its own connection; the parsed response (asserted present)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\nConnection: close\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    result = exchange(target, [head.encode("latin-1") + b"\r\n" + (body or b"")], keep_open=False)
    assert result.reply is not None, f"no response to {method} {path}"
    return result.reply


def get_job(target: Target, job_id: str) -> dict[str, Any] | None:
    """GET /api/jobs?id=<job_id>: the job's result, or None if the node does not list it."""
    reply = request(target, "GET", f"/api/jobs?id={quote(job_id, safe='')}")
    # KNOWN BUG (1): a job whose data (or output) is nested ~975-980 levels deep is accepted by
    # POST, but reading it back fails to encode/decode and answers 500. Passes once requests
    # deeper than server.max_depth (64) are refused with 400 at POST.
    assert reply.status == 200, (
        f"GET /api/jobs?id={job_id} of an accepted job answered {reply!r}\nnode log:\n{target.log_tail()}"
    )
    results = reply.json()
    assert isinstance(results, list), brief(results)
    matching = [result for result in results if isinstance(result, dict) and result.get("id") == job_id]
    assert len(matching) <= 1, brief(results)
    return matching[0] if matching else None


def wait_finished(target: Target, job_id: str, timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
    """Poll GET /api/jobs?id= (every answer must be 200) until the job is no longer running."""
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(target, job_id)
        assert job is not None, f"accepted job {job_id} is not listed for its client"
        assert job.get("status") in ("running", "success", "failed"), brief(job)
        if job["status"] != "running":
            return job
        assert time.monotonic() < deadline, f"job {job_id} still running after {timeout}s"
        time.sleep(0.01)


def check_node_healthy(target: Target) -> None:
    """The node still serves: /health, and a fresh echo job round-trips its data."""
    target.alive()
    reply = request(target, "GET", "/health")
    assert reply.status == 200 and reply.json() == {"status": "healthy"}, reply
    data = {"check": uuid.uuid4().hex, "n": [1, 2.5, None, True], "s": "ünïcode"}
    body = msgspec.json.encode({"containers": ["echo"], "data": data})
    reply = request(target, "POST", "/api/jobs", body)
    assert reply.status == 200, f"{reply!r}\nnode log:\n{target.log_tail()}"
    job_id = reply.json()["id"]
    job = wait_finished(target, job_id)
    assert job["status"] == "success", brief(job)
    assert job["result"]["container"] == "echo", brief(job)
    assert target.echo_output(job["result"]["output"]) == data, brief(job)
