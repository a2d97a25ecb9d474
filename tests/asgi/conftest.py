"""Fixtures for the in-process ASGI tests: a node with in-process containers, an app over it,
and httpx clients that reach the app through ``ASGITransport`` (no sockets, no traffic).

``ASGITransport`` sends no lifespan messages, so every test that needs a running node enters
``app.lifespan()`` itself (the ``app`` fixture does it for the common case).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import httpx
import pytest

from infernet_asgi import InfernetApp
from infernet_core import ContainerInput, Node, NodeConfig

LOCAL = ("127.0.0.1", 1234)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Kit:
    """Builds nodes, apps and clients for one test, and records what containers saw.

    Containers every node gets:

    * ``echo``     -- returns its input data;
    * ``upper``    -- a *sync* function (runs in a worker thread): upper-cases ``data["text"]``;
    * ``suffix``   -- appends ``"!"`` to ``data["text"]``;
    * ``boom``     -- raises ``RuntimeError("kaboom")``;
    * ``internal`` -- not external (may not come first);
    * ``gated``    -- waits until ``kit.gate`` is set, then returns its data.
    """

    def __init__(self) -> None:
        self.gate = anyio.Event()
        self.calls: list[tuple[str, ContainerInput]] = []

    def node(self, config: NodeConfig | None = None) -> Node:
        # A short grace so a test that leaves a gated job running does not slow the suite.
        node = Node(config if config is not None else NodeConfig(shutdown_grace=0.2))
        calls = self.calls
        gate = self.gate

        @node.container("echo", description="Returns its input")
        async def echo(payload: ContainerInput) -> Any:
            calls.append(("echo", payload))
            return payload.data

        @node.container("upper")
        def upper(payload: ContainerInput) -> Any:
            calls.append(("upper", payload))
            return {"text": payload.data["text"].upper()}

        @node.container("suffix")
        async def suffix(payload: ContainerInput) -> Any:
            calls.append(("suffix", payload))
            return {"text": payload.data["text"] + "!"}

        @node.container("boom")
        async def boom(payload: ContainerInput) -> Any:
            calls.append(("boom", payload))
            raise RuntimeError("kaboom")

        @node.container("internal", external=False)
        async def internal(payload: ContainerInput) -> Any:
            calls.append(("internal", payload))
            return {"internal": payload.data}

        @node.container("gated")
        async def gated(payload: ContainerInput) -> Any:
            calls.append(("gated", payload))
            await gate.wait()
            return payload.data

        return node

    def app(self, config: NodeConfig | None = None) -> InfernetApp:
        return InfernetApp(self.node(config))

    def client(
        self, app: Any, client: tuple[str, int] = LOCAL, root_path: str = ""
    ) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app, client=client, root_path=root_path)
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    def called(self) -> list[str]:
        return [name for name, _ in self.calls]

    @staticmethod
    async def submit(
        client: httpx.AsyncClient, containers: list[str], data: dict[str, Any], path: str = "/api/jobs"
    ) -> str:
        response = await client.post(path, json={"containers": containers, "data": data})
        assert response.status_code == 200, response.text
        body = response.json()
        assert list(body) == ["id"]
        assert isinstance(body["id"], str)
        return body["id"]

    @staticmethod
    async def wait_done(
        client: httpx.AsyncClient, job_id: str, *, intermediate: bool = False, path: str = "/api/jobs"
    ) -> dict[str, Any]:
        params = {"id": job_id, **({"intermediate": "true"} if intermediate else {})}
        with anyio.fail_after(5):
            while True:
                response = await client.get(path, params=params)
                assert response.status_code == 200, response.text
                [result] = response.json()
                if result["status"] != "running":
                    return result
                await anyio.sleep(0.005)


@pytest.fixture
async def kit(anyio_backend: str) -> Kit:
    return Kit()


@pytest.fixture
async def app(kit: Kit) -> AsyncIterator[InfernetApp]:
    app = kit.app()
    async with app.lifespan():
        yield app
        kit.gate.set()  # let any gated job finish so the node stops at once


@pytest.fixture
async def client(kit: Kit, app: InfernetApp) -> AsyncIterator[httpx.AsyncClient]:
    async with kit.client(app) as client:
        yield client
