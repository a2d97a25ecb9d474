"""Backpressure: past ``server.max_pending`` pending jobs a node answers 503 + Retry-After, and
every job it accepted still finishes."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from infernet_core import NodeConfig
from infernet_core.config import ServerConfig

pytestmark = pytest.mark.anyio

OVERLOADED = {"error": "Too many pending jobs", "params": {"pending": 3, "max_pending": 3}}


def config(max_pending: int) -> NodeConfig:
    return NodeConfig(server=ServerConfig(max_pending=max_pending), shutdown_grace=0.2)


async def test_over_max_pending_is_503_with_retry_after(kit: Any) -> None:
    app = kit.app(config(3))
    async with app.lifespan(), kit.client(app) as client:
        accepted = [await kit.submit(client, ["gated"], {"n": n}) for n in range(3)]
        refused = await client.post("/api/jobs", json={"containers": ["gated"], "data": {}})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json() == OVERLOADED
        # A stream job counts against the same bound.
        stream = await client.post("/api/jobs/stream", json={"containers": ["gated"], "data": {}})
        assert (stream.status_code, stream.json()) == (503, OVERLOADED)
        # In a batch, the excess entries say so one by one; the batch itself is a 200.
        batch = await client.post("/api/jobs/batch", json=[{"containers": ["echo"], "data": {}}])
        assert (batch.status_code, batch.json()) == (200, [OVERLOADED])

        kit.gate.set()
        for job_id in accepted:
            assert (await kit.wait_done(client, job_id))["status"] == "success"
        # Room again once they are done.
        job_id = await kit.submit(client, ["echo"], {"again": True})
        assert (await kit.wait_done(client, job_id))["result"]["output"] == {"again": True}


async def test_refused_jobs_leave_nothing_behind(kit: Any) -> None:
    app = kit.app(config(1))
    async with app.lifespan(), kit.client(app) as client:
        first = await kit.submit(client, ["gated"], {})
        for _ in range(5):
            response = await client.post("/api/jobs", json={"containers": ["gated"], "data": {}})
            assert response.status_code == 503
        assert (await client.get("/api/jobs")).json() == [first]
        info = (await client.get("/info")).json()
        assert info["pending"]["offchain"] == 1
        kit.gate.set()
        assert (await kit.wait_done(client, first))["status"] == "success"


async def test_other_errors_have_no_retry_after(kit: Any) -> None:
    app = kit.app()
    async with app.lifespan(), kit.client(app) as client:
        response: httpx.Response = await client.post("/api/jobs", json={"containers": ["nope"], "data": {}})
        assert response.status_code == 400
        assert "retry-after" not in response.headers


def test_max_pending_default_and_validation() -> None:
    from infernet_core import ConfigError, parse_config

    assert NodeConfig().server.max_pending == 10_000
    with pytest.raises(ConfigError, match=r"at server\.max_pending$"):
        parse_config({"server": {"max_pending": 0}})


async def test_past_max_queued_a_request_waits_for_room_then_is_admitted(kit: Any) -> None:
    app = kit.app(NodeConfig(server=ServerConfig(max_queued=2, admission_wait=5.0), shutdown_grace=0.2))
    async with app.lifespan(), kit.client(app) as client:
        first = [await kit.submit(client, ["gated"], {"n": n}) for n in range(2)]
        async with anyio.create_task_group() as tg:
            answers: list[httpx.Response] = []

            async def third() -> None:
                answers.append(await client.post("/api/jobs", json={"containers": ["echo"], "data": {"n": 3}}))

            tg.start_soon(third)
            await anyio.sleep(0.2)
            assert answers == []  # waiting: the queue is full
            assert (await client.get("/api/jobs")).json() == first  # and not stored yet
            kit.gate.set()
        [response] = answers
        assert response.status_code == 200
        assert (await kit.wait_done(client, response.json()["id"]))["status"] == "success"


async def test_a_wait_for_room_that_runs_out_is_503(kit: Any) -> None:
    app = kit.app(NodeConfig(server=ServerConfig(max_queued=1, admission_wait=0.2), shutdown_grace=0.2))
    async with app.lifespan(), kit.client(app) as client:
        await kit.submit(client, ["gated"], {})
        started = anyio.current_time()
        response = await client.post("/api/jobs", json={"containers": ["echo"], "data": {}})
        assert anyio.current_time() - started >= 0.2
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json() == {"error": "Too many pending jobs", "params": {"queued": 1, "waited": 0.2}}
        kit.gate.set()
