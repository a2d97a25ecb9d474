"""Bad inputs sent over real sockets to the real ``infernet-node``: each gets the right 4xx
status and a JSON error body, and the node stays healthy."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from e2e_support import NodeProcess, running_node

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with running_node(tmp_path_factory.mktemp("bad-input")) as node:
        yield node


@pytest.fixture(scope="module")
def http(node: NodeProcess) -> Iterator[httpx.Client]:
    with node.client() as http:
        yield http
        # Nothing above created a job, and the node still answers.
        assert http.get("/api/jobs").json() == []
        assert http.get("/health").json() == {"status": "healthy"}


def json_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert isinstance(body, dict)
    assert isinstance(body["error"], str) and body["error"]
    assert set(body) <= {"error", "params"}
    return body


@pytest.mark.parametrize("body", [b"{", b"", b"{'containers': ['echo']}", b'{"containers": ["echo"], "data": {}} x'])
def test_invalid_json(http: httpx.Client, body: bytes) -> None:
    error = json_error(http.post("/api/jobs", content=body, headers={"content-type": "application/json"}), 400)
    assert error["error"].startswith("Invalid JSON: ")


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"[]", "an array"),
        (b'[{"containers": ["echo"], "data": {}}]', "an array"),
        (b"null", "null"),
        (b"7", "a number"),
    ],
)
def test_body_not_an_object(http: httpx.Client, body: bytes, kind: str) -> None:
    error = json_error(http.post("/api/jobs", content=body), 400)
    assert error == {"error": f"Request body must be a JSON object, got {kind}", "params": {"path": "$"}}


@pytest.mark.parametrize(
    ("body", "message", "path"),
    [
        ({"containers": [1], "data": {}}, "Expected `str`, got `int`", "$.containers[0]"),
        ({"containers": "echo", "data": {}}, "Expected `array`, got `str`", "$.containers"),
        ({"containers": ["echo"], "data": [1]}, "Expected `object`, got `array`", "$.data"),
        (
            {"containers": ["echo"], "data": {}, "requires_proof": "no"},
            "Expected `bool`, got `str`",
            "$.requires_proof",
        ),
        ({"containers": ["echo"]}, "Object missing required field `data`", "$"),
    ],
)
def test_wrong_types(http: httpx.Client, body: Any, message: str, path: str) -> None:
    error = json_error(http.post("/api/jobs", json=body), 400)
    assert error == {"error": f"Invalid job request: {message}", "params": {"path": path}}


def test_unknown_container(http: httpx.Client) -> None:
    error = json_error(http.post("/api/jobs", json={"containers": ["nope"], "data": {}}), 400)
    assert error == {"error": "Container not supported", "params": {"container": "nope"}}


def test_unknown_later_container(http: httpx.Client) -> None:
    error = json_error(http.post("/api/jobs", json={"containers": ["echo", "nope"], "data": {}}), 400)
    assert error == {"error": "Container not supported", "params": {"container": "nope"}}


def test_unknown_id_is_an_empty_list(http: httpx.Client) -> None:
    response = http.get("/api/jobs", params={"id": "00000000-0000-4000-8000-000000000000"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == []


def test_bad_boolean_query_parameter(http: httpx.Client) -> None:
    error = json_error(http.get("/api/jobs", params={"pending": "maybe"}), 400)
    assert error["params"] == {"name": "pending", "value": "maybe"}


def test_batch_body_not_an_array(http: httpx.Client) -> None:
    error = json_error(http.post("/api/jobs/batch", json={"containers": ["echo"], "data": {}}), 400)
    assert error == {"error": "Batch body must be a JSON array, got an object", "params": {"path": "$"}}


def test_body_too_large(http: httpx.Client) -> None:
    limit = 1 << 20  # server.max_body_bytes' default
    body = b'{"containers": ["echo"], "data": {"x": "' + b"a" * limit + b'"}}'
    error = json_error(http.post("/api/jobs", content=body), 413)
    assert error == {"error": "Request body too large", "params": {"limit": limit}}


@pytest.mark.parametrize("path", ["/", "/nope", "/api", "/api/jobs/123"])
def test_unknown_path_is_404_json(http: httpx.Client, path: str) -> None:
    error = json_error(http.get(path), 404)
    assert error == {"error": "Not found", "params": {"path": path}}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/jobs", ["GET", "POST"]),
        ("POST", "/health", ["GET"]),
        ("GET", "/api/status", ["PUT"]),
        ("GET", "/api/jobs/batch", ["POST"]),
    ],
)
def test_wrong_method_is_405_json(http: httpx.Client, method: str, path: str, allowed: list[str]) -> None:
    response = http.request(method, path)
    error = json_error(response, 405)
    assert error == {"error": "Method not allowed", "params": {"method": method, "allowed": allowed}}
    assert response.headers["allow"] == ", ".join(allowed)


def test_malformed_http_does_not_take_the_node_down(node: NodeProcess, http: httpx.Client) -> None:
    with socket.create_connection((node.host, node.port), timeout=5) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        sock.settimeout(5)
        reply = sock.recv(4096)
    # hypercorn's HTTP layer answers 400 (no JSON: the app never sees the request) and closes.
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert http.get("/health").status_code == 200
