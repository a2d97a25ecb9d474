"""A fast HTTP echo container for benchmarks (standard library only, raw asyncio Protocol).

Run as ``python benchmarks/echo_container.py [--port P] [--delay S]``. It listens on 127.0.0.1 (port 0,
i.e. any free port, unless ``--port`` is given), prints ``LISTENING <port>`` on stdout once it
accepts connections, and serves, on keep-alive HTTP/1.1 connections (pipelined requests
included):

* ``POST /service_output`` -- 200 ``{"echo": data, "source", "destination", "requires_proof",
  "auth"}``: what the node sent, with ``auth`` the Authorization header (or null), as the
  ``fast`` mode of ``tests/e2e/container_service.py`` answers;
  With ``--delay S`` each answer leaves ``S`` seconds later (a slow model; the connection
  stays open meanwhile).
* ``GET /service-resources[?model_id=X]`` -- 200 ``{"mode": "fast", "model_id", "auth"}``;
* ``GET /count`` -- 200 ``{"calls": N}``: the ``POST /service_output`` calls received so far
  (benchmarks compare it with the jobs a node accepted: every job must run exactly once);
* anything else -- 404 ``{"error": "not found"}``.

Request bodies must carry ``Content-Length`` (a chunked request body is answered 411 and the
connection closed). Every response carries ``Content-Length`` and leaves in one write, so the
server costs a few microseconds per call and is never the bottleneck of a client benchmark.
It stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ("EchoProtocol", "main", "serve")

_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 411: b"Length Required", 413: b"Too Large"}


def _response(status: int, value: Any, *, close: bool = False) -> bytes:
    body = json.dumps(value, separators=(",", ":")).encode()
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
        status,
        _REASONS.get(status, b"Unknown"),
        len(body),
    )
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


class EchoProtocol(asyncio.Protocol):
    """One connection: parses requests from a buffer and answers each in one write."""

    calls = 0
    """``POST /service_output`` calls received, over all connections."""
    delay = 0.0
    """Seconds before each ``/service_output`` answer leaves."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and not self.transport.is_closing():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > _MAX_HEAD:
                    self._reply(_response(400, {"error": "head too large"}, close=True), close=True)
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            method, _, rest = lines[0].partition(" ")
            target, _, version = rest.partition(" ")
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._reply(_response(411, {"error": "chunked request bodies are not supported"}, close=True), True)
                return
            try:
                length = int(headers.get("content-length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= _MAX_BODY:
                self._reply(_response(400, {"error": "bad content-length"}, close=True), close=True)
                return
            if len(self.buffer) < end + 4 + length:
                return  # wait for the rest of the body
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            close = headers.get("connection", "").lower() == "close" or (
                version == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive"
            )
            answer = self._answer(method, target, headers, body)
            if self.delay and target.startswith("/service_output"):
                asyncio.get_running_loop().call_later(self.delay, self._reply, answer, close)
            else:
                self._reply(answer, close=close)

    def _answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        url = urlsplit(target)
        auth = headers.get("authorization")
        if method == "POST" and url.path == "/service_output":
            EchoProtocol.calls += 1
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
            if not isinstance(payload, dict):
                payload = {}
            echo = {
                "echo": payload.get("data"),
                "source": payload.get("source"),
                "destination": payload.get("destination"),
                "requires_proof": payload.get("requires_proof"),
                "auth": auth,
            }
            return _response(200, echo)
        if method == "GET" and url.path == "/service-resources":
            model_id = parse_qs(url.query).get("model_id", [None])[-1]
            return _response(200, {"mode": "fast", "model_id": model_id, "auth": auth})
        if method == "GET" and url.path == "/count":
            return _response(200, {"calls": EchoProtocol.calls})
        return _response(404, {"error": "not found"})

    def _reply(self, data: bytes, close: bool) -> None:
        if self.transport is None:  # the client left while a delayed answer waited
            return
        self.transport.write(data)
        if close:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int = 0, host: str = "127.0.0.1") -> None:
    """Serve until SIGINT or SIGTERM, printing ``LISTENING <port>`` once listening."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, host, port, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"LISTENING {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each /service_output answer")
    args = parser.parse_args()
    EchoProtocol.delay = args.delay
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    sys.exit(main())
