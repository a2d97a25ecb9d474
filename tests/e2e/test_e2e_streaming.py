"""POST /api/jobs/stream and GET /resources through the real ``infernet-node`` under hypercorn,
with real container services (subprocesses on 127.0.0.1) behind it.

The streaming service (``container_service.py --mode stream``) sends its body part by part
and holds the last part back until the test creates a *release* file, so a test can prove
that the first part reaches the client while the last one does not exist yet: nothing on
the way (node, hypercorn) buffers the stream.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import NodeProcess, ServiceProcess, free_port, get_result, running_node, start_services, tag, wait_done

pytestmark = pytest.mark.e2e

BEARER = "stream-token"
STREAM_TIMEOUT = 3.0
RESOURCES_TIMEOUT = 0.5
PARTS = ["chunk-0\n", "chunk-1\n", "chunk-2\n"]


@pytest.fixture(scope="module")
def stream_services() -> Iterator[dict[str, ServiceProcess]]:
    started = start_services({"stream": "stream", "fail500": "fail500", "nonjson": "nonjson", "hang": "hang"})
    try:
        yield started
    finally:
        for service in started.values():
            service.kill()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, stream_services: dict[str, ServiceProcess]) -> Iterator[NodeProcess]:
    services = stream_services
    config: dict[str, Any] = {
        "manage_containers": False,
        "stream_timeout": STREAM_TIMEOUT,
        "resources_timeout": RESOURCES_TIMEOUT,
        "containers": [
            {"id": "streamer", "url": services["stream"].url},
            {"id": "streamer-auth", "url": services["stream"].url + "/", "bearer": BEARER},
            {"id": "streamer-port", "port": services["stream"].port},
            {"id": "fail500", "url": services["fail500"].url},
            {"id": "nonjson", "url": services["nonjson"].url},
            {"id": "hang", "url": services["hang"].url},
            {"id": "absent", "url": f"http://127.0.0.1:{free_port()}"},
        ],
    }
    with running_node(tmp_path_factory.mktemp("streaming"), config) as node:
        yield node


def read_until(chunks: Iterator[bytes], received: bytearray, marker: bytes) -> None:
    """Append chunks to ``received`` until it contains ``marker`` (bounded by the read timeout)."""
    while marker not in received:
        received += next(chunks)


def stream_body(http: httpx.Client, containers: list[str], data: dict[str, Any]) -> tuple[str, bytes]:
    """POST /api/jobs/stream, read the whole (200) body, return the job id and what followed it."""
    with http.stream("POST", "/api/jobs/stream", json={"containers": containers, "data": data}) as response:
        assert response.status_code == 200
        body = response.read()
    line, _, rest = body.partition(b"\n")
    return line.decode(), rest


def test_first_chunk_arrives_before_the_last_is_produced(
    node: NodeProcess, stream_services: dict[str, ServiceProcess], tmp_path: Path
) -> None:
    release = tmp_path / "release"
    data = {"parts": PARTS, "release": str(release), "tag": tag()}
    with (
        node.client() as http,
        http.stream("POST", "/api/jobs/stream", json={"containers": ["streamer"], "data": data}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        chunks = response.iter_raw()
        received = bytearray()
        read_until(chunks, received, b"chunk-0\n")
        job_id = received.split(b"\n", 1)[0].decode()
        assert uuid.UUID(job_id).version == 4

        # The container holds the last part back until released: none of it can be here.
        assert b"chunk-2" not in received
        with node.client() as other:
            assert get_result(other, job_id) == {"id": job_id, "status": "running", "result": None}
            assert other.get("/info").json()["pending"]["offchain"] >= 1

        release.touch()
        for chunk in chunks:
            received += chunk

    assert bytes(received) == f"{job_id}\n".encode() + "".join(PARTS).encode()
    with node.client() as http:
        # The job is stored before the stream ends, so it is finished at once.
        assert get_result(http, job_id) == {
            "id": job_id,
            "status": "success",
            "result": {"container": "streamer", "output": "".join(PARTS)},
        }
    [call] = stream_services["stream"].calls_tagged(data["tag"])
    assert call["body"] == {"source": 1, "destination": 2, "data": data}
    assert "authorization" not in call["headers"]


def test_only_the_first_container_runs_and_json_output_is_stored_as_json(
    node: NodeProcess, stream_services: dict[str, ServiceProcess]
) -> None:
    data = {"parts": ['{"answer": ', "42}"], "tag": tag()}
    with node.client() as http:
        job_id, rest = stream_body(http, ["streamer-auth", "fail500"], data)
        assert rest == b'{"answer": 42}'
        result = get_result(http, job_id)
    assert result == {
        "id": job_id,
        "status": "success",
        "result": {"container": "streamer-auth", "output": {"answer": 42}},
    }
    [call] = stream_services["stream"].calls_tagged(data["tag"])
    assert call["headers"]["authorization"] == f"Bearer {BEARER}"
    assert stream_services["fail500"].calls_tagged(data["tag"]) == []


def test_container_breaking_mid_stream_ends_the_stream_and_fails_the_job(
    node: NodeProcess, stream_services: dict[str, ServiceProcess]
) -> None:
    with node.client() as http:
        job_id, rest = stream_body(http, ["streamer"], {"parts": PARTS, "break_after": 2})
        assert rest == b"chunk-0\nchunk-1\n"
        result = get_result(http, job_id)
    assert result["status"] == "failed"
    assert result["result"]["container"] == "streamer"
    url = f"{stream_services['stream'].url}/service_output"
    assert result["result"]["error"].startswith(f"response from {url} broke off: ")


def test_error_status_sends_only_the_id_line_and_fails_the_job(
    node: NodeProcess, stream_services: dict[str, ServiceProcess]
) -> None:
    with node.client() as http:
        job_id, rest = stream_body(http, ["fail500"], {})
        assert rest == b""
        result = get_result(http, job_id)
    url = f"{stream_services['fail500'].url}/service_output"
    assert result == {
        "id": job_id,
        "status": "failed",
        "result": {"container": "fail500", "error": f'HTTP 500 from {url}: {{"error": "boom"}}'},
    }


def test_stream_times_out(node: NodeProcess) -> None:
    started = time.monotonic()
    with node.client() as http:
        job_id, rest = stream_body(http, ["hang"], {})
        elapsed = time.monotonic() - started
        assert rest == b""
        result = get_result(http, job_id)
    assert STREAM_TIMEOUT <= elapsed < STREAM_TIMEOUT + 3
    assert result["result"] == {"container": "hang", "error": f"timed out after {STREAM_TIMEOUT:g}s"}


def test_client_disconnect_stops_the_stream_and_fails_the_job(node: NodeProcess, tmp_path: Path) -> None:
    release = tmp_path / "never"
    data = {"parts": PARTS, "release": str(release)}
    with node.client() as http:
        with http.stream("POST", "/api/jobs/stream", json={"containers": ["streamer"], "data": data}) as response:
            chunks = response.iter_raw()
            received = bytearray()
            read_until(chunks, received, b"chunk-0\n")
            job_id = received.split(b"\n", 1)[0].decode()
        http.close()  # drop the connection with the stream half read

    with node.client() as http:
        result = wait_done(http, job_id)
    assert result == {
        "id": job_id,
        "status": "failed",
        "result": {"container": "streamer", "error": "client disconnected"},
    }


def test_stream_refusals_are_json_errors(node: NodeProcess) -> None:
    with node.client() as http:
        unknown = http.post("/api/jobs/stream", json={"containers": ["nope"], "data": {}})
        delegated = http.post("/api/jobs/stream", json=delegated_body())
        malformed = http.post("/api/jobs/stream", json={"containers": "streamer", "data": {}})
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "Container not supported"
    assert delegated.status_code == 400
    assert delegated.json() == {"error": "Streaming only supported for OffchainJob requests."}
    assert malformed.status_code == 400
    assert malformed.json()["params"] == {"path": "$.containers"}


def delegated_body() -> dict[str, Any]:
    subscription = {
        "owner": "0x" + "11" * 20,
        "container_id": "streamer",
        "active_at": 0,
        "frequency": 1,
        "period": 0,
        "redundancy": 1,
        "max_gas_price": 1,
        "max_gas_limit": 100_000,
        "inputs": "",
    }
    signature = {"nonce": 0, "expiry": 2**32 - 1, "v": 27, "r": 1, "s": 1}
    return {"subscription": subscription, "signature": signature, "data": {}}


def test_resources_collects_answering_containers_and_leaves_out_the_rest(node: NodeProcess) -> None:
    started = time.monotonic()
    with node.client() as http:
        response = http.get("/resources")
        with_model = http.get("/resources", params={"model_id": "llama-3"})
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    # fail500 (500), nonjson (not JSON), hang (no answer in time) and absent (refused) are left out.
    assert response.json() == {
        "streamer": {"mode": "stream", "model_id": None, "auth": None},
        "streamer-auth": {"mode": "stream", "model_id": None, "auth": f"Bearer {BEARER}"},
        "streamer-port": {"mode": "stream", "model_id": None, "auth": None},
    }
    assert with_model.json() == {
        "streamer": {"mode": "stream", "model_id": "llama-3", "auth": None},
        "streamer-auth": {"mode": "stream", "model_id": "llama-3", "auth": f"Bearer {BEARER}"},
        "streamer-port": {"mode": "stream", "model_id": "llama-3", "auth": None},
    }
    # Asked in parallel: two calls, each bounded by one resources_timeout (the hanging container).
    assert elapsed < 2 * RESOURCES_TIMEOUT + 2
