"""A bare raw-ASGI app: the baseline that bench_offchain.py compares the node with.

Every HTTP request (any method, any path) gets the same small JSON body once its request
body has been read. It is served exactly as ``infernet-node`` serves a node: hypercorn's
per-connection server on the asyncio loop behind the node's own accept loop
(``infernet_asgi.serving.serve``), from a TCP_NODELAY listening socket, with the hypercorn
Config from ``infernet_asgi.cli.hypercorn_config``.

Usage: python benchmarks/bare_app.py PORT [HOST]   (HOST defaults to 127.0.0.1)
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from typing import Any

from infernet_asgi.cli import BACKLOG, hypercorn_config, listening_socket, stop_on_signals
from infernet_asgi.serving import serve

BODY = b'{"id":"00000000-0000-0000-0000-000000000000"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode("ascii"))]
START = {"type": "http.response.start", "status": 200, "headers": HEADERS}
# Node's default NodeConfig().shutdown_grace, which cli._serve uses as graceful_timeout.
GRACEFUL_TIMEOUT = 5.0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "http":
        # Read the whole request body, as the node does before it answers.
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if not message.get("more_body", False):
                break
        await send(START)
        await send({"type": "http.response.body", "body": BODY})
    elif kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _serve(sock: socket.socket) -> None:
    stop = stop_on_signals()
    config = hypercorn_config(sock, GRACEFUL_TIMEOUT)
    # The same accept loop and connection cap as infernet-node (at its default cap).
    await serve(app, config, sock, max_connections=4096, shutdown_trigger=stop.wait, backlog=BACKLOG)  # type: ignore[arg-type]


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    port = int(argv[0])
    host = argv[1] if len(argv) == 2 else "127.0.0.1"
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sock = listening_socket(host, port)
    try:
        asyncio.run(_serve(sock))
    finally:
        # hypercorn wrapped the same descriptor in its own socket object and closes it.
        sock.detach()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
