"""Jobs through real container services (subprocesses speaking HTTP on 127.0.0.1), run by the
real ``infernet-node`` with ``"manage_containers": false`` and containers given by url/port."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import SLOW_DELAY, NodeProcess, ServiceProcess, get_result, running_node, submit, tag, wait_done

pytestmark = pytest.mark.e2e

HANG_TIMEOUT = 0.5
BEARER = "s3cret-token"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, services: dict[str, ServiceProcess]) -> Iterator[NodeProcess]:
    config: dict[str, Any] = {
        "manage_containers": False,
        "containers": [
            {"id": "fast", "url": services["fast"].url, "description": "echoes what it got"},
            {"id": "fast2", "url": services["fast2"].url + "/"},
            {"id": "fast-auth", "url": services["fast"].url, "bearer": BEARER},
            {"id": "fast-port", "port": services["fast"].port},
            {"id": "slow", "url": services["slow"].url},
            {"id": "fail500", "url": services["fail500"].url},
            {"id": "nonjson", "url": services["nonjson"].url},
            {"id": "hang", "url": services["hang"].url, "timeout": HANG_TIMEOUT},
            {"id": "fast-internal", "url": services["fast"].url, "external": False},
            {"id": "fast-proof", "url": services["fast"].url, "generates_proofs": True},
        ],
    }
    with running_node(tmp_path_factory.mktemp("containers"), config) as node:
        yield node


def sent(data: Any, *, source: int = 1, destination: int = 1, auth: str | None = None) -> dict[str, Any]:
    """What the ``fast`` service answers when the node sent it ``data``."""
    return {"echo": data, "source": source, "destination": destination, "requires_proof": False, "auth": auth}


def test_info_lists_configured_containers(node: NodeProcess) -> None:
    with node.client() as http:
        info = http.get("/info").json()
    containers = {c["id"]: c for c in info["containers"]}
    assert list(containers) == [
        "fast",
        "fast2",
        "fast-auth",
        "fast-port",
        "slow",
        "fail500",
        "nonjson",
        "hang",
        "fast-internal",
        "fast-proof",
    ]
    assert containers["fast"] == {"id": "fast", "image": "", "description": "echoes what it got", "external": True}
    assert containers["fast-internal"]["external"] is False


def test_fast_container_gets_the_protocol_body(node: NodeProcess, services: dict[str, ServiceProcess]) -> None:
    data = {"prompt": "hi", "tag": tag(), "n": [1, 2]}
    with node.client() as http:
        job_id = submit(http, ["fast"], data)
        result = wait_done(http, job_id)
    assert result == {"id": job_id, "status": "success", "result": {"container": "fast", "output": sent(data)}}

    [call] = services["fast"].calls_tagged(data["tag"])
    assert call["path"] == "/service_output"
    assert call["body"] == {"source": 1, "destination": 1, "data": data, "requires_proof": False}
    assert call["headers"]["content-type"] == "application/json"
    assert "authorization" not in call["headers"]


def test_bearer_header_when_configured(node: NodeProcess, services: dict[str, ServiceProcess]) -> None:
    data = {"tag": tag()}
    with node.client() as http:
        job_id = submit(http, ["fast-auth"], data)
        result = wait_done(http, job_id)
    assert result["status"] == "success"
    assert result["result"] == {"container": "fast-auth", "output": sent(data, auth=f"Bearer {BEARER}")}
    [call] = services["fast"].calls_tagged(data["tag"])
    assert call["headers"]["authorization"] == f"Bearer {BEARER}"


def test_container_given_by_port_is_reached_on_localhost(
    node: NodeProcess, services: dict[str, ServiceProcess]
) -> None:
    data = {"tag": tag()}
    with node.client() as http:
        result = wait_done(http, submit(http, ["fast-port"], data))
    assert result["status"] == "success"
    assert result["result"] == {"container": "fast-port", "output": sent(data)}
    assert len(services["fast"].calls_tagged(data["tag"])) == 1


def test_requires_proof_is_passed_on(node: NodeProcess, services: dict[str, ServiceProcess]) -> None:
    data = {"tag": tag()}
    with node.client() as http:
        # Only a container that generates proofs may end a job that requires one.
        response = http.post("/api/jobs", json={"containers": ["fast"], "data": data, "requires_proof": True})
        assert response.status_code == 400
        assert response.json() == {"error": "Container does not generate proof", "params": {"container": "fast"}}
        result = wait_done(http, submit(http, ["fast", "fast-proof"], data, requires_proof=True))
    assert result["status"] == "success"
    assert result["result"]["output"]["requires_proof"] is True
    # requires_proof is the same on every call of the chain.
    calls = services["fast"].calls_tagged(data["tag"])
    assert [call["body"]["requires_proof"] for call in calls] == [True, True]
    assert calls[0]["body"]["data"] == data


def test_chain_fast_then_fast(node: NodeProcess, services: dict[str, ServiceProcess]) -> None:
    data = {"tag": tag()}
    first = sent(data)
    second = sent(first)
    with node.client() as http:
        job_id = submit(http, ["fast", "fast2"], data)
        assert wait_done(http, job_id) == {
            "id": job_id,
            "status": "success",
            "result": {"container": "fast2", "output": second},
        }
        assert get_result(http, job_id, intermediate=True) == {
            "id": job_id,
            "status": "success",
            "result": {"container": "fast2", "output": second},
            "intermediate": [{"container": "fast", "output": first}],
        }
    [call1] = services["fast"].calls_tagged(data["tag"])
    [call2] = services["fast2"].calls_tagged(data["tag"])
    assert call1["body"] == {"source": 1, "destination": 1, "data": data, "requires_proof": False}
    # The second container gets the first one's parsed output as its data.
    assert call2["body"] == {"source": 1, "destination": 1, "data": first, "requires_proof": False}


def test_slow_container_is_running_then_succeeds(node: NodeProcess) -> None:
    data = {"tag": tag()}
    with node.client() as http:
        started = time.monotonic()
        job_id = submit(http, ["slow"], data)
        assert get_result(http, job_id) == {"id": job_id, "status": "running", "result": None}
        assert job_id in http.get("/api/jobs", params={"pending": "true"}).json()
        assert http.get("/info").json()["pending"]["offchain"] >= 1
        result = wait_done(http, job_id)
        elapsed = time.monotonic() - started
        assert job_id in http.get("/api/jobs", params={"pending": "false"}).json()
    assert result == {"id": job_id, "status": "success", "result": {"container": "slow", "output": sent(data)}}
    assert elapsed >= SLOW_DELAY * 0.9


def test_container_500_fails_the_job(node: NodeProcess) -> None:
    with node.client() as http:
        job_id = submit(http, ["fail500"], {"tag": tag()})
        result = wait_done(http, job_id, intermediate=True)
    assert result["status"] == "failed"
    assert result["intermediate"] == []
    assert set(result["result"]) == {"container", "error"}
    assert result["result"]["container"] == "fail500"
    error = result["result"]["error"]
    assert "500" in error and "/service_output" in error
    assert '{"error": "boom"}' in error  # the service's own body, as a snippet


def test_non_json_response_fails_the_job(node: NodeProcess) -> None:
    with node.client() as http:
        job_id = submit(http, ["nonjson"], {"tag": tag()})
        result = wait_done(http, job_id)
    assert result["status"] == "failed"
    assert result["result"]["container"] == "nonjson"
    assert "not JSON" in result["result"]["error"]
    assert "not json" in result["result"]["error"]


def test_hanging_container_times_out(node: NodeProcess) -> None:
    with node.client() as http:
        started = time.monotonic()
        job_id = submit(http, ["hang"], {"tag": tag()})
        result = wait_done(http, job_id)
        elapsed = time.monotonic() - started
    assert result["status"] == "failed"
    assert result["result"]["container"] == "hang"
    assert f"timed out after {HANG_TIMEOUT:g}s" in result["result"]["error"]
    assert HANG_TIMEOUT * 0.9 <= elapsed < HANG_TIMEOUT + 3


@pytest.mark.parametrize("failing", ["fail500", "nonjson"])
def test_failure_stops_the_chain(node: NodeProcess, services: dict[str, ServiceProcess], failing: str) -> None:
    data = {"tag": tag()}
    with node.client() as http:
        job_id = submit(http, [failing, "fast"], data)
        result = wait_done(http, job_id, intermediate=True)
    assert result["status"] == "failed"
    assert result["result"]["container"] == failing
    assert result["intermediate"] == []
    assert len(services[failing].calls_tagged(data["tag"])) == 1
    # Give a (wrongly) scheduled second call time to land before checking it never came.
    time.sleep(0.1)
    assert services["fast"].calls_tagged(data["tag"]) == []


def test_failure_after_a_success_keeps_the_intermediate(node: NodeProcess, services: dict[str, ServiceProcess]) -> None:
    data = {"tag": tag()}
    with node.client() as http:
        job_id = submit(http, ["fast", "fail500", "fast2"], data)
        result = wait_done(http, job_id, intermediate=True)
    assert result["status"] == "failed"
    assert result["intermediate"] == [{"container": "fast", "output": sent(data)}]
    assert result["result"]["container"] == "fail500"
    [call] = services["fail500"].calls_tagged(data["tag"])
    assert call["body"]["data"] == sent(data)
    time.sleep(0.1)
    assert services["fast2"].calls_tagged(data["tag"]) == []


def test_non_external_container_cannot_come_first(node: NodeProcess, services: dict[str, ServiceProcess]) -> None:
    data = {"tag": tag()}
    with node.client() as http:
        response = http.post("/api/jobs", json={"containers": ["fast-internal"], "data": data})
        assert response.status_code == 400
        assert response.json()["error"] == "First container must be external"
        # ... but it may come later in a chain.
        result = wait_done(http, submit(http, ["fast", "fast-internal"], data))
    assert result["status"] == "success"
    assert result["result"] == {"container": "fast-internal", "output": sent(sent(data))}


def test_concurrent_jobs_do_not_wait_for_each_other(node: NodeProcess) -> None:
    """A slow job does not hold up a fast one submitted after it."""
    with node.client() as http:
        slow_id = submit(http, ["slow"], {"tag": tag()})
        fast_id = submit(http, ["fast"], {"tag": tag()})
        fast = wait_done(http, fast_id)
        assert fast["status"] == "success"
        assert get_result(http, slow_id)["status"] == "running"
        assert wait_done(http, slow_id)["status"] == "success"
