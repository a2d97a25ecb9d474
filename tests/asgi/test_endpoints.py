"""Every endpoint of the seed REST API, driven in-process through httpx's ASGITransport."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import httpx
import pytest

import infernet_core
from infernet_asgi import InfernetApp
from infernet_core import ContainerConfig, NodeConfig, Source

pytestmark = pytest.mark.anyio

DELEGATED: dict[str, Any] = {
    "subscription": {
        "owner": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "container_id": "echo",
        "inputs": "",
        "active_at": 0,
        "frequency": 1,
        "period": 0,
        "redundancy": 1,
        "max_gas_price": 1_000_000_000,
        "max_gas_limit": 100_000,
    },
    "signature": {"nonce": 0, "expiry": 4_000_000_000, "v": 27, "r": 1, "s": 2},
    "data": {"x": 1},
}


def is_uuid4(text: str) -> bool:
    return uuid.UUID(text).version == 4 and str(uuid.UUID(text)) == text


# -- GET /health, GET /info --------------------------------------------------------------------


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "healthy"}


async def test_trailing_slash_is_ignored(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


async def test_info(client: httpx.AsyncClient) -> None:
    response = await client.get("/info")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["version", "containers", "pending", "chain"]
    assert body["version"] == infernet_core.__version__
    assert body["pending"] == {"offchain": 0, "onchain": 0}
    assert body["chain"] == {"enabled": False, "address": ""}
    assert body["containers"][0] == {"id": "echo", "image": "", "description": "Returns its input", "external": True}
    assert [c["id"] for c in body["containers"]] == ["echo", "upper", "suffix", "boom", "internal", "gated"]
    assert {c["id"]: c["external"] for c in body["containers"]}["internal"] is False


async def test_info_lists_configured_containers_first(kit: Any) -> None:
    config = NodeConfig(
        manage_containers=False,
        containers=[ContainerConfig(id="remote", image="org/remote:1", url="http://127.0.0.1:9", description="R")],
    )
    app = kit.app(config)
    async with app.lifespan(), kit.client(app) as client:
        response = await client.get("/info")
    assert response.status_code == 200
    containers = response.json()["containers"]
    assert containers[0] == {"id": "remote", "image": "org/remote:1", "description": "R", "external": True}
    assert [c["id"] for c in containers][1:] == ["echo", "upper", "suffix", "boom", "internal", "gated"]


async def test_info_counts_pending_jobs(kit: Any, client: httpx.AsyncClient) -> None:
    job_id = await kit.submit(client, ["gated"], {"n": 1})
    response = await client.get("/info")
    assert response.json()["pending"] == {"offchain": 1, "onchain": 0}
    kit.gate.set()
    assert (await kit.wait_done(client, job_id))["status"] == "success"
    response = await client.get("/info")
    assert response.json()["pending"] == {"offchain": 0, "onchain": 0}


# -- POST /api/jobs, GET /api/jobs?id= ----------------------------------------------------------


async def test_job_runs_to_success(kit: Any, client: httpx.AsyncClient) -> None:
    job_id = await kit.submit(client, ["echo"], {"prompt": "hi", "n": [1, 2]})
    assert is_uuid4(job_id)
    result = await kit.wait_done(client, job_id)
    assert result == {
        "id": job_id,
        "status": "success",
        "result": {"container": "echo", "output": {"prompt": "hi", "n": [1, 2]}},
    }
    # The container got the container protocol's payload.
    [(name, payload)] = kit.calls
    assert name == "echo"
    assert payload.source is Source.OFFCHAIN and payload.destination is Source.OFFCHAIN
    assert payload.data == {"prompt": "hi", "n": [1, 2]}
    assert payload.requires_proof is False


async def test_job_is_readable_at_once_as_running(kit: Any, client: httpx.AsyncClient) -> None:
    job_id = await kit.submit(client, ["gated"], {"a": 1})
    response = await client.get("/api/jobs", params={"id": job_id})
    assert response.status_code == 200
    assert response.json() == [{"id": job_id, "status": "running", "result": None}]
    response = await client.get("/api/jobs", params={"id": job_id, "intermediate": "true"})
    assert response.json() == [{"id": job_id, "status": "running", "result": None, "intermediate": []}]
    kit.gate.set()
    assert (await kit.wait_done(client, job_id))["result"] == {"container": "gated", "output": {"a": 1}}


async def test_server_makes_the_job_id(kit: Any, client: httpx.AsyncClient) -> None:
    response = await client.post("/api/jobs", json={"id": "mine", "ip": "1.2.3.4", "containers": ["echo"], "data": {}})
    assert response.status_code == 200
    job_id = response.json()["id"]
    assert job_id != "mine" and is_uuid4(job_id)
    assert (await kit.wait_done(client, job_id))["status"] == "success"
    assert (await client.get("/api/jobs", params={"id": "mine"})).json() == []


async def test_chained_containers_and_intermediate_results(kit: Any, client: httpx.AsyncClient) -> None:
    job_id = await kit.submit(client, ["echo", "upper", "suffix"], {"text": "pizza"})
    result = await kit.wait_done(client, job_id, intermediate=True)
    assert result == {
        "id": job_id,
        "status": "success",
        "result": {"container": "suffix", "output": {"text": "PIZZA!"}},
        "intermediate": [
            {"container": "echo", "output": {"text": "pizza"}},
            {"container": "upper", "output": {"text": "PIZZA"}},
        ],
    }
    # Without intermediate=true there is no "intermediate" key at all.
    response = await client.get("/api/jobs", params={"id": job_id})
    assert response.json() == [
        {"id": job_id, "status": "success", "result": {"container": "suffix", "output": {"text": "PIZZA!"}}}
    ]
    response = await client.get("/api/jobs", params={"id": job_id, "intermediate": "false"})
    assert "intermediate" not in response.json()[0]
    # Each container got the previous one's output.
    assert [(name, payload.data) for name, payload in kit.calls] == [
        ("echo", {"text": "pizza"}),
        ("upper", {"text": "pizza"}),
        ("suffix", {"text": "PIZZA"}),
    ]


async def test_non_external_container_may_come_later(kit: Any, client: httpx.AsyncClient) -> None:
    job_id = await kit.submit(client, ["echo", "internal"], {"k": "v"})
    result = await kit.wait_done(client, job_id)
    assert result["status"] == "success"
    assert result["result"] == {"container": "internal", "output": {"internal": {"k": "v"}}}


async def test_failing_container_fails_the_job(kit: Any, client: httpx.AsyncClient) -> None:
    job_id = await kit.submit(client, ["echo", "boom", "upper"], {"text": "x"})
    result = await kit.wait_done(client, job_id, intermediate=True)
    assert result == {
        "id": job_id,
        "status": "failed",
        "result": {"container": "boom", "error": "RuntimeError: kaboom"},
        "intermediate": [{"container": "echo", "output": {"text": "x"}}],
    }
    assert kit.called() == ["echo", "boom"]  # later containers do not run


async def test_unreachable_http_container_fails_the_job(kit: Any) -> None:
    # Port 9 on loopback: nothing listens, so the call is refused at once.
    config = NodeConfig(
        manage_containers=False,
        containers=[ContainerConfig(id="remote", url="http://127.0.0.1:9", allowed_ips=["127.0.0.0/8"])],
    )
    app = kit.app(config)
    async with app.lifespan(), kit.client(app) as client:
        job_id = await kit.submit(client, ["remote"], {})
        result = await kit.wait_done(client, job_id)
    assert result["status"] == "failed"
    assert result["result"]["container"] == "remote"
    assert result["result"]["error"].startswith("could not reach http://127.0.0.1:9/service_output")


async def test_get_several_ids_in_order_skipping_unknown(kit: Any, client: httpx.AsyncClient) -> None:
    first = await kit.submit(client, ["echo"], {"n": 1})
    second = await kit.submit(client, ["echo"], {"n": 2})
    await kit.wait_done(client, first)
    await kit.wait_done(client, second)
    response = await client.get(
        "/api/jobs", params=[("id", second), ("id", "no-such-job"), ("id", first), ("id", second)]
    )
    assert response.status_code == 200
    assert response.json() == [
        {"id": second, "status": "success", "result": {"container": "echo", "output": {"n": 2}}},
        {"id": first, "status": "success", "result": {"container": "echo", "output": {"n": 1}}},
    ]


# -- GET /api/jobs (ids) ------------------------------------------------------------------------


async def test_list_job_ids_and_pending_filter(kit: Any, client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/jobs")).json() == []
    done = await kit.submit(client, ["echo"], {})
    await kit.wait_done(client, done)
    running = await kit.submit(client, ["gated"], {})

    response = await client.get("/api/jobs")
    assert response.status_code == 200
    assert sorted(response.json()) == sorted([done, running])
    assert (await client.get("/api/jobs", params={"pending": "true"})).json() == [running]
    assert (await client.get("/api/jobs", params={"pending": "false"})).json() == [done]
    assert (await client.get("/api/jobs", params={"pending": "1"})).json() == [running]
    assert (await client.get("/api/jobs", params={"pending": "FALSE"})).json() == [done]

    kit.gate.set()
    await kit.wait_done(client, running)
    assert (await client.get("/api/jobs", params={"pending": "true"})).json() == []
    assert sorted((await client.get("/api/jobs", params={"pending": "false"})).json()) == sorted([done, running])


# -- POST /api/jobs/batch -----------------------------------------------------------------------


async def test_batch_one_entry_per_item_in_order(kit: Any, client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/jobs/batch",
        json=[
            {"containers": ["echo"], "data": {"n": 1}},
            {"containers": ["nope"], "data": {}},
            {"containers": ["upper"], "data": {"text": "b"}},
            7,
            {"containers": [3], "data": {}},
            DELEGATED,
            {"containers": ["internal"], "data": {}},
        ],
    )
    assert response.status_code == 200
    entries = response.json()
    assert len(entries) == 7
    assert list(entries[0]) == ["id"] and is_uuid4(entries[0]["id"])
    assert entries[1] == {"error": "Container not supported", "params": {"container": "nope"}}
    assert list(entries[2]) == ["id"] and is_uuid4(entries[2]["id"])
    assert entries[3] == {"error": "Request body must be a JSON object, got a number", "params": {"path": "$[3]"}}
    assert entries[4] == {
        "error": "Invalid job request: Expected `str`, got `int`",
        "params": {"path": "$[4].containers[0]"},
    }
    assert entries[5]["error"] == "Chain not enabled"
    assert entries[5]["params"]["delegated_subscription"]["subscription"]["container_id"] == "echo"
    assert entries[6] == {"error": "First container must be external", "params": {"first_container": "internal"}}

    first = await kit.wait_done(client, entries[0]["id"])
    third = await kit.wait_done(client, entries[2]["id"])
    assert first["result"] == {"container": "echo", "output": {"n": 1}}
    assert third["result"] == {"container": "upper", "output": {"text": "B"}}
    assert sorted((await client.get("/api/jobs")).json()) == sorted([entries[0]["id"], entries[2]["id"]])


async def test_batch_empty_list(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/jobs/batch", json=[])
    assert response.status_code == 200
    assert response.json() == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"containers": ["echo"], "data": {}}', "Batch body must be a JSON array, got an object"),
        (b'"jobs"', "Batch body must be a JSON array, got a string"),
        (b"null", "Batch body must be a JSON array, got null"),
    ],
)
async def test_batch_body_not_a_list(client: httpx.AsyncClient, body: bytes, error: str) -> None:
    response = await client.post("/api/jobs/batch", content=body)
    assert response.status_code == 400
    assert response.json() == {"error": error, "params": {"path": "$"}}
    assert (await client.get("/api/jobs")).json() == []


async def test_batch_invalid_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/jobs/batch", content=b"[{")
    assert response.status_code == 400
    assert response.json()["error"].startswith("Invalid JSON")


# -- PUT /api/status ----------------------------------------------------------------------------


async def test_put_status_creates_and_moves_a_job(client: httpx.AsyncClient) -> None:
    body = {"id": "legacy-1", "status": "running", "containers": ["echo"]}
    response = await client.put("/api/status", json=body)
    assert response.status_code == 200
    assert response.json() == {"id": "legacy-1", "status": "running"}
    response = await client.get("/api/jobs", params={"id": "legacy-1"})
    assert response.json() == [{"id": "legacy-1", "status": "running", "result": None}]
    assert (await client.get("/api/jobs", params={"pending": "true"})).json() == ["legacy-1"]
    assert (await client.get("/info")).json()["pending"]["offchain"] == 1

    # running -> running is allowed and changes nothing.
    response = await client.put("/api/status", json=body)
    assert response.status_code == 200

    response = await client.put("/api/status", json={**body, "status": "success"})
    assert response.status_code == 200
    assert response.json() == {"id": "legacy-1", "status": "success"}
    response = await client.get("/api/jobs", params={"id": "legacy-1", "intermediate": "true"})
    assert response.json() == [{"id": "legacy-1", "status": "success", "result": None, "intermediate": []}]
    assert (await client.get("/api/jobs", params={"pending": "false"})).json() == ["legacy-1"]


@pytest.mark.parametrize("final", ["success", "failed"])
@pytest.mark.parametrize("again", ["running", "success", "failed"])
async def test_put_status_on_a_finished_job_is_409(client: httpx.AsyncClient, final: str, again: str) -> None:
    response = await client.put("/api/status", json={"id": "j", "status": final, "containers": []})
    assert response.status_code == 200
    response = await client.put("/api/status", json={"id": "j", "status": again, "containers": []})
    assert response.status_code == 409
    assert response.json() == {
        "error": f"Can't handle StatusReported when job is {final}",
        "params": {"id": "j", "state": final, "event": "StatusReported"},
    }
    # The job is unchanged.
    response = await client.get("/api/jobs", params={"id": "j"})
    assert response.json() == [{"id": "j", "status": final, "result": None}]


async def test_put_status_on_a_pipeline_job_that_finished_is_409(kit: Any, client: httpx.AsyncClient) -> None:
    job_id = await kit.submit(client, ["echo"], {"v": 1})
    await kit.wait_done(client, job_id)
    response = await client.put("/api/status", json={"id": job_id, "status": "failed", "containers": ["echo"]})
    assert response.status_code == 409
    assert (await kit.wait_done(client, job_id))["result"] == {"container": "echo", "output": {"v": 1}}


async def test_put_status_from_non_local_client_is_403(kit: Any, app: InfernetApp) -> None:
    async with kit.client(app, client=("10.1.2.3", 1)) as outsider:
        response = await outsider.put("/api/status", json={"id": "x", "status": "running", "containers": []})
        assert response.status_code == 403
        assert response.json() == {"error": "Unauthorized", "params": {"address": "10.1.2.3"}}
        # Checked before the body is even read: a bad body is still a 403.
        response = await outsider.put("/api/status", content=b"not json")
        assert response.status_code == 403
        assert (await outsider.get("/api/jobs")).json() == []
        # Non-local clients may still use the rest of the API.
        job_id = await kit.submit(outsider, ["echo"], {})
        assert (await kit.wait_done(outsider, job_id))["status"] == "success"


@pytest.mark.parametrize("address", ["127.0.0.5", "::1", "192.168.1.20", "172.17.0.2"])
async def test_put_status_from_default_local_networks(kit: Any, app: InfernetApp, address: str) -> None:
    async with kit.client(app, client=(address, 1)) as local:
        response = await local.put("/api/status", json={"id": "x", "status": "failed", "containers": []})
    assert response.status_code == 200
    assert response.json() == {"id": "x", "status": "failed"}


async def test_put_status_local_networks_are_configurable(kit: Any) -> None:
    from infernet_core.config import ServerConfig

    app = kit.app(NodeConfig(server=ServerConfig(local_networks=["10.9.0.0/16"])))
    async with app.lifespan():
        async with kit.client(app, client=("10.9.8.7", 1)) as lan:
            response = await lan.put("/api/status", json={"id": "x", "status": "running", "containers": []})
            assert response.status_code == 200
        async with kit.client(app) as loopback:
            response = await loopback.put("/api/status", json={"id": "x", "status": "running", "containers": []})
            assert response.status_code == 403
            assert response.json() == {"error": "Unauthorized", "params": {"address": "127.0.0.1"}}


# -- delegated subscriptions --------------------------------------------------------------------


async def test_delegated_subscription_without_chain_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/jobs", json=DELEGATED)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Chain not enabled"
    assert body["params"] == {
        "delegated_subscription": {"subscription": DELEGATED["subscription"], "signature": DELEGATED["signature"]}
    }
    assert (await client.get("/api/jobs")).json() == []


async def test_jobs_run_concurrently(kit: Any, client: httpx.AsyncClient) -> None:
    gated = await kit.submit(client, ["gated"], {"g": 1})
    quick = await kit.submit(client, ["echo"], {"q": 1})
    assert (await kit.wait_done(client, quick))["status"] == "success"
    response = await client.get("/api/jobs", params={"id": gated})
    assert response.json()[0]["status"] == "running"
    kit.gate.set()
    with anyio.fail_after(5):
        assert (await kit.wait_done(client, gated))["result"] == {"container": "gated", "output": {"g": 1}}
