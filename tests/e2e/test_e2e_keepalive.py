"""Keep-alive without Nagle stalls: many small requests on ONE connection stay fast.

A response whose head and body leave in separate writes, on a socket with Nagle's
algorithm on, waits for the client's delayed ACK (~40 ms) on every keep-alive request.
``infernet-node`` listens on a TCP_NODELAY socket (accepted sockets inherit the option on
Linux), so the median request here takes about a millisecond.
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Iterator

import msgspec
import pytest
from e2e_support import NodeProcess, running_node, wait_done

from infernet_asgi.cli import listening_socket

pytestmark = pytest.mark.e2e

REQUESTS = 100
STALL_LIMIT = 0.015  # seconds; the delayed-ACK stall is ~40 ms
JOB = msgspec.json.encode({"containers": ["echo"], "data": {"x": 1}})


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with running_node(tmp_path_factory.mktemp("keepalive")) as node:
        yield node


class RawHTTP:
    """A minimal HTTP/1.1 client over one TCP socket (so 'one connection' is certain)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        # The client sends each request in one write; NODELAY keeps its side from adding delay.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self.local = self.sock.getsockname()

    def request(self, method: str, target: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.sock.sendall(head.encode("ascii") + b"\r\n" + body)
        status_line = self.reader.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        headers: dict[str, str] = {}
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        payload = self.reader.read(int(headers["content-length"]))
        return int(status_line.split()[1]), headers, payload

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def test_sequential_requests_on_one_raw_connection(node: NodeProcess) -> None:
    conn = RawHTTP(node.host, node.port)
    try:
        posts: list[float] = []
        ids: list[str] = []
        for _ in range(REQUESTS):
            started = time.perf_counter()
            status, headers, payload = conn.request("POST", "/api/jobs", JOB)
            posts.append(time.perf_counter() - started)
            assert status == 200, payload
            assert headers.get("connection", "").lower() != "close"
            ids.append(msgspec.json.decode(payload)["id"])

        gets: list[float] = []
        for job_id in ids:
            started = time.perf_counter()
            status, headers, payload = conn.request("GET", f"/api/jobs?id={job_id}")
            gets.append(time.perf_counter() - started)
            assert status == 200, payload
            [result] = msgspec.json.decode(payload)
            assert result["id"] == job_id
            assert result["status"] in ("running", "success")
        # Still the same connection: the socket was never closed or replaced.
        assert conn.sock.getsockname() == conn.local
        status, _, _ = conn.request("GET", "/health")
        assert status == 200
    finally:
        conn.close()

    assert len(set(ids)) == REQUESTS
    assert statistics.median(posts) < STALL_LIMIT, f"median POST {statistics.median(posts) * 1000:.1f} ms"
    assert statistics.median(gets) < STALL_LIMIT, f"median GET {statistics.median(gets) * 1000:.1f} ms"


def test_sequential_requests_on_one_httpx_connection(node: NodeProcess) -> None:
    local_addresses: set[tuple[str, int]] = set()
    posts: list[float] = []
    gets: list[float] = []
    with node.client() as http:
        ids: list[str] = []
        for _ in range(REQUESTS):
            started = time.perf_counter()
            response = http.post("/api/jobs", content=JOB, headers={"content-type": "application/json"})
            posts.append(time.perf_counter() - started)
            assert response.status_code == 200
            ids.append(response.json()["id"])
            local_addresses.add(response.extensions["network_stream"].get_extra_info("client_addr"))
        for job_id in ids:
            started = time.perf_counter()
            response = http.get("/api/jobs", params={"id": job_id})
            gets.append(time.perf_counter() - started)
            assert response.status_code == 200
            assert response.json()[0]["id"] == job_id
            local_addresses.add(response.extensions["network_stream"].get_extra_info("client_addr"))
        assert wait_done(http, ids[-1])["result"] == {"container": "echo", "output": {"x": 1}}

    # One local (address, port) pair: every request went over the same TCP connection.
    assert len(local_addresses) == 1, local_addresses
    assert statistics.median(posts) < STALL_LIMIT, f"median POST {statistics.median(posts) * 1000:.1f} ms"
    assert statistics.median(gets) < STALL_LIMIT, f"median GET {statistics.median(gets) * 1000:.1f} ms"


def test_listening_socket_has_nodelay_and_accepted_sockets_inherit_it() -> None:
    """The mechanism behind the above: the CLI's listening socket, with a real connection."""
    listener = listening_socket("127.0.0.1", 0)
    try:
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        with socket.create_connection(listener.getsockname()[:2], timeout=5):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()
