"""Connections against the real ``infernet-node``: a crowd cannot starve it, and every
connection ends, whatever the client sends and however it leaves.

* Stalled bodies: more connections than the node's starting descriptor limit, each sending a
  head and then stalling its body. The node raised its limit at start, so it holds them all,
  still answers a fresh client's ``/health`` at once, answers each stalled one 408 (JSON,
  ``Connection: close``) after ``server.body_timeout`` and closes it, and logs the 408s once.
* Unread bodies: thousands of requests whose bodies the node does not read (a ``GET`` with a
  chunked body, bodies over ``server.max_body_bytes``, a client that leaves mid-body) leave
  the node's descriptor count where it was: no socket stays in CLOSE_WAIT.
* The connection cap: above ``server.max_connections`` a new connection is answered 503 and
  closed at once, while the connections already open keep being served.
* Errors hypercorn answers by itself (a malformed request, a head too large, an unknown
  ``Transfer-Encoding``) carry the node's JSON error body.

Socket counts are read from ``/proc/PID/fd`` (Linux).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from e2e_support import NodeProcess, running_node, start_node

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc"),
]

BODY_TIMEOUT = 1.0
MAX_BODY = 1024
CHILD_DESCRIPTORS = 256
"""The soft descriptor limit the stalled-bodies node starts with (it raises it)."""
STALLED = 300
"""More stalled connections than ``CHILD_DESCRIPTORS`` allows."""
CAP = 16
SETTLE = 5.0
"""Seconds the node gets to close connections before its descriptor count must be back."""

HEALTH_CHUNKED = (
    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\na\r\n" * 12 + b"0\r\n\r\n"
)
HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def sockets(pid: int) -> int:
    """How many sockets process ``pid`` holds open (a connection in CLOSE_WAIT is one)."""
    return sum(link.startswith("socket:") for link in fd_report(pid))


def fd_report(pid: int) -> list[str]:
    """What process ``pid``'s descriptors point at."""
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return sorted(links)


