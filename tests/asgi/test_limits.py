"""The request limits over HTTP: nesting depth (400 naming the limit and the path), batch size
(413 naming the limit), both from the node's config; and anything POST /api/jobs accepts,
GET /api/jobs?id= reads back (a property)."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infernet_core import NodeConfig
from infernet_core.config import ServerConfig

pytestmark = pytest.mark.anyio


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"k": value}
    return value


async def test_depth_and_batch_limits_come_from_the_config(kit: Any) -> None:
    app = kit.app(NodeConfig(server=ServerConfig(max_depth=8, max_batch=3)))
    async with app.lifespan(), kit.client(app) as client:
        ok = await client.post("/api/jobs", json={"containers": ["echo"], "data": nested(7)})
        assert ok.status_code == 200
        deep = await client.post("/api/jobs", json={"containers": ["echo"], "data": nested(8)})
        assert deep.status_code == 400
        assert deep.json() == {
            "error": "Request nested too deeply: more than 8 levels",
            "params": {"path": "$.data" + ".k" * 7, "limit": 8},
        }
        item = {"containers": ["echo"], "data": {}}
        assert (await client.post("/api/jobs/batch", json=[item] * 3)).status_code == 200
        big = await client.post("/api/jobs/batch", json=[item] * 4)
        assert big.status_code == 413
        assert big.json() == {"error": "Too many requests in one batch", "params": {"limit": 3, "count": 4}}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(st.text(max_size=5), json_values, max_size=4), depth=st.integers(0, 70))
async def test_anything_post_accepts_get_reads_back(client: httpx.AsyncClient, data: Any, depth: int) -> None:
    body = {"containers": ["echo"], "data": {"d": nested(depth), **data}}
    response = await client.post("/api/jobs", content=msgspec.json.encode(body))
    if response.status_code != 200:
        assert response.status_code == 400, response.text
        return
    job_id = response.json()["id"]
    with anyio.fail_after(5):
        while True:
            got = await client.get("/api/jobs", params={"id": job_id, "intermediate": "true"})
            assert got.status_code == 200, got.text
            [result] = got.json()
            if result["status"] != "running":
                break
            await anyio.sleep(0.002)
    assert result["status"] == "success"
    assert result["result"]["output"] == body["data"]
