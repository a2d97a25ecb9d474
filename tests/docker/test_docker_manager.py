"""DockerManager and the Node over a real (private) Docker engine, in-process.

Start-up (pull fallback, missing images, reuse, readiness), the monitor's restarts and the
shutdown are checked against what the engine itself reports about the containers.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import anyio
import docker
import httpx
import pytest
from docker_support import IMAGE, MISSING_IMAGE, expected_output, service
from support.redis_server import free_port

from infernet_core import ContainerConfig, ContainerFailure, JobRequest, Node, NodeConfig
from infernet_core.containers.docker import DockerManager, ManagedContainer, container_options
from infernet_core.containers.http import HttpContainer
from infernet_core.errors import ContainerStartError
from infernet_core.models import ContainerInput, Source

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

CLIENT = "127.0.0.1"


def container_config(container_id: str, **extra: Any) -> ContainerConfig:
    return ContainerConfig(**service(container_id, free_port(), **extra))


def node_config(*containers: ContainerConfig, **extra: Any) -> NodeConfig:
    return NodeConfig(containers=list(containers), startup_wait=10, **extra)


async def run_job(node: Node, container_id: str, data: dict[str, Any]) -> dict[str, Any]:
    job_id = await node.submit(JobRequest(containers=[container_id], data=data), CLIENT)
    assert job_id is not None
    with anyio.fail_after(10):
        while True:
            [result] = await node.results([job_id], CLIENT)
            if result.status != "running":
                return {"status": result.status, "result": result.result}
            await anyio.sleep(0.02)


def state(client: docker.DockerClient, name: str) -> str:
    return str(client.containers.get(name).status)


async def test_node_runs_a_job_through_the_container_it_starts(
    docker_host: str, docker_client: docker.DockerClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    volume = tmp_path / "shared"
    volume.mkdir()
    config = container_config("greeter", env={"GREETING": "hello"}, volumes=[f"{volume}:/shared:ro"])
    caplog.set_level(logging.INFO, "infernet_core.containers.docker")
    async with Node(node_config(config)) as node:
        attrs = docker_client.containers.get("greeter").attrs
        assert attrs["Config"]["Image"] == IMAGE
        assert attrs["Config"]["Cmd"] == ["/serve", str(config.port)]
        assert "GREETING=hello" in attrs["Config"]["Env"]
        assert attrs["HostConfig"]["NetworkMode"] == "host"
        assert attrs["HostConfig"]["Binds"] == [f"{volume}:/shared:ro"]
        assert attrs["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 5}
        assert attrs["HostConfig"]["PortBindings"] in (None, {})
        assert [c.id for c in (await node.info()).containers] == ["greeter"]
        result = await run_job(node, "greeter", {"n": 1})
        assert result["status"] == "success"
        assert result["result"].output == expected_output("hello", {"n": 1})
    assert state(docker_client, "greeter") == "exited"
    # The pull failed (the image's registry does not exist), so the local copy was used.
    assert any(
        "could not pull image" in r.getMessage() and "using the local copy" in r.getMessage() for r in caplog.records
    )


async def test_remove_containers_on_stop(docker_host: str, docker_client: docker.DockerClient) -> None:
    async with Node(node_config(container_config("removed"), remove_containers_on_stop=True)):
        assert state(docker_client, "removed") == "running"
    assert docker_client.containers.list(all=True, filters={"name": "removed"}) == []


async def test_missing_images_fail_start_naming_them(docker_host: str, docker_client: docker.DockerClient) -> None:
    other_missing = "127.0.0.1:1/infernet-test/other:2"
    config = node_config(
        container_config("ok"),
        container_config("gone", image=MISSING_IMAGE),
        container_config("gone2", image=other_missing),
    )
    node = Node(config)
    with pytest.raises(ContainerStartError) as info:
        async with node:
            pytest.fail("must not start")  # pragma: no cover
    message = info.value.message
    assert message.startswith("Could not pull all images: ")
    assert "\n" not in message
    assert MISSING_IMAGE in message and other_missing in message and f"{IMAGE} " not in message
    assert info.value.params == {"images": [MISSING_IMAGE, other_missing]}
    assert docker_client.containers.list(all=True) == []
    assert node.running is False


async def test_container_that_never_answers_fails_start(docker_host: str, docker_client: docker.DockerClient) -> None:
    silent = ContainerConfig(**service("silent", free_port(), listen=free_port()))  # listens elsewhere
    node = Node(NodeConfig(containers=[silent], startup_wait=1))
    started = time.monotonic()
    with pytest.raises(ContainerStartError) as info:
        async with node:
            pytest.fail("must not start")  # pragma: no cover
    assert time.monotonic() - started < 5
    message = info.value.message
    assert message.startswith("Containers did not answer HTTP within 1s: silent at http://127.0.0.1:")
    assert "docker status running" in message
    assert info.value.params == {"containers": ["silent"]}
    assert state(docker_client, "silent") == "exited"  # the half-started node stopped what it started


async def test_reuses_a_running_container_and_leaves_it_running(
    docker_host: str, docker_client: docker.DockerClient
) -> None:
    config = container_config("reused", env={"GREETING": "original"})
    existing = docker_client.containers.run(**container_options(config))
    async with Node(
        node_config(ContainerConfig(**{**service("reused", config.port), "env": {"GREETING": "new"}}))
    ) as node:
        assert [c.id for c in docker_client.containers.list(all=True)] == [existing.id]
        result = await run_job(node, "reused", {"n": 2})
        assert result["result"].output == expected_output("original", {"n": 2})
    assert state(docker_client, "reused") == "running"  # not started by the node: not stopped by it


async def test_starts_a_stopped_container_of_that_name_and_stops_it(
    docker_host: str, docker_client: docker.DockerClient
) -> None:
    config = container_config("sleeper", env={"GREETING": "old"})
    existing = docker_client.containers.create(**{k: v for k, v in container_options(config).items() if k != "detach"})
    assert existing.status == "created"
    async with Node(node_config(config)) as node:
        assert state(docker_client, "sleeper") == "running"
        assert [c.id for c in docker_client.containers.list(all=True)] == [existing.id]
        result = await run_job(node, "sleeper", {"n": 3})
        assert result["result"].output == expected_output("old", {"n": 3})
    assert state(docker_client, "sleeper") == "exited"


async def test_stream_and_resources_reach_the_managed_container(
    docker_host: str, docker_client: docker.DockerClient
) -> None:
    config = container_config("streamer", env={"GREETING": "flow"})
    manager = DockerManager([config], startup_wait=10)
    payload = ContainerInput(source=Source.OFFCHAIN, destination=Source.STREAM, data={"n": 5})
    async with httpx.AsyncClient() as http:
        client = manager.wrap(HttpContainer(config, http))
        await manager.start()
        try:
            async with client.stream(payload) as chunks:
                body = b"".join([chunk async for chunk in chunks])
            assert json.loads(body) == {
                "greeting": "flow",
                "input": {"source": 1, "destination": 2, "data": {"n": 5}},
            }
            assert await client.resources("m1") == {"query": "model_id=m1"}
        finally:
            await manager.stop()


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.02)


async def test_monitor_restarts_a_killed_container_and_calls_fail_fast_meanwhile(
    docker_host: str, docker_client: docker.DockerClient
) -> None:
    config = container_config("phoenix", env={"GREETING": "again", "RESTART_DELAY": "1"})
    manager = DockerManager([config], startup_wait=10, monitor_period=0.1)
    payload = ContainerInput(source=Source.OFFCHAIN, destination=Source.OFFCHAIN, data={"n": 4})
    async with httpx.AsyncClient() as http:
        client = manager.wrap(HttpContainer(config, http))
        assert isinstance(client, ManagedContainer)
        await manager.start()
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(manager.monitor)
                first_id = docker_client.containers.get("phoenix").id
                assert (await client.run(payload))["greeting"] == "again"

                docker_client.containers.get("phoenix").kill()
                await wait_until(lambda: not manager.is_up("phoenix"))
                assert manager.down_ids() == {"phoenix"}
                started = time.monotonic()
                with pytest.raises(ContainerFailure, match=r"^container phoenix is down \(restarting\)$"):
                    await client.run(payload)
                assert time.monotonic() - started < 0.5

                await wait_until(lambda: manager.is_up("phoenix"))
                assert manager.down_ids() == frozenset()
                assert (await client.run(payload))["input"]["data"] == {"n": 4}
                assert docker_client.containers.get("phoenix").id == first_id  # restarted, not re-created

                docker_client.containers.get("phoenix").remove(force=True)  # gone: the monitor re-creates it
                await wait_until(lambda: not manager.is_up("phoenix"))
                await wait_until(lambda: manager.is_up("phoenix"))
                assert docker_client.containers.get("phoenix").id != first_id
                assert (await client.run(payload))["greeting"] == "again"
                group.cancel_scope.cancel()
        finally:
            await manager.stop()
    assert state(docker_client, "phoenix") == "exited"
