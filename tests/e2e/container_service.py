"""A tiny Infernet container service for the end-to-end tests (standard library only).

Run as ``python container_service.py --mode MODE [--delay SECONDS] [--no-record]``. It listens on
127.0.0.1 (port 0 unless ``--port`` is given), prints ``LISTENING <port>`` on stdout once it
accepts connections, and serves:

* ``POST /service_output`` -- behaviour chosen by ``--mode``:

  * ``fast``    -- 200 ``{"echo": data, "source", "destination", "requires_proof", "auth"}``,
    i.e. what the node sent, with ``auth`` the Authorization header (or null);
  * ``slow``    -- the same after sleeping ``--delay`` seconds;
  * ``fail500`` -- 500 ``{"error": "boom"}``;
  * ``nonjson`` -- 200 ``text/plain`` ``not json``;
  * ``hang``    -- never answers;
  * ``stream``  -- 200 with a chunked ``text/plain`` body sent part by part, as ``data`` says:
    ``parts`` (the chunks, default ``["chunk-0\\n", "chunk-1\\n", "chunk-2\\n"]``), ``delay``
    (seconds between them), ``release`` (a file path: the last part waits until that file
    exists, at most ``RELEASE_WAIT`` seconds) and ``break_after`` (after that many parts the
    connection is dropped, leaving the body incomplete).

* ``GET /service-resources[?model_id=X]`` -- by mode as well: ``fail500`` 500, ``nonjson``
  200 text, ``hang`` never answers, any other 200 ``{"mode", "model_id", "auth"}`` (the
  query's ``model_id`` or null, the Authorization header or null).

* ``GET /calls`` -- every ``POST /service_output`` received so far, in order, as
  ``[{"path", "headers": {lowercased name: value}, "body": <parsed JSON or raw text>}]``
  (always ``[]`` with ``--no-record``, which keeps nothing: for long benchmark runs).

Its listen backlog is large, so that hundreds of connections opened at once (a node running
many jobs concurrently) are queued rather than dropped and retried by the kernel a second later.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MODES = ("fast", "slow", "fail500", "nonjson", "hang", "stream")
RELEASE_WAIT = 10.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: the head and the body leave in separate writes, and on a keep-alive
    # connection the body would otherwise wait for the client's delayed ACK (~40 ms a call).
    disable_nagle_algorithm = True
    server: Service

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep stderr quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode())

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        if url.path == "/calls":
            with self.server.lock:
                calls = list(self.server.calls)
            self._json(200, calls)
        elif url.path == "/service-resources":
            self._resources(parse_qs(url.query).get("model_id", [None])[-1])
        else:
            self._json(404, {"error": "not found"})

    def _resources(self, model_id: str | None) -> None:
        mode = self.server.mode
        if mode == "hang":
            time.sleep(3600)
        elif mode == "fail500":
            self._json(500, {"error": "boom"})
        elif mode == "nonjson":
            self._send(200, b"not json", "text/plain")
        else:
            self._json(200, {"mode": mode, "model_id": model_id, "auth": self.headers.get("Authorization")})

    def _stream(self, data: dict[str, Any]) -> None:
        parts: list[str] = data.get("parts", ["chunk-0\n", "chunk-1\n", "chunk-2\n"])
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, part in enumerate(parts):
            if index == data.get("break_after"):
                self.close_connection = True  # the body stays incomplete: no final chunk
                return
            if index:
                time.sleep(data.get("delay", 0.0))
            if index == len(parts) - 1 and data.get("release"):
                deadline = time.monotonic() + RELEASE_WAIT
                while not os.path.exists(data["release"]) and time.monotonic() < deadline:
                    time.sleep(0.01)
            chunk = part.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path != "/service_output":
            self._json(404, {"error": "not found"})
            return
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        if self.server.record:
            with self.server.lock:
                self.server.calls.append(
                    {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                )
        mode = self.server.mode
        payload = body if isinstance(body, dict) else {}
        if mode == "hang":
            time.sleep(3600)
            return
        if mode == "fail500":
            self._json(500, {"error": "boom"})
            return
        if mode == "nonjson":
            self._send(200, b"not json", "text/plain")
            return
        if mode == "stream":
            self._stream(payload.get("data") or {})
            return
        if mode == "slow":
            time.sleep(self.server.delay)
        self._json(
            200,
            {
                "echo": payload.get("data"),
                "source": payload.get("source"),
                "destination": payload.get("destination"),
                "requires_proof": payload.get("requires_proof"),
                "auth": self.headers.get("Authorization"),
            },
        )


class Service(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # listen backlog (socketserver's default is 5)

    def __init__(self, port: int, mode: str, delay: float, record: bool = True) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.mode = mode
        self.delay = delay
        self.record = record
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-call (a node killed on purpose) is no error worth a trace.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--no-record", action="store_true", help="keep no record of calls (GET /calls is [])")
    args = parser.parse_args()
    service = Service(args.port, args.mode, args.delay, record=not args.no_record)
    print(f"LISTENING {service.server_address[1]}", flush=True)
    service.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    sys.exit(main())
