"""The app driven with hand-written receive/send: exact ASGI messages, disconnects, odd scopes."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from asgi_scopes import http_scope

from infernet_asgi import InfernetApp

pytestmark = pytest.mark.anyio


class Exchange:
    """Feeds the app a scripted list of receive messages and records what it sends."""

    def __init__(self, *messages: dict[str, Any]) -> None:
        self._messages = list(messages)
        self.received = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.received >= len(self._messages):
            raise AssertionError("the app asked for more messages than the client sent")
        message = self._messages[self.received]
        self.received += 1
        return message

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        start = self.sent[0]
        assert start["type"] == "http.response.start"
        return int(start["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    def json(self) -> Any:
        assert [m["type"] for m in self.sent] == ["http.response.start", "http.response.body"]
        assert self.sent[1].get("more_body", False) is False
        return msgspec.json.decode(self.sent[1]["body"])


def body(data: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": more}


DISCONNECT = {"type": "http.disconnect"}


async def test_response_is_one_start_and_one_body(app: InfernetApp) -> None:
    exchange = Exchange()
    await app(http_scope("GET", "/health"), exchange.receive, exchange.send)
    assert exchange.status == 200
    assert exchange.json() == {"status": "healthy"}
    assert exchange.headers == {b"content-type": b"application/json", b"content-length": b"20"}
    assert exchange.received == 0  # a GET handler does not read the body


async def test_body_in_several_chunks(app: InfernetApp) -> None:
    exchange = Exchange(body(b'{"containers": ', True), body(b"", True), body(b'["echo"], "data": {"k": 1}}'))
    await app(http_scope("POST", "/api/jobs"), exchange.receive, exchange.send)
    assert exchange.status == 200
    assert list(exchange.json()) == ["id"]
    assert exchange.received == 3


@pytest.mark.parametrize(
    "messages",
    [
        [DISCONNECT],
        [body(b'{"containers": ["ec', True), DISCONNECT],
        [body(b'{"containers": ', True), body(b'["echo"], ', True), DISCONNECT],
    ],
)
@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/api/jobs"), ("POST", "/api/jobs/batch"), ("PUT", "/api/status")]
)
async def test_client_disconnect_mid_body_sends_nothing(
    app: InfernetApp, messages: list[dict[str, Any]], method: str, path: str
) -> None:
    exchange = Exchange(*messages)
    await app(http_scope(method, path), exchange.receive, exchange.send)
    assert exchange.sent == []
    assert exchange.received == len(messages)
    assert await app.node.job_ids("127.0.0.1") == []
    # The app keeps serving.
    follow_up = Exchange(body(b'{"containers": ["echo"], "data": {}}'))
    await app(http_scope("POST", "/api/jobs"), follow_up.receive, follow_up.send)
    assert follow_up.status == 200


async def test_declared_oversize_body_is_refused_before_reading(kit: Any) -> None:
    from infernet_core import NodeConfig
    from infernet_core.config import ServerConfig

    app = kit.app(NodeConfig(server=ServerConfig(max_body_bytes=10)))
    async with app.lifespan():
        exchange = Exchange(body(b"x" * 11))
        scope = http_scope("POST", "/api/jobs", headers=[(b"content-length", b"11")])
        await app(scope, exchange.receive, exchange.send)
    assert exchange.status == 413
    assert exchange.json() == {"error": "Request body too large", "params": {"limit": 10}}
    assert exchange.received == 0


@pytest.mark.parametrize("client", [None, ("", 0)])
async def test_missing_client_address_is_400(app: InfernetApp, client: tuple[str, int] | None) -> None:
    exchange = Exchange(body(b'{"containers": ["echo"], "data": {}}'))
    await app(http_scope("POST", "/api/jobs", client=client), exchange.receive, exchange.send)
    assert exchange.status == 400
    assert exchange.json() == {"error": "Could not get client IP address"}
    exchange = Exchange()
    await app(http_scope("GET", "/api/jobs", client=client), exchange.receive, exchange.send)
    assert exchange.status == 400
    assert exchange.json() == {"error": "Could not get client IP address"}


async def test_root_path_in_a_hand_written_scope(app: InfernetApp) -> None:
    exchange = Exchange()
    await app(http_scope("GET", "/x/y/info", root_path="/x/y"), exchange.receive, exchange.send)
    assert exchange.status == 200
    assert exchange.json()["pending"] == {"offchain": 0, "onchain": 0}


async def test_the_scope_is_not_modified(app: InfernetApp) -> None:
    scope = http_scope("GET", "/mnt/api/jobs", root_path="/mnt", query=b"pending=true")
    before = {key: (list(value) if isinstance(value, list) else value) for key, value in scope.items()}
    exchange = Exchange()
    await app(scope, exchange.receive, exchange.send)
    assert exchange.status == 200
    assert exchange.json() == []
    assert scope == before


async def test_unexpected_handler_error_is_a_json_500(
    app: InfernetApp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(client: str, pending: bool | None = None) -> list[str]:
        raise RuntimeError("store exploded")

    monkeypatch.setattr(app.node, "job_ids", broken)
    exchange = Exchange()
    with caplog.at_level("ERROR", logger="infernet_asgi"):
        await app(http_scope("GET", "/api/jobs"), exchange.receive, exchange.send)
    assert exchange.status == 500
    assert exchange.json() == {"error": "Internal server error"}
    assert "store exploded" not in exchange.sent[1]["body"].decode()
    assert any("unhandled error serving GET /api/jobs" in record.getMessage() for record in caplog.records)
