"""``infernet-node`` as a standalone process: clean SIGTERM shutdown (with jobs in flight),
config errors as exit status 2 with one stderr line, and url/port containers with no Docker."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    CLIENT_A,
    CLIENT_B,
    SLOW_DELAY,
    ServiceProcess,
    free_port,
    get_result,
    node_command,
    running_node,
    start_node,
    start_services,
    submit,
    subprocess_env,
    tag,
    wait_done,
    write_config,
)

pytestmark = pytest.mark.e2e

LONG_JOB = 3.0  # seconds the "long" service sleeps: longer than the grace below
GRACE = 0.5


@pytest.fixture(scope="module")
def long_service() -> Iterator[ServiceProcess]:
    services = start_services({"long": "slow"}, delay=LONG_JOB)
    try:
        yield services["long"]
    finally:
        services["long"].kill()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``infernet-node ARGS`` to completion (it is expected to exit on its own)."""
    return subprocess.run(
        [*node_command(), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
        env=env if env is not None else subprocess_env(),
    )


# -- SIGTERM ----------------------------------------------------------------------------------


def test_sigterm_with_a_job_in_flight_exits_0(tmp_path: Path, long_service: ServiceProcess) -> None:
    config = {
        "manage_containers": False,
        "shutdown_grace": GRACE,
        "containers": [{"id": "long", "url": long_service.url}],
    }
    node = start_node(tmp_path, config)
    marker = tag()
    with node.client() as http:
        job_id = submit(http, ["long"], {"tag": marker})
        assert get_result(http, job_id)["status"] == "running"
        # Wait until the container really has the call, so the job is truly in flight.
        deadline = time.monotonic() + 5
        while not long_service.calls_tagged(marker):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    started = time.monotonic()
    status = node.stop(timeout=5)
    took = time.monotonic() - started
    output = node.output()
    assert status == 0, output
    # It waited for the grace period, then gave up on the job rather than on the exit.
    assert GRACE * 0.8 <= took < LONG_JOB, (took, output)
    assert "Traceback" not in output
    assert "node stopped" in output


def test_sigterm_waits_for_a_job_shorter_than_the_grace(tmp_path: Path, services: dict[str, ServiceProcess]) -> None:
    config = {
        "manage_containers": False,
        "shutdown_grace": 5.0,
        "containers": [{"id": "slow", "url": services["slow"].url}],
    }
    node = start_node(tmp_path, config)
    with node.client() as http:
        job_id = submit(http, ["slow"], {"tag": tag()})
        assert get_result(http, job_id)["status"] == "running"
    started = time.monotonic()
    status = node.stop(timeout=5)
    took = time.monotonic() - started
    assert status == 0, node.output()
    # It waited for the job (about SLOW_DELAY from submission) instead of cutting it off.
    assert SLOW_DELAY * 0.5 <= took < SLOW_DELAY + 3, took
    assert "Traceback" not in node.output()


def test_sigterm_when_idle_is_quick(tmp_path: Path) -> None:
    node = start_node(tmp_path)
    with node.client() as http:  # leave an idle keep-alive connection open during shutdown
        assert http.get("/health").status_code == 200
        started = time.monotonic()
        status = node.stop(timeout=5)
    assert status == 0, node.output()
    assert time.monotonic() - started < 2.0


# -- config errors ------------------------------------------------------------------------------


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("config", "key_path"),
    [
        ({"server": {"port": "x"}}, "server.port"),
        ({"server": {"port": 70000}}, "server.port"),
        (
            {"manage_containers": False, "containers": [{"id": "a", "url": "http://127.0.0.1:1", "timeout": -1}]},
            "containers[0].timeout",
        ),
        ({"containers": [{"image": "x"}]}, "containers[0]"),
        ({"chain": {"enabled": "yes"}}, "chain.enabled"),
    ],
)
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, config: dict[str, Any], key_path: str) -> None:
    path = write_config(tmp_path, config)
    result = run_cli("--config", str(path), "--host", "127.0.0.1", "--port", str(free_port()))
    assert result.returncode == 2, result
    lines = stderr_lines(result)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("infernet-node: config: ")
    assert f" at {key_path}" in lines[0], lines[0]
    assert result.stdout == ""


