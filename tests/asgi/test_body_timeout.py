"""Request bodies through the raw ASGI interface: a slow body is answered 408, and a body the
app does not read is dropped while the response goes out, with ``Connection: close``.

The server side is played by hand: ``HypercornLikeChannel`` holds body chunks in a bounded
queue, as hypercorn does, and blocks the app's last response message until it can queue
``http.disconnect`` -- the pattern that left sockets in CLOSE_WAIT when nobody read the body.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import anyio
import msgspec
import pytest
from asgi_scopes import http_scope

from infernet_asgi import InfernetApp
from infernet_core import NodeConfig
from infernet_core.config import ServerConfig

pytestmark = pytest.mark.anyio

TIMEOUT = 0.2


class Recorder:
    """Records what the app sends."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    def json(self) -> Any:
        return msgspec.json.decode(b"".join(m.get("body", b"") for m in self.sent[1:]))


class HypercornLikeChannel(Recorder):
    """hypercorn's per-request plumbing: a queue of at most ``size`` messages for the app,
    and, once the app's response is complete, ``http.disconnect`` put on that queue (waiting
    for room) before the app's ``send`` returns."""

    def __init__(self, size: int = 10) -> None:
        super().__init__()
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(size)

    async def receive(self) -> dict[str, Any]:
        return await self.queue.get()

    async def put(self, message: dict[str, Any]) -> None:
        await self.queue.put(message)

    async def send(self, message: dict[str, Any]) -> None:
        await super().send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            await self.put({"type": "http.disconnect"})


def app_with(**server: Any) -> InfernetApp:
    config = NodeConfig(shutdown_grace=0.2, server=ServerConfig(**server))
    return InfernetApp(_node(config))


def _node(config: NodeConfig) -> Any:
    from infernet_core import Node

    node = Node(config)

    @node.container("echo")
    async def echo(payload: Any) -> Any:
        return payload.data

    return node


async def never() -> dict[str, Any]:
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


JOB_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"40")]


async def test_a_body_that_does_not_arrive_is_answered_408_and_closed() -> None:
    app = app_with(body_timeout=TIMEOUT)
    recorder = Recorder()
    async with app.lifespan():
        started = time.monotonic()
        with anyio.fail_after(5):
            await app(http_scope("POST", "/api/jobs", headers=JOB_HEADERS), never, recorder.send)
        elapsed = time.monotonic() - started
    assert recorder.status == 408
    assert recorder.json() == {"error": "Request body timed out", "params": {"timeout": TIMEOUT}}
    assert recorder.headers[b"connection"] == b"close"
    assert TIMEOUT <= elapsed < TIMEOUT + 1.0


async def test_the_timeout_bounds_the_whole_body_not_each_chunk() -> None:
    app = app_with(body_timeout=TIMEOUT)
    recorder = Recorder()

    async def drip() -> dict[str, Any]:
        await anyio.sleep(TIMEOUT / 10)
        return {"type": "http.request", "body": b" ", "more_body": True}

    async with app.lifespan():
        with anyio.fail_after(5):
            await app(
                http_scope("POST", "/api/jobs", headers=[(b"transfer-encoding", b"chunked")]), drip, recorder.send
            )
    assert recorder.status == 408
    assert recorder.headers[b"connection"] == b"close"


async def test_timeouts_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    app = app_with(body_timeout=0.01)
    caplog.set_level(logging.INFO, logger="infernet_asgi")
    async with app.lifespan(), anyio.create_task_group() as tasks:
        for _ in range(50):
            tasks.start_soon(app, http_scope("POST", "/api/jobs", headers=JOB_HEADERS), never, Recorder().send)
    timeouts = [record for record in caplog.records if "408" in record.getMessage()]
    assert len(timeouts) == 1


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        # A GET with a chunked body the handler never reads: the CLOSE_WAIT leak.
        ("GET", "/health", [(b"transfer-encoding", b"chunked")], 200),
        # A declared length over the limit: refused before reading.
        ("POST", "/api/jobs", [(b"content-length", b"100000")], 413),
        ("POST", "/api/jobs", [(b"transfer-encoding", b"chunked")], 413),  # over the limit as it arrives
    ],
)
async def test_an_unread_body_is_dropped_while_the_response_is_sent(
    method: str, path: str, headers: list[tuple[bytes, bytes]], status: int
) -> None:
    app = app_with(max_body_bytes=16)
    channel = HypercornLikeChannel(size=10)

    async def client() -> None:
        for _ in range(40):  # far more than the queue holds
            await channel.put({"type": "http.request", "body": b"0123456789", "more_body": True})
        await channel.put({"type": "http.request", "body": b"", "more_body": False})

    async with app.lifespan():
        with anyio.fail_after(5):  # without the draining, app and server wait on each other for ever
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(client)
                while not channel.queue.full():  # as in the issue: the chunks are queued first
                    await anyio.sleep(0)
                await app(http_scope(method, path, headers=headers), channel.receive, channel.send)
                tasks.cancel_scope.cancel()
    assert channel.status == status
    assert channel.headers[b"connection"] == b"close"


async def test_a_body_read_to_its_end_keeps_the_connection() -> None:
    app = app_with()
    channel = HypercornLikeChannel()
    body = b'{"containers": ["echo"], "data": {}}'
    await channel.put({"type": "http.request", "body": body, "more_body": False})
    async with app.lifespan():
        with anyio.fail_after(5):
            await app(http_scope("POST", "/api/jobs", headers=JOB_HEADERS), channel.receive, channel.send)
    assert channel.status == 200
    assert b"connection" not in channel.headers


@pytest.mark.parametrize("headers", [[], [(b"content-length", b"0")], [(b"content-length", b"00")]])
async def test_a_request_without_a_body_keeps_the_connection(headers: list[tuple[bytes, bytes]]) -> None:
    app = app_with()
    recorder = Recorder()
    async with app.lifespan():
        await app(http_scope("GET", "/health", headers=headers), never, recorder.send)
    assert recorder.status == 200
    assert b"connection" not in recorder.headers


async def test_no_timeout_by_default_for_requests_built_by_hand() -> None:
    from infernet_asgi.app import Request

    request = Request(http_scope("POST", "/api/jobs"), never, max_body=10)
    assert request._body_timeout == math.inf
