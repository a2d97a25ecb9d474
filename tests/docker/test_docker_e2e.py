"""The real ``infernet-node --config`` managing containers on a private Docker engine.

The node runs as a subprocess with ``DOCKER_HOST`` pointing at the engine the fixtures
started; its containers use the host's network, so every request stays on loopback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import pytest
from docker_support import IMAGE, MISSING_IMAGE, expected_output, service

sys.path.append(str(Path(__file__).resolve().parents[1] / "e2e"))  # the e2e tests' process helpers
from e2e_support import free_port, node_command, running_node, start_node, submit, tag, wait_done  # noqa: E402

pytestmark = pytest.mark.docker


def managed_config(*containers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"manage_containers": True, "startup_wait": 10, "containers": list(containers), **extra}


def info_ids(http: Any) -> list[str]:
    response = http.get("/info")
    assert response.status_code == 200
    return [c["id"] for c in response.json()["containers"]]


def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_node_starts_its_containers_runs_jobs_and_stops_them(
    tmp_path: Path, docker_env: dict[str, str], docker_client: docker.DockerClient
) -> None:
    config = managed_config(service("greeter", free_port(), env={"GREETING": "hi"}))
    with running_node(tmp_path, config, env=docker_env) as node, node.client() as http:
        assert docker_client.containers.get("greeter").status == "running"
        response = http.get("/info")
        assert response.json()["containers"] == [{"id": "greeter", "image": IMAGE, "description": "", "external": True}]
        data = {"tag": tag()}
        result = wait_done(http, submit(http, ["greeter"], data))
        assert result == {
            "id": result["id"],
            "status": "success",
            "result": {"container": "greeter", "output": expected_output("hi", data)},
        }
    # running_node sent SIGTERM and checked the exit status 0: the container it started is stopped.
    assert docker_client.containers.get("greeter").status == "exited"
    output = node.output()
    assert f"could not pull image {IMAGE}" in output and "using the local copy" in output
    assert "stopped container greeter" in output


def test_missing_image_fails_start_with_one_line(
    tmp_path: Path, docker_env: dict[str, str], docker_client: docker.DockerClient
) -> None:
    config = managed_config(service("ok", free_port()), service("absent", free_port(), image=MISSING_IMAGE))
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    result = subprocess.run(
        [*node_command(), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(free_port())],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        env=docker_env,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"infernet-node: Could not pull all images: {MISSING_IMAGE} (pull failed: ")
    assert last.endswith("; no local copy)")
    assert "Traceback" not in result.stderr
    assert docker_client.containers.list(all=True) == []


def test_killed_container_is_restarted_and_jobs_fail_fast_meanwhile(
    tmp_path: Path, docker_env: dict[str, str], docker_client: docker.DockerClient
) -> None:
    # After a restart the service waits 3 s before answering: a down window to observe.
    config = managed_config(
        service("phoenix", free_port(), env={"GREETING": "back", "RESTART_DELAY": "3"}),
        service("steady", free_port(), env={"GREETING": "still"}),
    )
    with running_node(tmp_path, config, env=docker_env) as node, node.client() as http:
        assert info_ids(http) == ["phoenix", "steady"]
        docker_client.containers.get("phoenix").kill()

        wait_for(lambda: info_ids(http) == ["steady"])
        started = time.monotonic()
        failed = wait_done(http, submit(http, ["phoenix"], {"n": 1}))
        assert time.monotonic() - started < 1.0
        assert failed["status"] == "failed"
        assert failed["result"] == {"container": "phoenix", "error": "container phoenix is down (restarting)"}
        still = wait_done(http, submit(http, ["steady"], {"n": 2}))
        assert still["result"]["output"] == expected_output("still", {"n": 2})

        wait_for(lambda: info_ids(http) == ["phoenix", "steady"])
        assert docker_client.containers.get("phoenix").status == "running"
        data = {"tag": tag()}
        result = wait_done(http, submit(http, ["phoenix"], data))
        assert result["status"] == "success"
        assert result["result"]["output"] == expected_output("back", data)
    output = node.output()
    assert "container phoenix is down (docker status: exited); restarting it" in output
    assert "container phoenix is up again" in output


def test_node_reuses_a_container_it_did_not_start_and_leaves_it_running(
    tmp_path: Path, docker_env: dict[str, str], docker_client: docker.DockerClient
) -> None:
    port = free_port()
    existing = docker_client.containers.run(
        IMAGE, f"/serve {port}", name="shared", environment={"GREETING": "mine"}, network_mode="host", detach=True
    )
    node = start_node(tmp_path, managed_config(service("shared", port, env={"GREETING": "ignored"})), env=docker_env)
    try:
        with node.client() as http:
            result = wait_done(http, submit(http, ["shared"], {"n": 3}))
            assert result["result"]["output"] == expected_output("mine", {"n": 3})
    finally:
        assert node.stop() == 0, node.output()
    assert [c.id for c in docker_client.containers.list()] == [existing.id]  # still running
    assert "reusing running container shared" in node.output()
