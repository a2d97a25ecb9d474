"""The project's Docker image: the repository's ``Dockerfile`` built on the private engine and
run there, and the compose example checked against it.

No registry is reachable, so the image's ``BASE`` is a Debian root filesystem made with
debootstrap and ``docker import``ed (see ``image_support``: made once, then cached), and the
build context carries wheels of the locked dependencies: the build runs with no network at
all. The node in the image uses the host's network (every request stays on loopback) and a
real Redis; its containers are the e2e tests' container services, run on the host.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from image_support import REPO, base_rootfs, build_context, build_image, dependency_wheels, import_base

from infernet_core import load_config

sys.path.append(str(Path(__file__).resolve().parents[1] / "e2e"))  # the e2e tests' process helpers
from e2e_support import ServiceProcess, client, free_port, get_result, start_services, submit  # noqa: E402

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container
    from docker.models.images import Image
    from support.dockerd import DockerEngine

BASE = "127.0.0.1:1/infernet-test/debian:bookworm"
"""The imported root filesystem (its registry does not exist: never pulled)."""
IMAGE = "127.0.0.1:1/infernet-test/infernet-core:test"
UID = 10001
"""The Dockerfile's default ``UID``."""
SLOW_DELAY = 1.0
"""Seconds the ``slow`` container service takes per call."""
SHUTDOWN_GRACE = 4.0
"""The node's ``shutdown_grace``: well over ``SLOW_DELAY``, so slow jobs finish while stopping."""
STOP_TIMEOUT = 30
"""``docker stop``'s wait before SIGKILL: the node must exit on its own well before."""
READY_TIMEOUT = 60.0
STOPPED = "node stopped before the job finished"

log_timing = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def build_client(docker_engine: DockerEngine) -> Iterator[docker.DockerClient]:
    """A client of the private engine patient enough for a build's silent steps."""
    import docker

    with closing(docker.DockerClient(base_url=docker_engine.host, timeout=600)) as client:
        yield client


