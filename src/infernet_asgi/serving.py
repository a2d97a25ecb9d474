"""Serving an ASGI app on a listening socket: hypercorn's HTTP handling, with a cap on open
connections and a log that floods cannot grow.

hypercorn's own ``serve()`` accepts every connection it is offered: once the process runs out
of descriptors, ``accept()`` fails (EMFILE) and a client that would have been served quickly
waits with the crowd. :func:`serve` runs the accept loop itself and hands each connection to
hypercorn's per-connection server (:class:`~infernet_asgi.protocol.NodeTCPServer`), but only
up to ``max_connections`` at once: beyond it a new connection is answered 503 (JSON, with
``Retry-After``) and closed at once, so the connections already open keep being served.
Accept failures, refusals and any other error the event loop reports are logged once per
interval with a count (:class:`~infernet_asgi.logthrottle.LogThrottle`).

It serves plain HTTP/1.1 (and HTTP/2 over cleartext when a client asks for it) on one socket,
sends no lifespan events (the caller runs the app's node around it) and stops gracefully:
once ``shutdown_trigger`` returns it stops accepting, closes idle keep-alive connections,
and gives requests in flight up to ``config.graceful_timeout`` seconds before cancelling them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any, Final

import msgspec
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.statsd import StatsdLogger
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig
from hypercorn.typing import ASGIFramework

from .logthrottle import DEFAULT_INTERVAL, LogThrottle
from .protocol import HYPERCORN_SUPPORTED, NodeTCPServer

__all__ = ("refusal", "serve", "throttled_exception_handler")

log = logging.getLogger("infernet_asgi.serving")

_CANCEL_WAIT: Final = 1.0
"""Seconds to let connections cancelled after the grace period unwind."""


def refusal(limit: int) -> bytes:
    """The whole HTTP response a connection above the cap gets before it is closed."""
    body = msgspec.json.encode({"error": "Too many connections", "params": {"limit": limit}})
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "retry-after: 1\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


async def serve(
    app: ASGIFramework,
    config: HypercornConfig,
    sock: socket.socket,
    *,
    max_connections: int,
    shutdown_trigger: Callable[[], Awaitable[Any]],
    backlog: int = 2048,
    log_interval: float = DEFAULT_INTERVAL,
) -> None:
    """Serve ``app`` on the listening ``sock`` until ``shutdown_trigger`` returns.

    ``config`` supplies hypercorn's per-connection settings (timeouts, limits, logging); its
    ``bind`` is not used. At most ``max_connections`` connections are served at once. The
    socket is closed on return.
    """
    loop = asyncio.get_running_loop()
    throttle = LogThrottle(log, log_interval)
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(throttled_exception_handler(throttle))
    config.set_statsd_logger_class(StatsdLogger)
    wrapped = ASGIWrapper(app)
    context = WorkerContext(None)
    lifespan_state: dict[str, Any] = {}
    server_class = NodeTCPServer if HYPERCORN_SUPPORTED else TCPServer
    if not HYPERCORN_SUPPORTED:
        log.warning(
            "hypercorn %s is not a release infernet_asgi.protocol supports: its own errors keep"
            " empty bodies, and closed idle connections linger until the keep-alive timeout",
            version("hypercorn"),
        )
    connections: set[asyncio.Task[Any]] = set()
    refused = refusal(max_connections)

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(connections) >= max_connections or context.terminated.is_set():
            throttle.log(
                logging.WARNING,
                "refused",
                "%d connections open (the limit): new connections are answered 503 and closed",
                len(connections),
            )
            writer.write(refused)
            writer.close()  # flushes the answer first; nothing waits for it
            return
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await server_class(wrapped, loop, config, context, lifespan_state, reader, writer)
        finally:
            connections.discard(task)

    server = await asyncio.start_server(on_connection, sock=sock, backlog=backlog)
    try:
        await shutdown_trigger()
    finally:
        await context.terminated.set()
        server.close()
        await _finish(set(connections), config.graceful_timeout)
        throttle.flush()
        loop.set_exception_handler(previous_handler)


async def _finish(connections: set[asyncio.Task[Any]], grace: float) -> None:
    """Wait up to ``grace`` seconds for the connections to end, then cancel the rest."""
    if not connections:
        return
    _, pending = await asyncio.wait(connections, timeout=grace)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=_CANCEL_WAIT)


def throttled_exception_handler(throttle: LogThrottle) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """An event-loop exception handler logging each kind of error once per interval.

    The loop reports ``accept()`` failing for want of descriptors (EMFILE) on every retry;
    repeats of one message with one kind of exception are counted, not logged.
    """

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message") or "unhandled error in the event loop")
        exc = context.get("exception")
        key = (message, type(exc), getattr(exc, "errno", None))
        if isinstance(exc, OSError):  # accept() failures: the errno says it all
            throttle.log(logging.ERROR, key, "%s: %s", message, exc)
        elif isinstance(exc, BaseException):
            throttle.log(logging.ERROR, key, "%s", message, exc_info=exc)
        else:
            throttle.log(logging.ERROR, key, "%s", message)

    return handle
