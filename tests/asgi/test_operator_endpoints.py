"""The operator's endpoints over HTTP: rate limits (429, Retry-After and RateLimit-* headers,
one bucket per endpoint and client, PUT /api/status and the probes exempt), /metrics,
/ready and /openapi.json."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from infernet_asgi.app import ROUTER
from infernet_asgi.openapi import PATHS
from infernet_core import ContainerConfig, NodeConfig
from infernet_core.config import RateLimitConfig, ServerConfig

pytestmark = pytest.mark.anyio

JOB = {"containers": ["echo"], "data": {}}


def limited(num_requests: int = 2, period: float = 60.0, **server: Any) -> NodeConfig:
    return NodeConfig(
        shutdown_grace=0.2,
        server=ServerConfig(rate_limit=RateLimitConfig(num_requests=num_requests, period=period), **server),
    )


async def test_over_the_limit_is_429_with_retry_after_and_ratelimit_headers(kit: Any) -> None:
    app = kit.app(limited(2, 60.0))
    async with app.lifespan(), kit.client(app) as client:
        first = await client.post("/api/jobs", json=JOB)
        second = await client.post("/api/jobs", json={"containers": ["missing"], "data": {}})
        third = await client.post("/api/jobs", json=JOB)
        assert first.status_code == 200 and second.status_code == 400  # counted before the guardian
        assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == ("2", "1")
        assert first.headers["ratelimit-reset"] == "30"
        assert second.headers["ratelimit-remaining"] == "0"
        assert third.status_code == 429
        assert third.json() == {"error": "Too many requests", "params": {"limit": 2, "period": 60.0}}
        assert third.headers["retry-after"] == "30"
        assert (third.headers["ratelimit-remaining"], third.headers["ratelimit-reset"]) == ("0", "60")
        # Another endpoint has its own bucket; probes and PUT /api/status are never limited.
        assert (await client.get("/api/jobs")).status_code == 200
        for _ in range(5):
            assert (await client.get("/health")).status_code == 200
            assert "ratelimit-limit" not in (await client.get("/health")).headers
            status = await client.put("/api/status", json={"id": "s", "status": "running", "containers": ["x"]})
            assert status.status_code in (200, 409) and "ratelimit-limit" not in status.headers
    async with app.lifespan(), kit.client(app, client=("127.0.0.2", 1)) as other:
        assert (await other.post("/api/jobs", json=JOB)).status_code == 200  # another client's bucket


async def test_no_rate_limit_without_the_key(client: Any) -> None:
    for _ in range(70):  # past the reference's default of 60 a minute
        response = await client.get("/api/jobs")
        assert response.status_code == 200 and "ratelimit-limit" not in response.headers


async def test_metrics_are_404_when_off_and_count_requests_when_on(kit: Any, client: Any) -> None:
    off = await client.get("/metrics")
    assert off.status_code == 404 and off.json()["error"] == "Metrics are off (server.metrics)"
    app = kit.app(limited(1, 60.0, metrics=True))
    async with app.lifespan(), kit.client(app) as on:
        job_id = await kit.submit(on, ["echo"], {})
        assert (await on.post("/api/jobs", json=JOB)).status_code == 429
        with anyio.fail_after(5):  # (read through the node: GET /api/jobs is limited too)
            while (await app.node.results([job_id], "127.0.0.1"))[0].status == "running":
                await anyio.sleep(0.005)
        await on.get("/nowhere")
        scraped = await on.get("/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scraped.text)
        for s in family.samples
    }
    assert found[("infernet_http_requests_total", (("method", "POST"), ("route", "/api/jobs"), ("status", "200")))] == 1
    assert found[("infernet_http_requests_total", (("method", "POST"), ("route", "/api/jobs"), ("status", "429")))] == 1
    assert found[("infernet_http_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1
    assert found[("infernet_http_rate_limited_total", (("route", "/api/jobs"),))] == 1
    assert found[("infernet_jobs_finished_total", (("container", "echo"), ("status", "success")))] == 1


async def test_ready_names_what_is_not_ready(kit: Any, client: Any) -> None:
    assert (await client.get("/ready")).json() == {"status": "ready"}
    config = NodeConfig(
        manage_containers=False, shutdown_grace=0.2, containers=[ContainerConfig(id="far", url="http://127.0.0.1:9")]
    )
    app = kit.app(config)
    async with app.lifespan(), kit.client(app) as other:
        response = await other.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "Not ready" and list(body["params"]) == ["container far"]
    assert (await client.get("/health")).json() == {"status": "healthy"}  # liveness is unchanged


async def test_openapi_document_is_valid_complete_and_mounted_where_served(kit: Any, app: Any) -> None:
    async with kit.client(app) as client:
        document = (await client.get("/openapi.json")).json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == PATHS == set(ROUTER.table)
    for path, methods in ROUTER.table.items():
        assert {m.lower() for m in methods} == set(document["paths"][path]), path
    assert document["servers"] == [{"url": "/"}]
    assert "JobRequest" in document["components"]["schemas"]
    async with kit.client(app, root_path="/infernet") as mounted:
        response = await mounted.get("/infernet/openapi.json")
    assert response.json()["servers"] == [{"url": "/infernet"}]
