"""hypercorn's HTTP/1.1 connection, with the node's JSON error body where hypercorn answers
by itself, and ended as soon as an idle client leaves.

hypercorn answers a request it cannot parse without asking the app: 400 for a malformed
request line or header, 431 when the head outgrows ``h11_max_incomplete_size``, 501 for a
``Transfer-Encoding`` other than chunked. Its answer has an empty body; here it carries the
node's error shape, ``{"error": ..., "params": {...}}``, like every other error.

hypercorn also keeps a keep-alive connection whose client has closed it between requests
until its keep-alive timer (5 s) runs out, so a crowd of short-lived clients would fill the
connection cap with sockets in CLOSE_WAIT; here the connection ends at once.

hypercorn has no option for either, so :class:`NodeTCPServer` overrides the method reading a
connection and builds each connection's protocol with :class:`JSONErrorH11Protocol`, a
subclass overriding the one method that writes those answers. Both lean on hypercorn
internals, so they are used only with the hypercorn release they were written against
(:data:`HYPERCORN_SUPPORTED`); with any other, connections run on hypercorn's own classes.
"""

from __future__ import annotations

from http import HTTPStatus
from importlib.metadata import version
from itertools import chain
from typing import Any, Final

import h11
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.events import Body, Event, Response
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.ws_stream import WSStream
from hypercorn.typing import ConnectionState
from hypercorn.utils import parse_socket_addr

from infernet_core.codec import encode as _encode

__all__ = ("HYPERCORN_SUPPORTED", "JSONErrorH11Protocol", "NodeTCPServer", "protocol_error_body")

_SUPPORTED_HYPERCORN: Final = ("0.18.",)
"""hypercorn releases whose ``TCPServer.run`` and ``H11Protocol._send_error_response`` the
classes here were written against (the lock pins one of them)."""

HYPERCORN_SUPPORTED: Final = version("hypercorn").startswith(_SUPPORTED_HYPERCORN)
"""Whether the installed hypercorn is one this module supports (else its own classes serve)."""


def protocol_error_body(status: int, max_head_bytes: int) -> dict[str, Any]:
    """The JSON error for a request hypercorn refused with ``status`` before the app saw it."""
    if status == 431:
        return {"error": "Request header fields too large", "params": {"limit": max_head_bytes}}
    if status == 501:
        return {"error": "Transfer-Encoding not supported", "params": {"supported": ["chunked"]}}
    if status == 400:
        return {"error": "Malformed HTTP request"}
    return {"error": "HTTP protocol error", "params": {"status": status}}


class JSONErrorH11Protocol(H11Protocol):
    """hypercorn's HTTP/1.1 protocol, answering protocol errors (and refused WebSocket
    handshakes) with a JSON body."""

    async def stream_send(self, event: Event) -> None:
        # hypercorn's WebSocket stream refuses a handshake it finds invalid (no key, another
        # version, a body) with an empty answer of its own: give it the node's JSON error.
        if (
            isinstance(event, Response)
            and isinstance(self.stream, WSStream)
            and event.status_code >= 400
            and (b"content-length", b"0") in event.headers
        ):
            body = _encode({"error": "WebSocket connections are not served"})
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"connection", b"close"),
            ]
            await super().stream_send(
                Response(stream_id=event.stream_id, status_code=event.status_code, headers=headers)
            )
            await super().stream_send(Body(stream_id=event.stream_id, data=body))
            return
        await super().stream_send(event)

    async def _send_error_response(self, status_code: int) -> None:
        body = _encode(protocol_error_body(status_code, self.config.h11_max_incomplete_size))
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"connection", b"close"),
        ]
        try:
            reason = HTTPStatus(status_code).phrase.encode("ascii")
        except ValueError:
            reason = b""
        response = h11.Response(
            status_code=status_code,
            reason=reason,
            headers=list(chain(headers, self.config.response_headers("h11"))),
        )
        await self._send_h11_event(response)
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())


class _ProtocolWrapper(ProtocolWrapper):
    """hypercorn's protocol switch, starting HTTP/1.1 connections on :class:`JSONErrorH11Protocol`."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        if type(self.protocol) is H11Protocol:
            self.protocol = JSONErrorH11Protocol(
                self.app,
                self.config,
                self.context,
                self.task_group,
                self.state,
                self.ssl,
                self.client,
                self.server,
                self.send,
            )


class NodeTCPServer(TCPServer):
    """One plain-TCP client connection served by hypercorn: protocol errors answered in JSON,
    and the connection ended as soon as an idle client closes it.

    ``run`` is hypercorn 0.18's ``TCPServer.run`` without TLS (``infernet-node`` serves plain
    HTTP), building the connection's protocol with :class:`_ProtocolWrapper`.
    """

    async def _read_data(self) -> None:
        await super()._read_data()
        # The client has closed its side (or reading failed). hypercorn would still hold a
        # connection it finds idle between requests until its keep-alive timer runs out, in
        # CLOSE_WAIT and counted against the connection cap; a request in flight has stopped
        # that timer already and still gets its response.
        await self.idle_task.stop()

    async def run(self) -> None:
        socket = self.writer.get_extra_info("socket")
        try:
            client = parse_socket_addr(socket.family, socket.getpeername())
            server = parse_socket_addr(socket.family, socket.getsockname())
            async with TaskGroup(self.loop) as task_group:
                self._task_group = task_group
                self.protocol = _ProtocolWrapper(
                    self.app,
                    self.config,
                    self.context,
                    task_group,
                    ConnectionState(self.state),
                    False,
                    client,
                    server,
                    self.protocol_send,
                    "http/1.1",
                )
                await self.protocol.initiate()
                await self.idle_task.restart(task_group, self._idle_timeout)
                await self._read_data()
        except OSError:
            pass
        finally:
            await self._close()
