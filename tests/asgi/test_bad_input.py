"""Every bad input gets a 4xx JSON body naming the problem, and never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from infernet_core import ContainerConfig, NodeConfig
from infernet_core.config import ServerConfig

pytestmark = pytest.mark.anyio


async def assert_no_jobs(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/jobs")
    assert response.status_code == 200
    assert response.json() == []


# -- body syntax and shape ------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{", b"", b"{'containers': []}", b'{"containers": ["echo"], "data": {}} trailing'])
async def test_invalid_json(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post("/api/jobs", content=body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert list(error) == ["error"]
    assert error["error"].startswith("Invalid JSON: ")
    await assert_no_jobs(client)


async def test_deeply_nested_json_is_400(client: httpx.AsyncClient) -> None:
    body = b'{"containers": ["echo"], "data": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    response = await client.post("/api/jobs", content=body)
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid JSON: nested too deeply"}


@pytest.mark.parametrize(
    ("body", "kind"),
    [(b"[]", "an array"), (b'"x"', "a string"), (b"12", "a number"), (b"true", "a boolean"), (b"null", "null")],
)
async def test_body_not_an_object(client: httpx.AsyncClient, body: bytes, kind: str) -> None:
    response = await client.post("/api/jobs", content=body)
    assert response.status_code == 400
    assert response.json() == {"error": f"Request body must be a JSON object, got {kind}", "params": {"path": "$"}}


@pytest.mark.parametrize(
    ("body", "error", "path"),
    [
        ({"containers": [1], "data": {}}, "Expected `str`, got `int`", "$.containers[0]"),
        ({"containers": ["echo", None], "data": {}}, "Expected `str`, got `null`", "$.containers[1]"),
        ({"containers": "echo", "data": {}}, "Expected `array`, got `str`", "$.containers"),
        ({"containers": ["echo"], "data": []}, "Expected `object`, got `array`", "$.data"),
        ({"containers": ["echo"], "data": "x"}, "Expected `object`, got `str`", "$.data"),
        (
            {"containers": ["echo"], "data": {}, "requires_proof": "yes"},
            "Expected `bool`, got `str`",
            "$.requires_proof",
        ),
        ({"data": {}}, "Object missing required field `containers`", "$"),
        ({"containers": ["echo"]}, "Object missing required field `data`", "$"),
        ({}, "Object missing required field `containers`", "$"),
    ],
)
async def test_wrong_types_and_missing_fields(client: httpx.AsyncClient, body: Any, error: str, path: str) -> None:
    response = await client.post("/api/jobs", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": f"Invalid job request: {error}", "params": {"path": path}}
    await assert_no_jobs(client)


async def test_bad_delegated_subscription_names_the_field(client: httpx.AsyncClient) -> None:
    body = {"subscription": {"owner": "0x1", "container_id": "echo"}, "signature": {}, "data": {}}
    response = await client.post("/api/jobs", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "error": "Invalid delegated subscription request: Object missing required field `active_at`",
        "params": {"path": "$.subscription"},
    }


# -- admission (guardian) -------------------------------------------------------------------------


async def test_no_containers(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/jobs", json={"containers": [], "data": {}})
    assert response.status_code == 400
    assert response.json() == {"error": "No containers specified"}


@pytest.mark.parametrize("containers", [["nope"], ["echo", "nope"], ["nope", "internal"]])
async def test_unknown_container(client: httpx.AsyncClient, containers: list[str]) -> None:
    response = await client.post("/api/jobs", json={"containers": containers, "data": {}})
    assert response.status_code == 400
    assert response.json() == {"error": "Container not supported", "params": {"container": "nope"}}
    await assert_no_jobs(client)


async def test_first_container_not_external(kit: Any, client: httpx.AsyncClient) -> None:
    response = await client.post("/api/jobs", json={"containers": ["internal", "echo"], "data": {}})
    assert response.status_code == 400
    assert response.json() == {"error": "First container must be external", "params": {"first_container": "internal"}}
    assert kit.calls == []


async def test_requires_proof_with_non_proof_container(kit: Any, client: httpx.AsyncClient) -> None:
    body = {"containers": ["upper", "echo"], "data": {}, "requires_proof": True}
    response = await client.post("/api/jobs", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": "Container does not generate proof", "params": {"container": "echo"}}
    assert kit.calls == []


@pytest.fixture
async def guarded(kit: Any) -> AsyncIterator[Any]:
    # url points at loopback port 9, where nothing listens; the guardian must refuse
    # before any call is made, so no container is ever reached.
    config = NodeConfig(
        manage_containers=False,
        containers=[
            ContainerConfig(id="lan-only", url="http://127.0.0.1:9", allowed_ips=["10.0.0.0/8", "2001:db8::/32"]),
        ],
    )
    app = kit.app(config)
    async with app.lifespan():
        yield app


async def test_allowed_ips_refuses_other_clients(kit: Any, guarded: Any) -> None:
    async with kit.client(guarded) as client:
        response = await client.post("/api/jobs", json={"containers": ["lan-only"], "data": {}})
        assert response.status_code == 400
        assert response.json() == {
            "error": "Container not allowed for address",
            "params": {"container": "lan-only", "address": "127.0.0.1"},
        }
        # A chain is refused if any of its containers refuses the client.
        response = await client.post("/api/jobs", json={"containers": ["echo", "lan-only"], "data": {}})
        assert response.status_code == 400
        assert response.json()["params"] == {"container": "lan-only", "address": "127.0.0.1"}
        await assert_no_jobs(client)
        response = await client.get("/info")
        assert response.json()["pending"] == {"offchain": 0, "onchain": 0}
    async with kit.client(guarded, client=("::1", 5)) as client:
        response = await client.post("/api/jobs", json={"containers": ["lan-only"], "data": {}})
        assert response.status_code == 400
        assert response.json()["params"] == {"container": "lan-only", "address": "::1"}


async def test_allowed_ips_in_batch(kit: Any, guarded: Any) -> None:
    async with kit.client(guarded) as client:
        response = await client.post(
            "/api/jobs/batch", json=[{"containers": ["lan-only"], "data": {}}, {"containers": ["echo"], "data": {}}]
        )
    assert response.status_code == 200
    refused, accepted = response.json()
    assert refused == {
        "error": "Container not allowed for address",
        "params": {"container": "lan-only", "address": "127.0.0.1"},
    }
    assert list(accepted) == ["id"]


# -- unknown jobs and query parameters ------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [[("id", "nope")], [("id", "a"), ("id", "b")], [("id", "")], [("id", "x"), ("intermediate", "true")]],
)
async def test_unknown_job_ids_are_an_empty_list(client: httpx.AsyncClient, params: list[tuple[str, str]]) -> None:
    response = await client.get("/api/jobs", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == []


async def test_too_many_ids(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/jobs", params=[("id", str(n)) for n in range(1001)])
    assert response.status_code == 400
    assert response.json() == {"error": "Too many job ids (at most 1000)", "params": {"count": 1001}}
    response = await client.get("/api/jobs", params=[("id", str(n)) for n in range(1000)])
    assert (response.status_code, response.json()) == (200, [])


@pytest.mark.parametrize("value", ["maybe", "", "yes", "2", "truee"])
async def test_bad_pending_value(client: httpx.AsyncClient, value: str) -> None:
    response = await client.get("/api/jobs", params={"pending": value})
    assert response.status_code == 400
    assert response.json() == {
        "error": "Invalid query parameter 'pending': expected true or false",
        "params": {"name": "pending", "value": value},
    }


@pytest.mark.parametrize("value", ["nope", "on"])
async def test_bad_intermediate_value(kit: Any, client: httpx.AsyncClient, value: str) -> None:
    job_id = await kit.submit(client, ["echo"], {})
    await kit.wait_done(client, job_id)
    response = await client.get("/api/jobs", params={"id": job_id, "intermediate": value})
    assert response.status_code == 400
    assert response.json() == {
        "error": "Invalid query parameter 'intermediate': expected true or false",
        "params": {"name": "intermediate", "value": value},
    }


# -- body size --------------------------------------------------------------------------------------


@pytest.fixture
async def small(kit: Any) -> AsyncIterator[Any]:
    app = kit.app(NodeConfig(server=ServerConfig(max_body_bytes=64)))
    async with app.lifespan():
        yield app


@pytest.mark.parametrize(
    ("path", "method"), [("/api/jobs", "POST"), ("/api/jobs/batch", "POST"), ("/api/status", "PUT")]
)
async def test_oversize_body_is_413(kit: Any, small: Any, path: str, method: str) -> None:
    body = b'{"containers": ["echo"], "data": {"pad": "' + b"x" * 100 + b'"}}'
    async with kit.client(small) as client:
        response = await client.request(method, path, content=body)
        assert response.status_code == 413
        assert response.json() == {"error": "Request body too large", "params": {"limit": 64}}
        await assert_no_jobs(client)


async def test_oversize_streamed_body_without_content_length_is_413(kit: Any, small: Any) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"containers": ["echo"], '
        yield b'"data": {"pad": "' + b"x" * 60 + b'"}}'

    async with kit.client(small) as client:
        response = await client.post("/api/jobs", content=chunks())
        assert response.status_code == 413
        assert response.json() == {"error": "Request body too large", "params": {"limit": 64}}
        await assert_no_jobs(client)


async def test_body_at_the_limit_is_accepted(kit: Any, small: Any) -> None:
    body = b'{"containers": ["echo"], "data": {"p": "'
    body += b"x" * (64 - len(body) - 3) + b'"}}'
    assert len(body) == 64

    async def chunks() -> AsyncIterator[bytes]:
        yield body[:10]
        yield body[10:]

    async with kit.client(small) as client:
        response = await client.post("/api/jobs", content=body)
        assert response.status_code == 200, response.text
        response = await client.post("/api/jobs", content=chunks())
        assert response.status_code == 200, response.text


# -- routing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/api", "/api/jobs/123", "/info/x", "/"])
async def test_unknown_route_is_404_json(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "Not found", "params": {"path": path}}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/jobs", ["GET", "POST"]),
        ("PUT", "/api/jobs", ["GET", "POST"]),
        ("GET", "/api/jobs/batch", ["POST"]),
        ("POST", "/health", ["GET"]),
        ("POST", "/info", ["GET"]),
        ("GET", "/api/status", ["PUT"]),
        ("POST", "/api/status", ["PUT"]),
    ],
)
async def test_wrong_method_is_405_with_allow(
    client: httpx.AsyncClient, method: str, path: str, allowed: list[str]
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == ", ".join(allowed)
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "Method not allowed", "params": {"method": method, "allowed": allowed}}


# -- PUT /api/status bodies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error", "path"),
    [
        ({"id": "a", "status": "done", "containers": []}, "Invalid enum value 'done'", "$.status"),
        ({"id": "a", "status": "SUCCESS", "containers": []}, "Invalid enum value 'SUCCESS'", "$.status"),
        ({"id": "a", "status": 1, "containers": []}, "Expected `str`, got `int`", "$.status"),
        ({"id": "", "status": "running", "containers": []}, "Expected `str` of length >= 1", "$.id"),
        ({"id": 5, "status": "running", "containers": []}, "Expected `str`, got `int`", "$.id"),
        ({"id": "a", "status": "running", "containers": [1]}, "Expected `str`, got `int`", "$.containers[0]"),
        ({"status": "running", "containers": []}, "Object missing required field `id`", "$"),
        ({"id": "a", "containers": []}, "Object missing required field `status`", "$"),
        ([], "Expected `object`, got `array`", "$"),
    ],
)
async def test_put_status_bad_body(client: httpx.AsyncClient, body: Any, error: str, path: str) -> None:
    response = await client.put("/api/status", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": f"Invalid status: {error}", "params": {"path": path}}
    await assert_no_jobs(client)


async def test_put_status_invalid_json(client: httpx.AsyncClient) -> None:
    response = await client.put("/api/status", content=b"{nope")
    assert response.status_code == 400
    assert response.json()["error"].startswith("Invalid JSON: ")
