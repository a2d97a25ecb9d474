"""The lifespan protocol spoken by the app itself (standalone serving), and the node's
running state as clients see it: 503 before start and after stop."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from infernet_asgi import InfernetApp
from infernet_core import ContainerConfig, Node, NodeConfig

pytestmark = pytest.mark.anyio

LIFESPAN_SCOPE: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}


class LifespanDriver:
    """Plays the server's side of the lifespan protocol with hand-written receive/send."""

    def __init__(self) -> None:
        self.to_app, self._app_inbox = anyio.create_memory_object_stream[dict[str, Any]](1)
        self._app_outbox, self.from_app = anyio.create_memory_object_stream[dict[str, Any]](1)

    async def receive(self) -> dict[str, Any]:
        return await self._app_inbox.receive()

    async def send(self, message: dict[str, Any]) -> None:
        await self._app_outbox.send(message)

    async def aclose(self) -> None:
        for stream in (self.to_app, self._app_inbox, self._app_outbox, self.from_app):
            await stream.aclose()


async def test_startup_and_shutdown_complete(kit: Any) -> None:
    app = kit.app()
    driver = LifespanDriver()
    done = anyio.Event()

    async def serve() -> None:
        await app(dict(LIFESPAN_SCOPE), driver.receive, driver.send)
        done.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            with anyio.fail_after(5):
                assert not app.node.running
                await driver.to_app.send({"type": "lifespan.startup"})
                assert await driver.from_app.receive() == {"type": "lifespan.startup.complete"}
                assert app.node.running
                async with kit.client(app) as client:
                    job_id = await kit.submit(client, ["echo"], {"v": 1})
                    assert (await kit.wait_done(client, job_id))["status"] == "success"
                assert not done.is_set()
                await driver.to_app.send({"type": "lifespan.shutdown"})
                assert await driver.from_app.receive() == {"type": "lifespan.shutdown.complete"}
                await done.wait()
    finally:
        await driver.aclose()
    assert not app.node.running


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (
            NodeConfig(manage_containers=True, containers=[ContainerConfig(id="x")]),
            "manage_containers is true, but these containers have no image: x",
        ),
    ],
)
async def test_startup_failed_with_a_message(config: NodeConfig, words: str) -> None:
    app = InfernetApp(Node(config))
    driver = LifespanDriver()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(app, dict(LIFESPAN_SCOPE), driver.receive, driver.send)
            with anyio.fail_after(5):
                await driver.to_app.send({"type": "lifespan.startup"})
                message = await driver.from_app.receive()
        # The app returned after reporting the failure (the task group exited).
    finally:
        await driver.aclose()
    assert message["type"] == "lifespan.startup.failed"
    assert "ConfigError" in message["message"]
    assert words in message["message"]
    assert not app.node.running


async def test_lifespan_context_leaves_an_already_running_node_alone(kit: Any) -> None:
    node = kit.node()
    app = InfernetApp(node)
    async with node:
        async with app.lifespan():
            assert node.running
        assert node.running  # the app did not start it, so it does not stop it
        async with kit.client(app) as client:
            assert (await client.get("/health")).status_code == 200
    assert not node.running


async def test_lifespan_context_starts_and_stops_the_node(kit: Any) -> None:
    app = kit.app()
    async with app.lifespan():
        assert app.node.running
    assert not app.node.running


async def test_lifespan_context_raises_config_errors() -> None:
    from infernet_core import ConfigError

    app = InfernetApp(Node(NodeConfig(manage_containers=True, containers=[ContainerConfig(id="x")])))
    with pytest.raises(ConfigError, match="have no image"):
        async with app.lifespan():
            pass  # pragma: no cover
    assert not app.node.running


async def test_unsupported_scope_type(kit: Any) -> None:
    app = kit.app()

    async def receive() -> dict[str, Any]:  # pragma: no cover - never called
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:  # pragma: no cover - never called
        raise AssertionError

    with pytest.raises(RuntimeError, match="does not serve 'webtransport' scopes"):
        await app({"type": "webtransport", "path": "/"}, receive, send)


async def test_a_websocket_is_refused_with_a_json_error(kit: Any) -> None:
    """The node serves no WebSocket: with the websocket.http.response extension the handshake
    gets the node's JSON 400, without it a close."""
    app = kit.app()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    extensions = {"websocket.http.response": {}}
    await app({"type": "websocket", "path": "/", "extensions": extensions}, receive, send)
    assert [m["type"] for m in sent] == ["websocket.http.response.start", "websocket.http.response.body"]
    assert sent[0]["status"] == 400
    assert sent[1]["body"] == b'{"error":"WebSocket connections are not served"}'
    sent.clear()
    await app({"type": "websocket", "path": "/"}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1003}]


# -- requests when the node is not running ---------------------------------------------------------

NODE_ROUTES = [
    ("GET", "/health", None),
    ("GET", "/info", None),
    ("GET", "/api/jobs", None),
    ("GET", "/api/jobs?id=x", None),
    ("POST", "/api/jobs", {"containers": ["echo"], "data": {}}),
    ("POST", "/api/jobs/batch", [{"containers": ["echo"], "data": {}}]),
    ("PUT", "/api/status", {"id": "x", "status": "running", "containers": []}),
]


@pytest.mark.parametrize(("method", "path", "body"), NODE_ROUTES)
async def test_before_start_is_503(kit: Any, method: str, path: str, body: Any) -> None:
    app = kit.app()
    async with kit.client(app) as client:
        response = await client.request(method, path, json=body)
        assert response.status_code == 503
        assert response.json() == {"error": "Node is not running"}
    # Nothing leaked into the store while the node was down.
    async with app.lifespan(), kit.client(app) as client:
        assert (await client.get("/api/jobs")).json() == []
        assert (await client.get("/info")).json()["pending"] == {"offchain": 0, "onchain": 0}


@pytest.mark.parametrize(("method", "path", "body"), NODE_ROUTES)
async def test_after_stop_is_503(kit: Any, method: str, path: str, body: Any) -> None:
    app = kit.app()
    async with kit.client(app) as client:
        async with app.lifespan():
            job_id = await kit.submit(client, ["echo"], {})
            await kit.wait_done(client, job_id)
        response = await client.request(method, path, json=body)
        assert response.status_code == 503
        assert response.json() == {"error": "Node is not running"}


async def test_routing_errors_do_not_need_a_running_node(kit: Any) -> None:
    app = kit.app()
    async with kit.client(app) as client:
        response = await client.get("/nope")
        assert response.status_code == 404
        assert response.json() == {"error": "Not found", "params": {"path": "/nope"}}
        response = await client.delete("/api/jobs")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, POST"
