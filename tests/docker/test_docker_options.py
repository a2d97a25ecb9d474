"""Managed containers without a Docker engine: the options containers are created with, the
checks made before any engine is contacted, and an engine that cannot be reached."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infernet_core import ConfigError, ContainerConfig, ContainerFailure, Node, NodeConfig
from infernet_core.containers.base import ContainerClient
from infernet_core.containers.docker import DockerManager, container_options
from infernet_core.errors import ContainerStartError
from infernet_core.models import ContainerInfo, ContainerInput, Source

pytestmark = pytest.mark.anyio


def test_options_follow_the_reference_node() -> None:
    config = ContainerConfig(
        id="llm",
        image="ritualnetwork/llm:1.0",
        port=3001,
        command="--model tiny --threads 2",
        env={"A": "1"},
        volumes=["/data:/models:ro"],
    )
    assert container_options(config) == {
        "image": "ritualnetwork/llm:1.0",
        "command": "--model tiny --threads 2",
        "name": "llm",
        "environment": {"A": "1"},
        "volumes": ["/data:/models:ro"],
        "detach": True,
        "restart_policy": {"Name": "on-failure", "MaximumRetryCount": 5},
        "ports": {"3000/tcp": ("0.0.0.0", 3001)},
    }


def test_options_for_gpu_and_host_network() -> None:
    options = container_options(ContainerConfig(id="g", image="img", gpu=True, network_mode="host"))
    assert options["command"] is None  # the image's own command
    assert options["network_mode"] == "host"
    assert "ports" not in options
    assert options["device_requests"] == [{"count": -1, "capabilities": [["gpu"]]}]


def test_options_for_a_named_network_still_publish_the_port() -> None:
    options = container_options(ContainerConfig(id="n", image="img", port=3005, network_mode="backend"))
    assert options["network_mode"] == "backend"
    assert options["ports"] == {"3000/tcp": ("0.0.0.0", 3005)}


def test_every_managed_container_needs_an_image() -> None:
    with pytest.raises(ConfigError) as info:
        DockerManager([ContainerConfig(id="a"), ContainerConfig(id="b", image="x"), ContainerConfig(id="c")])
    assert info.value.message == "config: manage_containers is true, but these containers have no image: a, c"
    assert info.value.params == {"containers": ["a", "c"]}


def test_a_node_that_manages_nothing_never_imports_the_sdk() -> None:
    script = """
import sys, anyio
from infernet_core import ContainerConfig, Node, NodeConfig

async def main():
    config = NodeConfig(manage_containers=False, containers=[ContainerConfig(id="a", image="x", port=1)])
    async with Node(config):
        pass
    async with Node(NodeConfig()):  # manage_containers true, but no containers
        pass

anyio.run(main)
print(sorted(name for name in sys.modules if name == "docker" or name.startswith("docker.")))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == "[]"


async def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)  # `import docker` now raises ImportError
    node = Node(NodeConfig(containers=[ContainerConfig(id="a", image="x")]))
    with pytest.raises(ConfigError) as info:
        async with node:
            pytest.fail("must not start")  # pragma: no cover
    assert info.value.message == (
        "config: manage_containers is true, but the Docker SDK is not installed: pip install 'infernet-core[docker]'"
    )
    assert node.running is False


# The SDK leaves the socket of a failed connection (in a reference cycle) for the garbage
# collector to close: collect it here, where its ResourceWarning is ignored.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_unreachable_engine_fails_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = f"unix://{tmp_path / 'nothing.sock'}"
    monkeypatch.setenv("DOCKER_HOST", host)
    node = Node(NodeConfig(containers=[ContainerConfig(id="a", image="x")]))
    with pytest.raises(ContainerStartError) as info:
        async with node:
            pytest.fail("must not start")  # pragma: no cover
    assert info.value.message.startswith(f"Cannot reach the Docker engine at {host}: ")
    assert "\n" not in info.value.message
    assert node.running is False
    gc.collect()


class Recorder(ContainerClient):
    def __init__(self) -> None:
        self.info = ContainerInfo(id="svc", image="img", description="", external=True)
        self.calls: list[ContainerInput] = []

    async def run(self, payload: ContainerInput) -> Any:
        self.calls.append(payload)
        return {"ok": True}

    async def resources(self, model_id: str | None = None) -> Any:
        return {"model_id": model_id}


async def test_calls_to_a_container_that_is_not_up_fail_at_once() -> None:
    manager = DockerManager([ContainerConfig(id="svc", image="img")])
    inner = Recorder()
    client = manager.wrap(inner)
    assert client.info == inner.info
    assert manager.is_up("svc") is False
    assert manager.down_ids() == {"svc"}
    with pytest.raises(ContainerFailure, match=r"^container svc is down \(restarting\)$"):
        await client.run(ContainerInput(source=Source.OFFCHAIN, destination=Source.OFFCHAIN, data={}))
    assert inner.calls == []


async def test_streams_to_a_container_that_is_not_up_fail_on_entering() -> None:
    manager = DockerManager([ContainerConfig(id="svc", image="img")])
    inner = Recorder()
    client = manager.wrap(inner)
    with pytest.raises(ContainerFailure, match=r"^container svc is down \(restarting\)$"):
        async with client.stream(ContainerInput(source=Source.OFFCHAIN, destination=Source.STREAM, data={})):
            pytest.fail("must not stream")  # pragma: no cover
    assert inner.calls == []


async def test_resources_are_asked_of_the_container_even_when_down() -> None:
    client = DockerManager([ContainerConfig(id="svc", image="img")]).wrap(Recorder())
    assert await client.resources("m1") == {"model_id": "m1"}
