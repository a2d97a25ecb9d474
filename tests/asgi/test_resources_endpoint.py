"""GET /resources in-process: in-process containers that offer resources (a mapping, a sync or
an async function of ``model_id``), and those that fail, hang or offer none (left out)."""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest

from infernet_asgi import InfernetApp
from infernet_core import LocalContainer, Node, NodeConfig, echo

pytestmark = pytest.mark.anyio

TIMEOUT = 0.2


def resources_app() -> tuple[InfernetApp, list[str | None]]:
    asked: list[str | None] = []

    def by_model(model_id: str | None) -> Any:
        asked.append(model_id)
        return {"models": [model_id] if model_id else ["a", "b"]}

    async def slow_by_model(model_id: str | None) -> Any:
        await anyio.sleep(0)
        return {"model": model_id, "ready": True}

    def broken(model_id: str | None) -> Any:
        raise RuntimeError("no GPU info")

    async def hanging(model_id: str | None) -> Any:
        await anyio.sleep_forever()

    containers = [
        LocalContainer("fixed", echo, resources={"gpu": "A100", "count": 2}),
        LocalContainer("by-model", echo, resources=by_model),
        LocalContainer("async", echo, resources=slow_by_model),
        LocalContainer("broken", echo, resources=broken),
        LocalContainer("hanging", echo, resources=hanging),
        LocalContainer("none", echo),
        LocalContainer("unrepresentable", echo, resources={"x": object()}),
    ]
    node = Node(NodeConfig(resources_timeout=TIMEOUT), containers=containers)
    return InfernetApp(node), asked


async def test_resources_maps_each_answering_container(kit: Any) -> None:
    app, asked = resources_app()
    async with app.lifespan(), kit.client(app) as client:
        started = time.monotonic()
        response = await client.get("/resources")
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert list(response.json().items()) == [
        ("fixed", {"gpu": "A100", "count": 2}),
        ("by-model", {"models": ["a", "b"]}),
        ("async", {"model": None, "ready": True}),
    ]
    assert asked == [None]
    # The hanging container costs one timeout, not more: all are asked at once.
    assert TIMEOUT <= elapsed < TIMEOUT + 1


async def test_model_id_is_passed_on(kit: Any) -> None:
    app, asked = resources_app()
    async with app.lifespan(), kit.client(app) as client:
        response = await client.get("/resources", params={"model_id": "llama-3"})
    assert response.json() == {
        "fixed": {"gpu": "A100", "count": 2},
        "by-model": {"models": ["llama-3"]},
        "async": {"model": "llama-3", "ready": True},
    }
    assert asked == ["llama-3"]


async def test_no_container_offers_resources(client: httpx.AsyncClient) -> None:
    response = await client.get("/resources")
    assert response.status_code == 200
    assert response.json() == {}


async def test_only_get(client: httpx.AsyncClient) -> None:
    response = await client.post("/resources")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


async def test_not_running_is_503(kit: Any) -> None:
    app, _ = resources_app()
    async with kit.client(app) as client:
        response = await client.get("/resources")
    assert response.status_code == 503