def settled_sockets(pid: int) -> int:
    """The sockets of process ``pid`` once the count has held still for a moment (the
    connection of a client that has just left may still be closing)."""
    count = sockets(pid)
    for _ in range(20):
        time.sleep(0.1)
        count, previous = sockets(pid), count
        if count == previous:
            break
    return count


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@contextmanager
def child_descriptor_limit(soft: int) -> Iterator[None]:
    """Processes started in the block begin with a soft ``RLIMIT_NOFILE`` of ``soft``."""
    before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < STALLED + 256:
        pytest.skip(f"the hard descriptor limit ({hard}) leaves no room to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (before, hard))


def connect(node: NodeProcess, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((node.host, node.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the node sends until it closes the connection (a reset counts as closed)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def parse(reply: bytes) -> tuple[int, dict[str, str], Any]:
    """Status, headers and JSON body of ONE whole response."""
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    assert len(body) == int(headers["content-length"]), reply
    return int(status_line.split()[1]), headers, json.loads(body) if body else None


def exchange(node: NodeProcess, request: bytes, *, read: bool = True) -> bytes:
    """Send ``request`` on a new connection; read the reply until the node closes (or not)."""
    with connect(node) as sock:
        sock.sendall(request)
        return read_until_closed(sock) if read else b""


def request_on(sock: socket.socket, request: bytes) -> tuple[int, dict[str, str], Any]:
    """One request on an open keep-alive connection, and its response."""
    sock.sendall(request)
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {reply!r}"
        reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    length = int(
        next(line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")).split(b":")[1]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return parse(head + b"\r\n\r\n" + body)


def log_lines(node: NodeProcess) -> list[str]:
    return node.output().splitlines()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    config = {
        "manage_containers": False,
        "shutdown_grace": 1,
        "server": {"body_timeout": BODY_TIMEOUT, "max_body_bytes": MAX_BODY},
    }
    with running_node(tmp_path_factory.mktemp("connections"), config) as node:
        yield node


def test_stalled_bodies_do_not_starve_the_node(tmp_path: Path) -> None:
    config = {"manage_containers": False, "shutdown_grace": 1, "server": {"body_timeout": BODY_TIMEOUT}}
    with child_descriptor_limit(CHILD_DESCRIPTORS):
        node = start_node(tmp_path, config)
    stalled: list[socket.socket] = []
    try:
        assert f"(was {CHILD_DESCRIPTORS};" in node.output()
        baseline = settled_sockets(node.pid)
        lines_before = len(log_lines(node))
        head = b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n"
        started = time.monotonic()
        for _ in range(STALLED):
            sock = connect(node)
            stalled.append(sock)
            sock.sendall(head + b'{"containers": ["ec')
        # The node holds every one of them: more than the limit it started with.
        assert wait_for(lambda: sockets(node.pid) >= baseline + STALLED, 5.0), sockets(node.pid)

        with node.client() as http:
            asked = time.monotonic()
            response = http.get("/health", timeout=1.0)
            assert response.status_code == 200
            assert time.monotonic() - asked < 1.0

        for sock in stalled:
            status, headers, body = parse(read_until_closed(sock))
            assert status == 408
            assert headers["connection"] == "close"
            assert body == {"error": "Request body timed out", "params": {"timeout": BODY_TIMEOUT}}
        elapsed = time.monotonic() - started
        assert BODY_TIMEOUT <= elapsed < BODY_TIMEOUT + 5.0

        assert wait_for(lambda: sockets(node.pid) <= baseline, SETTLE), (baseline, sockets(node.pid))
        # 300 timeouts: one line now, and at most one count when the interval ends.
        new_lines = log_lines(node)[lines_before:]
        assert len(new_lines) <= 2, new_lines
    finally:
        for sock in stalled:
            sock.close()
        status = node.stop()
    assert status == 0, node.output()


UNREAD_BODIES = {
    # The leak: a GET whose chunked body the app never reads.
    "get-with-chunked-body": (HEALTH_CHUNKED, 200, True),
    # A chunked body past the limit: refused after MAX_BODY bytes, the rest unread.
    "oversize-chunked-body": (
        b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        + (b"64\r\n" + b"x" * 100 + b"\r\n") * 40
        + b"0\r\n\r\n",
        413,
        True,
    ),
    # A declared length past the limit: refused before reading, the body still arrives.
    "oversize-declared-body": (
        b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000,
        413,
        True,
    ),
    # A GET whose body never ends: answered at once, the connection closed.
    "get-with-stalled-body": (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nabc", 200, True),
    # The client leaves mid-body without reading anything.
    "client-leaves-mid-body": (
        b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nabc",
        None,
        False,
    ),
}


@pytest.mark.parametrize("case", list(UNREAD_BODIES))
def test_unread_bodies_do_not_leak_connections(node: NodeProcess, case: str) -> None:
    request, expected, read = UNREAD_BODIES[case]
    count = 1000 if case == "get-with-chunked-body" else 300
    baseline = settled_sockets(node.pid)
    for _ in range(count):
        reply = exchange(node, request, read=read)
        if expected is not None:
            status, headers, _ = parse(reply)
            assert status == expected
            assert headers["connection"] == "close"
    assert wait_for(lambda: sockets(node.pid) <= baseline, SETTLE), (baseline, sockets(node.pid))
    with connect(node) as sock:
        assert request_on(sock, HEALTH)[0] == 200


def test_read_bodies_keep_the_connection_alive(node: NodeProcess) -> None:
    job = b'{"containers": ["echo"], "data": {}}'
    request = (
        b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(job)}\r\n\r\n".encode()
        + job
    )
    with connect(node) as sock:
        for _ in range(3):
            status, headers, _ = request_on(sock, request)
            assert status == 400  # the node has no containers; the body was read all the same
            assert "connection" not in headers


PROTOCOL_ERRORS = {
    "malformed-request-line": (b"THIS IS NOT HTTP\r\n\r\n", 400, {"error": "Malformed HTTP request"}),
    "head-too-large": (
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 17_000,
        431,
        {"error": "Request header fields too large", "params": {"limit": 16384}},
    ),
    "unknown-transfer-encoding": (
        b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
        {"error": "Transfer-Encoding not supported", "params": {"supported": ["chunked"]}},
    ),
}


@pytest.mark.parametrize("case", list(PROTOCOL_ERRORS))
def test_protocol_errors_are_json(node: NodeProcess, case: str) -> None:
    request, expected_status, expected_body = PROTOCOL_ERRORS[case]
    status, headers, body = parse(exchange(node, request))
    assert (status, body) == (expected_status, expected_body)
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"


def test_connections_above_the_cap_are_refused_at_once(tmp_path: Path) -> None:
    config = {"manage_containers": False, "shutdown_grace": 1, "server": {"max_connections": CAP}}
    node = start_node(tmp_path, config)
    held: list[socket.socket] = []
    try:
        assert f"serving at most {CAP} connections" in node.output()
        lines_before = len(log_lines(node))
        while len(held) < CAP:
            # The start-up health check's connection may still count for a moment.
            sock = connect(node)
            sock.sendall(HEALTH)
            if first_bytes(sock).startswith(b"HTTP/1.1 200"):
                held.append(sock)
            else:
                sock.close()
                time.sleep(0.02)

        started = time.monotonic()
        for _ in range(50):
            with connect(node, timeout=1.0) as extra:
                reply = read_until_closed(extra)
                if reply:  # the 503 can be lost to a reset when the request went unread
                    status, headers, body = parse(reply)
                    assert status == 503
                    assert headers["retry-after"] == "1"
                    assert body == {"error": "Too many connections", "params": {"limit": CAP}}
        assert time.monotonic() - started < 2.0

        for sock in held:  # the connections already open are still served
            assert request_on(sock, HEALTH)[0] == 200
        refusals = [line for line in log_lines(node)[lines_before:] if "answered 503" in line]
        assert len(refusals) == 1, refusals

        held.pop().close()

        def served() -> bool:
            with connect(node, timeout=1.0) as sock:
                sock.sendall(HEALTH)
                return first_bytes(sock).startswith(b"HTTP/1.1 200")

        assert wait_for(served, 2.0)

        # SIGTERM with idle keep-alive connections and a request in flight (a stalled body):
        # the node still stops within its grace period, and cleanly.
        held[0].sendall(b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n")
        time.sleep(0.1)
        stopping = time.monotonic()
        status = node.stop()
        assert status == 0, node.output()
        assert time.monotonic() - stopping < 1 + 2.0
    finally:
        node.stop()
        for sock in held:
            sock.close()


def first_bytes(sock: socket.socket) -> bytes:
    """The first bytes of the node's reply, or b"" if it closed the connection."""
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""