def test_bad_port_type_message(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"server": {"port": "x"}})
    result = run_cli("--config", str(path))
    assert result.returncode == 2
    assert stderr_lines(result) == ["infernet-node: config: expected `int`, got `str` at server.port"]


def test_config_path_from_the_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"server": {"port": "x"}})
    result = run_cli(env={**subprocess_env(), "INFERNET_CONFIG_PATH": str(path)})
    assert result.returncode == 2
    [line] = stderr_lines(result)
    assert "server.port" in line


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "cannot read"), ("{not json", "is not valid JSON"), ("[1, 2]", "expected a JSON object at the top level")],
)
def test_unreadable_or_invalid_config_file(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    result = run_cli("--config", str(path))
    assert result.returncode == 2
    [line] = stderr_lines(result)
    assert line.startswith("infernet-node: config: ") and expected in line


def test_managed_containers_without_a_docker_engine_fail_start(tmp_path: Path) -> None:
    config = {"containers": [{"id": "a", "image": "example/a:latest", "port": 3000}]}
    path = write_config(tmp_path, config)
    docker_host = f"unix://{tmp_path / 'no-docker.sock'}"
    env = {**subprocess_env(), "DOCKER_HOST": docker_host}
    result = run_cli("--config", str(path), "--host", "127.0.0.1", "--port", str(free_port()), env=env)
    assert result.returncode == 2
    last = stderr_lines(result)[-1]
    assert last.startswith(f"infernet-node: Cannot reach the Docker engine at {docker_host}: ")
    assert "Traceback" not in result.stderr


def test_port_in_use_exits_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 2
    [line] = stderr_lines(result)
    assert line.startswith(f"infernet-node: cannot listen on 127.0.0.1:{port}: ")


# -- no Docker anywhere ------------------------------------------------------------------------------


def test_url_and_port_containers_need_no_docker(tmp_path: Path, services: dict[str, ServiceProcess]) -> None:
    """With manage_containers false, nothing looks for Docker: no docker binary on PATH and a
    DOCKER_HOST that points nowhere change nothing."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {
        **subprocess_env(),
        "PATH": str(empty),
        "DOCKER_HOST": f"unix://{tmp_path / 'no-docker.sock'}",
    }
    config = {
        "manage_containers": False,
        "containers": [
            {"id": "by-url", "url": services["fast"].url, "image": "ignored/image:latest"},
            {"id": "by-port", "port": services["fast2"].port},
        ],
    }
    with running_node(tmp_path, config, env=env) as node, node.client() as http:
        info = http.get("/info").json()
        assert [c["id"] for c in info["containers"]] == ["by-url", "by-port"]
        assert info["containers"][0]["image"] == "ignored/image:latest"
        data = {"tag": tag()}
        result = wait_done(http, submit(http, ["by-url", "by-port"], data))
        assert result["status"] == "success"
        assert result["result"]["container"] == "by-port"
        assert result["result"]["output"]["echo"]["echo"] == data
    assert "docker" not in node.output().lower()


# -- server.local_networks -------------------------------------------------------------------------


def test_put_status_is_limited_to_configured_local_networks(tmp_path: Path) -> None:
    config = {"server": {"local_networks": ["127.0.0.1/32"]}}
    with running_node(tmp_path, config) as node, node.client(CLIENT_A) as a, node.client(CLIENT_B) as b:
        update = {"id": "legacy-2", "status": "success", "containers": []}
        response = b.put("/api/status", json=update)
        assert response.status_code == 403
        assert response.json() == {"error": "Unauthorized", "params": {"address": CLIENT_B}}
        assert b.get("/api/jobs").json() == []

        response = a.put("/api/status", json=update)
        assert response.status_code == 200
        assert response.json() == {"id": "legacy-2", "status": "success"}
        assert a.get("/api/jobs").json() == ["legacy-2"]


def test_unknown_config_key_is_a_warning_not_an_error(tmp_path: Path) -> None:
    config = {"manage_containers": False, "server": {"prot": 1}, "extra": True}
    with running_node(tmp_path, config) as node, node.client() as http:
        assert http.get("/health").status_code == 200
    output = node.output()
    assert "unknown key server.prot is ignored" in output
    assert "unknown key extra is ignored" in output