@pytest.fixture(scope="module")
def node_image(build_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The image of the repository's Dockerfile, built offline on the test base."""
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        rootfs = pool.submit(base_rootfs)
        wheels = pool.submit(dependency_wheels)
        try:
            rootfs_tar = rootfs.result()
        except FileNotFoundError as exc:
            pytest.fail(f"{exc} (scripts/test.sh installs it)")
        wheel_dir = wheels.result()
    prepared = time.monotonic()
    import_base(build_client, rootfs_tar, BASE)
    context = tmp_path_factory.mktemp("context")
    copied = build_context(context, wheel_dir)
    # The repository's .dockerignore keeps the context to what the build reads.
    assert {"Dockerfile", "pyproject.toml", "README.md", "src/infernet_core/__init__.py"} <= set(copied)
    strays = [p for p in copied if p not in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md")]
    assert all(p.startswith("src/") and "__pycache__" not in p for p in strays), strays
    imported = time.monotonic()
    image, log = build_image(build_client, context, IMAGE, {"BASE": BASE})
    log_timing.info(
        "image: root filesystem and wheels %.1fs, import %.1fs, build %.1fs",
        prepared - started,
        imported - prepared,
        time.monotonic() - imported,
    )
    assert "dependencies from /src/wheels (no index)" in "".join(log)
    return image


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the node's user in a container can read (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="infernet-image-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def image_services() -> Iterator[dict[str, ServiceProcess]]:
    started = start_services({"fast": "fast", "slow": "slow", "hang": "hang"}, delay=SLOW_DELAY)
    try:
        yield started
    finally:
        for service in started.values():
            service.kill()


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.1)


def answers_health(port: int) -> bool:
    try:
        with client() as http:
            return http.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def health_status(container: Container) -> str:
    container.reload()
    assert container.status == "running", container.logs().decode(errors="replace")
    return str(container.attrs["State"]["Health"]["Status"])


def node_config(port: int, redis_url: str, services: dict[str, ServiceProcess]) -> dict[str, Any]:
    return {
        "manage_containers": False,
        "server": {"host": "127.0.0.1", "port": port},
        "store": {"kind": "redis", "url": redis_url, "prefix": f"image-{port}"},
        "shutdown_grace": SHUTDOWN_GRACE,
        "containers": [{"id": name, "url": service.url, "timeout": 120} for name, service in services.items()],
    }


def run_node(client: docker.DockerClient, config: Path, *, config_path: str | None = None, **extra: Any) -> Container:
    """Start the image on the host's network with ``config`` mounted read-only, at
    /app/config.json or, with ``config_path``, there (named by INFERNET_CONFIG_PATH)."""
    target = config_path or "/app/config.json"
    return client.containers.run(
        IMAGE,
        detach=True,
        network_mode="host",
        volumes={str(config): {"bind": target, "mode": "ro"}},
        environment={"INFERNET_CONFIG_PATH": config_path} if config_path else {},
        **extra,
    )


@pytest.mark.docker
@pytest.mark.timeout(600)
def test_image_runs_as_non_root_with_healthcheck_and_stop_signal(
    node_image: Image, docker_client: docker.DockerClient
) -> None:
    config = node_image.attrs["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["StopSignal"] == "SIGTERM"
    assert "4000/tcp" in config["ExposedPorts"]
    assert "INFERNET_CONFIG_PATH=/app/config.json" in config["Env"]
    assert config["Entrypoint"] == ["infernet-node"]
    assert config["WorkingDir"] == "/app"
    test = config["Healthcheck"]["Test"]
    assert test[0] == "CMD" and "urllib.request" in test[-1] and "/health" in test[-1]
    assert "curl" not in " ".join(test)

    # One container (each costs seconds on the vfs driver): who runs, who owns the working
    # directory (the default SQLite store is written there), and what the node says with no
    # config mounted at /app/config.json: one line naming the path, exit status 2.
    container = docker_client.containers.run(
        IMAGE, entrypoint=["sh", "-c", "id; stat -c %u /app; exec infernet-node"], detach=True, network_mode="none"
    )
    assert container.wait(timeout=60)["StatusCode"] == 2
    ids, owner, *rest = container.logs().decode(errors="replace").splitlines()
    assert ids.startswith(f"uid={UID}(infernet) gid={UID}(infernet)")
    assert owner == str(UID)
    assert rest[-1].startswith("infernet-node: config: cannot read /app/config.json"), rest


@pytest.mark.docker
@pytest.mark.timeout(600)
def test_node_in_image_runs_jobs_and_stops_without_losing_accepted_ones(
    node_image: Image,
    docker_client: docker.DockerClient,
    redis_url_clean: str,
    image_services: dict[str, ServiceProcess],
    shared_dir: Path,
) -> None:
    port = free_port()
    config = shared_dir / "config.json"
    config.write_text(json.dumps(node_config(port, redis_url_clean, image_services)))
    config.chmod(0o644)
    # The image's own HEALTHCHECK command, run every half second instead of every 30 s: it
    # finds the node on the config's port (not 4000).
    healthcheck = {"interval": 500_000_000, "timeout": 5_000_000_000, "retries": 3, "start_period": 60_000_000_000}
    node = run_node(docker_client, config, healthcheck=healthcheck)
    wait_for(lambda: health_status(node) == "healthy", "docker health status healthy")
    assert answers_health(port)

    with client(base_url=f"http://127.0.0.1:{port}") as http:
        info = http.get("/info").json()
        assert [c["id"] for c in info["containers"]] == ["fast", "slow", "hang"]
        job = submit(http, ["fast"], {"x": 1})
        wait_for(lambda: get_result(http, job)["status"] != "running", "fast job done", 10)
        assert get_result(http, job)["result"] == {
            "container": "fast",
            "output": {"echo": {"x": 1}, "source": 1, "destination": 1, "requires_proof": False, "auth": None},
        }

        # Jobs in flight when `docker stop` comes: slow ones (done within shutdown_grace) and
        # hanging ones (failed when it ends); a thread keeps submitting while the node stops.
        slow = [submit(http, ["slow"], {"n": n}) for n in range(8)]
        hang = [submit(http, ["hang"], {"n": n}) for n in range(4)]
        during: list[str] = []
        stopping = threading.Event()

        def keep_submitting() -> None:
            with client(base_url=f"http://127.0.0.1:{port}") as other:
                while True:
                    try:
                        response = other.post("/api/jobs", json={"containers": ["slow"], "data": {"late": True}})
                    except httpx.TransportError:
                        if stopping.is_set():
                            return
                        time.sleep(0.02)
                        continue
                    if response.status_code == 200:
                        during.append(response.json()["id"])
                    elif stopping.is_set():
                        return
                    time.sleep(0.02)

        submitter = threading.Thread(target=keep_submitting, daemon=True)
        submitter.start()
        time.sleep(0.3)
        stopping.set()
        started = time.monotonic()
        node.stop(timeout=STOP_TIMEOUT)
        took = time.monotonic() - started
        submitter.join(10)
        assert not submitter.is_alive()
    node.reload()
    logs = node.logs().decode(errors="replace")
    assert node.attrs["State"]["ExitCode"] == 0, logs
    # It waited for the hanging jobs (shutdown_grace) and exited by itself, long before SIGKILL.
    assert SHUTDOWN_GRACE - 0.5 <= took < STOP_TIMEOUT - 5, (took, logs)
    assert during, "no job was accepted while the stop was coming"

    # A new node container (its config named by INFERNET_CONFIG_PATH this time) reads every
    # accepted job back from Redis: finished, none lost, none left running.
    restarted = run_node(docker_client, config, config_path="/etc/infernet/node.json")
    try:
        wait_for(lambda: answers_health(port), "restarted node answering /health")
        with client(base_url=f"http://127.0.0.1:{port}") as http:
            for job_id in slow:
                result = get_result(http, job_id)
                assert result["status"] == "success", result
                assert result["result"]["container"] == "slow"
            # Those accepted as the stop came had at least most of shutdown_grace to finish.
            for job_id in during:
                result = get_result(http, job_id)
                assert result["status"] == "success" or result["result"]["error"] == STOPPED, result
            for job_id in hang:
                result = get_result(http, job_id)
                assert result["status"] == "failed", result
                assert result["result"]["error"] == STOPPED
    finally:
        restarted.stop(timeout=STOP_TIMEOUT)
    restarted.reload()
    assert restarted.attrs["State"]["ExitCode"] == 0, restarted.logs().decode(errors="replace")


def test_compose_runs_the_image_with_redis_and_the_example_config() -> None:
    deploy = REPO / "deploy"
    compose = yaml.safe_load((deploy / "docker-compose.yaml").read_text())
    node, redis = compose["services"]["node"], compose["services"]["redis"]
    assert (deploy / node["build"]["context"] / "Dockerfile").is_file()
    assert "./config.json:/app/config.json:ro" in node["volumes"]
    assert node["stop_grace_period"] == "1m"
    assert "redis" in node["depends_on"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])

    config = load_config(deploy / "config.json")
    assert config.store_kind("sqlite") == "redis"
    url = urlsplit(config.redis_url())
    assert (url.hostname, url.port) == ("redis", 6379)
    # SIGTERM's grace for running jobs ends before compose's SIGKILL.
    assert config.shutdown_grace < 60
