"""The app under a root_path, and mounted inside Starlette and FastAPI host apps.

Frameworks do not forward lifespan events to mounted apps, so each host composes
``infernet_app.lifespan()`` into its own lifespan; the tests enter the host's lifespan
themselves because ASGITransport sends none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from infernet_asgi import InfernetApp

pytestmark = pytest.mark.anyio


async def exercise(kit: Any, client: httpx.AsyncClient, prefix: str) -> None:
    """Health, info, a job round trip, a 404 and a 405, all under ``prefix``."""
    response = await client.get(f"{prefix}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}
    response = await client.get(f"{prefix}/info")
    assert response.status_code == 200
    assert response.json()["pending"] == {"offchain": 0, "onchain": 0}

    job_id = await kit.submit(client, ["echo", "upper"], {"text": "mounted"}, path=f"{prefix}/api/jobs")
    result = await kit.wait_done(client, job_id, intermediate=True, path=f"{prefix}/api/jobs")
    assert result == {
        "id": job_id,
        "status": "success",
        "result": {"container": "upper", "output": {"text": "MOUNTED"}},
        "intermediate": [{"container": "echo", "output": {"text": "mounted"}}],
    }
    response = await client.get(f"{prefix}/api/jobs")
    assert response.json() == [job_id]
    response = await client.post(f"{prefix}/api/jobs/batch", json=[{"containers": ["nope"], "data": {}}])
    assert response.json() == [{"error": "Container not supported", "params": {"container": "nope"}}]

    # Errors name the path relative to the mount point.
    response = await client.get(f"{prefix}/nope")
    assert response.status_code == 404
    assert response.json() == {"error": "Not found", "params": {"path": "/nope"}}
    response = await client.delete(f"{prefix}/api/jobs")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


# -- root_path ----------------------------------------------------------------------------------


async def test_under_root_path(kit: Any, app: InfernetApp) -> None:
    async with kit.client(app, root_path="/mnt") as client:
        await exercise(kit, client, "/mnt")


async def test_under_nested_root_path(kit: Any, app: InfernetApp) -> None:
    async with kit.client(app, root_path="/a/b") as client:
        await exercise(kit, client, "/a/b")


async def test_root_path_is_only_stripped_at_a_segment_boundary(kit: Any, app: InfernetApp) -> None:
    async with kit.client(app, root_path="/mnt") as client:
        response = await client.get("/mntx/health")
        assert response.status_code == 404
        assert response.json() == {"error": "Not found", "params": {"path": "/mntx/health"}}
        response = await client.get("/mnt")
        assert response.status_code == 404
        assert response.json() == {"error": "Not found", "params": {"path": "/"}}


# -- Starlette ----------------------------------------------------------------------------------


async def host_hello(request: Request) -> JSONResponse:
    return JSONResponse({"host": "hello"})


def starlette_host(infernet_app: InfernetApp) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with infernet_app.lifespan():
            yield

    return Starlette(
        routes=[Route("/hello", host_hello), Mount("/infernet", app=infernet_app)],
        lifespan=lifespan,
    )


async def test_mounted_in_starlette(kit: Any) -> None:
    infernet_app = kit.app()
    host = starlette_host(infernet_app)
    async with host.router.lifespan_context(host), kit.client(host) as client:
        assert infernet_app.node.running
        response = await client.get("/hello")
        assert response.status_code == 200
        assert response.json() == {"host": "hello"}
        await exercise(kit, client, "/infernet")
        # A path outside the mount is the host's 404 (plain text), not ours.
        response = await client.get("/api/jobs")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/plain")
    assert not infernet_app.node.running


async def test_mounted_in_starlette_under_a_root_path(kit: Any) -> None:
    infernet_app = kit.app()
    host = starlette_host(infernet_app)
    async with host.router.lifespan_context(host), kit.client(host, root_path="/outer") as client:
        response = await client.get("/outer/hello")
        assert response.json() == {"host": "hello"}
        await exercise(kit, client, "/outer/infernet")


async def test_starlette_host_lifespan_protocol_starts_the_node(kit: Any) -> None:
    # A server (hypercorn, uvicorn) speaks the lifespan protocol to the *host*, which enters
    # the node's lifespan; the mounted app never sees a lifespan message.
    infernet_app = kit.app()
    host = starlette_host(infernet_app)
    to_app, app_inbox = anyio.create_memory_object_stream[dict[str, Any]](2)
    app_outbox, from_app = anyio.create_memory_object_stream[dict[str, Any]](2)
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    async with to_app, app_inbox, app_outbox, from_app, anyio.create_task_group() as tg:
        tg.start_soon(host, scope, app_inbox.receive, app_outbox.send)
        with anyio.fail_after(5):
            await to_app.send({"type": "lifespan.startup"})
            assert await from_app.receive() == {"type": "lifespan.startup.complete"}
            async with kit.client(host) as client:
                await exercise(kit, client, "/infernet")
            await to_app.send({"type": "lifespan.shutdown"})
            assert await from_app.receive() == {"type": "lifespan.shutdown.complete"}
    assert not infernet_app.node.running


# -- FastAPI ------------------------------------------------------------------------------------


async def test_mounted_in_fastapi(kit: Any) -> None:
    infernet_app = kit.app()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with infernet_app.lifespan():
            yield

    host = FastAPI(lifespan=lifespan)

    @host.get("/hello")
    async def hello() -> dict[str, str]:
        return {"host": "fastapi"}

    host.mount("/infernet", infernet_app)

    async with host.router.lifespan_context(host), kit.client(host) as client:
        assert infernet_app.node.running
        response = await client.get("/hello")
        assert response.status_code == 200
        assert response.json() == {"host": "fastapi"}
        await exercise(kit, client, "/infernet")
        # The host's own 404 is FastAPI's, not ours.
        response = await client.get("/nope")
        assert response.status_code == 404
        assert response.json() == {"detail": "Not Found"}
    assert not infernet_app.node.running

    async with kit.client(host) as client:
        response = await client.post("/infernet/api/jobs", json={"containers": ["echo"], "data": {}})
        assert response.status_code == 503
        assert response.json() == {"error": "Node is not running"}
