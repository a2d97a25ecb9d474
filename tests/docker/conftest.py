"""Fixtures of the Docker tests: one private ``dockerd`` per session and the test image.

``docker_engine`` starts the engine (see ``support/dockerd.py``) and stops it by PID at the
end; the tests that need it are skipped, with dockerd's own words, only when no engine can
be started here at all. ``docker_host`` points this process's ``DOCKER_HOST`` at it, for
tests that run a node in-process. Every container is removed after each test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import closing
from typing import TYPE_CHECKING

import pytest
from docker_support import IMAGE, IMAGE_FILES
from support.dockerd import DockerdUnavailable, DockerEngine, busybox_rootfs, start_dockerd, stop_dockerd

if TYPE_CHECKING:
    import docker


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A private Docker engine for this session, with the test image imported."""
    try:
        engine = start_dockerd()
    except DockerdUnavailable as exc:
        pytest.skip(f"no Docker engine can be started here: {exc}")
    try:
        try:
            rootfs = busybox_rootfs(IMAGE_FILES)
        except FileNotFoundError as exc:
            pytest.fail(f"{exc} (scripts/test.sh installs it)")
        import docker

        with closing(docker.DockerClient(base_url=engine.host)) as client:
            repository, tag = IMAGE.rsplit(":", 1)
            client.api.import_image_from_data(rootfs, repository=repository, tag=tag)
        yield engine
    finally:
        stop_dockerd(engine)


@pytest.fixture
def docker_client(docker_engine: DockerEngine) -> Iterator[docker.DockerClient]:
    """A client of the private engine; every container is removed after the test."""
    import docker

    with closing(docker.DockerClient(base_url=docker_engine.host)) as client:
        try:
            yield client
        finally:
            for container in client.containers.list(all=True):
                container.remove(force=True)


@pytest.fixture
def docker_host(
    docker_engine: DockerEngine, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> str:
    """``DOCKER_HOST`` of this process set to the private engine (for in-process nodes)."""
    monkeypatch.setenv("DOCKER_HOST", docker_engine.host)
    return docker_engine.host


@pytest.fixture
def docker_env(docker_engine: DockerEngine, docker_client: docker.DockerClient) -> dict[str, str]:
    """The environment of an ``infernet-node`` subprocess using the private engine."""
    env = {k: v for k, v in os.environ.items() if k != "INFERNET_CONFIG_PATH" and not k.lower().endswith("_proxy")}
    return {**env, "PYTHONUNBUFFERED": "1", "DOCKER_HOST": docker_engine.host}
