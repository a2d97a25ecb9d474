"""Managed containers: the node runs its containers on a Docker engine and supervises them.

:class:`DockerManager` does what the reference node's orchestrator does, with real readiness
checks instead of a blind sleep:

* **start** pulls every image in parallel (with the config's registry credentials), falling
  back to a local copy when a pull fails; creates each container, *named* after its config
  ``id``, or reuses one of that name; and waits until each answers HTTP at its base URL.
* **monitor** polls each container's status; one that died is marked down, started again and
  marked up once it answers HTTP. Calls to a down container fail at once
  (:class:`ManagedContainer`).
* **stop** stops the containers the node started (not those already running before it).

The engine is the one the ``docker`` SDK finds in the environment (``DOCKER_HOST``, else the
local socket). The SDK (``pip install 'infernet-core[docker]'``) is imported only here, and
only when a manager is made; its blocking calls run in worker threads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread
import httpx

from ..config import ContainerConfig, DockerConfig, NodeConfig
from ..errors import ConfigError, ContainerFailure, ContainerStartError
from ..models import ContainerInput
from .base import ContainerClient

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

__all__ = ("DockerManager", "ManagedContainer", "container_options")

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_R = TypeVar("_R")

SERVICE_PORT = "3000/tcp"
"""The port the service listens on inside a container on a bridge network."""
_RESTART_POLICY = {"Name": "on-failure", "MaximumRetryCount": 5}
_PROBE_TIMEOUT = 1.0
_PROBE_INTERVAL = 0.1
_MISSING = "missing"
"""The status :meth:`DockerManager._status` reports for a container that no longer exists."""


def container_options(config: ContainerConfig) -> dict[str, Any]:
    """The keyword arguments of ``DockerClient.containers.run`` that create ``config``'s container.

    As the reference node: named after the container id, detached, restarted on failure (at
    most 5 times), ``port`` published to port 3000 inside (unless ``network_mode`` is
    ``"host"``), and every GPU requested when ``gpu`` is true.
    """
    options: dict[str, Any] = {
        "image": config.image,
        "command": config.command or None,
        "name": config.id,
        "environment": dict(config.env),
        "volumes": list(config.volumes),
        "detach": True,
        "restart_policy": dict(_RESTART_POLICY),
    }
    if config.network_mode:
        options["network_mode"] = config.network_mode
    if config.network_mode != "host":
        options["ports"] = {SERVICE_PORT: ("0.0.0.0", config.port)}
    if config.gpu:
        options["device_requests"] = [{"count": -1, "capabilities": [["gpu"]]}]
    return options


class _Managed:
    """One managed container: its config, its Docker container, whether this node started it."""

    def __init__(self, config: ContainerConfig) -> None:
        self.config = config
        self.id = config.id
        self.url = config.base_url
        self.container: Container | None = None
        self.started = False


class DockerManager:
    """Starts a node's containers on a Docker engine, keeps them running, and stops them.

    Use :meth:`start` before any job runs, run :meth:`monitor` in a task for as long as the
    node runs, and call :meth:`stop` when it stops. :meth:`wrap` gives each container's client
    the down-check; :meth:`is_up` and :meth:`down_ids` say which containers answer.

    Args:
        containers: The containers to manage; each needs an ``image``.
        credentials: Registry credentials for the pulls (the config's ``docker`` block).
        startup_wait: Seconds a container may take to answer HTTP after it starts (or restarts).
        monitor_period: Seconds between two status checks of a container in :meth:`monitor`.
        remove_on_stop: Also remove the containers :meth:`stop` stops.
        stop_timeout: Seconds Docker gives a container to exit on stop before killing it.

    Raises:
        ConfigError: A container has no ``image``, or the ``docker`` SDK is not installed.
    """

    def __init__(
        self,
        containers: Sequence[ContainerConfig],
        *,
        credentials: DockerConfig | None = None,
        startup_wait: float = 5.0,
        monitor_period: float = 2.0,
        remove_on_stop: bool = False,
        stop_timeout: int = 10,
    ) -> None:
        no_image = [c.id for c in containers if not c.image]
        if no_image:
            raise ConfigError(
                f"config: manage_containers is true, but these containers have no image: {', '.join(no_image)}",
                {"containers": no_image},
            )
        try:
            import docker
        except ImportError:
            raise ConfigError(
                "config: manage_containers is true, but the Docker SDK is not installed:"
                " pip install 'infernet-core[docker]'"
            ) from None
        self._sdk = docker
        self._managed = {c.id: _Managed(c) for c in containers}
        self._auth = {"username": credentials.username, "password": credentials.password} if credentials else None
        self._startup_wait = startup_wait
        self._period = monitor_period
        self._remove_on_stop = remove_on_stop
        self._stop_timeout = stop_timeout
        self._up: set[str] = set()
        self.on_restart: Callable[[str], None] | None = None
        """Told the id of each container restarted after it died (metrics)."""
        self._client: DockerClient | None = None
        self._http: httpx.AsyncClient | None = None

    @classmethod
    def from_config(cls, config: NodeConfig, **options: Any) -> DockerManager:
        """A manager for ``config``'s containers, credentials, ``startup_wait`` and
        ``remove_containers_on_stop``; ``options`` are passed on (``monitor_period``, ...)."""
        return cls(
            config.containers,
            credentials=config.docker,
            startup_wait=config.startup_wait,
            remove_on_stop=config.remove_containers_on_stop,
            **options,
        )

    # -- state -------------------------------------------------------------------------------

    def is_up(self, container_id: str) -> bool:
        """True while the managed container ``container_id`` runs and answers HTTP."""
        return container_id in self._up

    def down_ids(self) -> frozenset[str]:
        """Ids of the managed containers that are not up (not started yet, or down)."""
        return frozenset(self._managed.keys() - self._up)

    def wrap(self, client: ContainerClient) -> ManagedContainer:
        """``client`` (the HTTP client of a managed container) failing fast while it is down."""
        return ManagedContainer(client, self)

    # -- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the engine, pull the images, run the containers and wait until each
        answers HTTP (at most ``startup_wait`` seconds). Call :meth:`stop` afterwards even when
        it fails: it stops the containers started so far.

        Raises:
            ContainerStartError: The engine is unreachable, images are missing, or containers
                could not be run or did not answer in time; the one-line message names them.
        """
        self._client = await anyio.to_thread.run_sync(self._connect)
        self._http = httpx.AsyncClient(trust_env=False)
        managed = list(self._managed.values())

        images = sorted({m.config.image for m in managed})
        missing = {image: why for image, why in zip(images, await _in_threads(self._pull, images), strict=True) if why}
        if missing:
            details = "; ".join(f"{image} ({why})" for image, why in missing.items())
            raise ContainerStartError(f"Could not pull all images: {details}", {"images": list(missing)})

        failed = {m.id: why for m, why in zip(managed, await _in_threads(self._try_run, managed), strict=True) if why}
        if failed:
            details = "; ".join(f"{cid} ({why})" for cid, why in failed.items())
            raise ContainerStartError(f"Could not run containers: {details}", {"containers": list(failed)})

        ready = await _gather([partial(self._wait_ready, m, self._startup_wait) for m in managed])
        silent = [m for m, answered in zip(managed, ready, strict=True) if not answered]
        if silent:
            states = await _in_threads(self._describe, silent)
            details = "; ".join(f"{m.id} at {m.url} ({state})" for m, state in zip(silent, states, strict=True))
            raise ContainerStartError(
                f"Containers did not answer HTTP within {self._startup_wait:g}s: {details}",
                {"containers": [m.id for m in silent]},
            )
        self._up.update(m.id for m in managed)
        log.info("managed containers up: %s", ", ".join(self._managed))

    async def stop(self) -> None:
        """Stop (and with ``remove_on_stop``, remove) the containers this manager started, in
        parallel; containers that were already running before :meth:`start` are left alone.
        Errors are logged, not raised; cancellation waits until it is done."""
        self._up.clear()
        owned = [m for m in self._managed.values() if m.started and m.container is not None]
        with anyio.CancelScope(shield=True):
            await _in_threads(self._stop_one, owned)
            if self._http is not None:
                await self._http.aclose()
                self._http = None
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- supervision -------------------------------------------------------------------------

    async def monitor(self) -> None:
        """Supervise the containers until cancelled (run it in a task).

        Every ``monitor_period`` seconds each container's status is read. One that is not
        running is marked down and started again (re-created if it was removed); it is marked
        up once it answers HTTP. Errors are logged and the watch goes on.
        """
        async with anyio.create_task_group() as group:
            for managed in self._managed.values():
                group.start_soon(self._watch, managed)

    async def _watch(self, managed: _Managed) -> None:
        while True:
            await anyio.sleep(self._period)
            try:
                await self._check(managed)
            except Exception:
                log.exception("could not check container %s", managed.id)

    async def _check(self, managed: _Managed) -> None:
        status = await anyio.to_thread.run_sync(self._status, managed, abandon_on_cancel=True)
        if status == "running":
            if managed.id not in self._up and await self._answers(managed):
                self._mark_up(managed)
            return
        if managed.id in self._up:
            self._up.discard(managed.id)
            log.warning("container %s is down (docker status: %s); restarting it", managed.id, status)
        if status == "restarting":
            return  # Docker's restart policy is bringing it back
        await anyio.to_thread.run_sync(self._revive, managed, status)
        log.info("restarted container %s", managed.id)
        if self.on_restart is not None:
            self.on_restart(managed.id)
        if await self._wait_ready(managed, self._startup_wait):
            self._mark_up(managed)

    def _mark_up(self, managed: _Managed) -> None:
        self._up.add(managed.id)
        log.info("container %s is up again", managed.id)

    # -- HTTP readiness ----------------------------------------------------------------------

    async def _answers(self, managed: _Managed) -> bool:
        """True if the container answers any HTTP request at its base URL."""
        assert self._http is not None
        try:
            await self._http.get(managed.url, timeout=_PROBE_TIMEOUT)
        except httpx.HTTPError:
            return False
        return True

    async def _wait_ready(self, managed: _Managed, timeout: float) -> bool:
        """Probe until the container answers (True) or ``timeout`` seconds pass (False)."""
        deadline = anyio.current_time() + timeout
        while True:
            if await self._answers(managed):
                return True
            if anyio.current_time() >= deadline:
                return False
            await anyio.sleep(_PROBE_INTERVAL)

    # -- blocking Docker calls (run in worker threads) -----------------------------------------

    def _connect(self) -> DockerClient:
        """A client of the engine ``DOCKER_HOST`` names, speaking the engine's API version."""
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        try:
            # A fixed version makes no request; asking the engine's version is the reachability test.
            probe = self._sdk.from_env(version=self._sdk.constants.MINIMUM_DOCKER_API_VERSION)
            try:
                version = probe.version(api_version=False)["ApiVersion"]
            finally:
                probe.close()
            return self._sdk.from_env(version=version)
        except Exception as exc:
            reason = _one_line(exc)
        # Raised outside the handler: the SDK's error, which holds the failed connection, is
        # not kept alive as this error's context.
        raise ContainerStartError(f"Cannot reach the Docker engine at {where}: {reason}")

    def _docker(self) -> DockerClient:
        if self._client is None:
            raise RuntimeError("the Docker manager is not started")
        return self._client

    def _pull(self, image: str) -> str | None:
        """Pull ``image``, or fall back to a local copy; None when it is there, else why not."""
        reason = self._pull_error(image)
        if reason is None:
            log.info("pulled image %s", image)
            return None
        try:
            self._docker().images.get(image)
        except self._sdk.errors.ImageNotFound:
            return f"pull failed: {reason}; no local copy"
        except Exception as exc:
            return f"pull failed: {reason}; local lookup failed: {_one_line(exc)}"
        log.warning("could not pull image %s (%s); using the local copy", image, reason)
        return None

    def _pull_error(self, image: str) -> str | None:
        """Pull ``image``; None on success, else the engine's error (it may come mid-stream)."""
        repository, tag = self._sdk.utils.parse_repository_tag(image)
        try:
            events = self._docker().api.pull(
                repository, tag=tag or "latest", stream=True, decode=True, auth_config=self._auth
            )
            for event in events:
                if "error" in event:
                    return _one_line(event["error"])
        except Exception as exc:
            return _one_line(exc)
        return None

    def _try_run(self, managed: _Managed) -> str | None:
        try:
            self._run(managed)
        except Exception as exc:
            return _one_line(exc)
        return None

    def _run(self, managed: _Managed) -> None:
        """Reuse the container named after the id (starting it unless running), else create it."""
        client = self._docker()
        try:
            container = client.containers.get(managed.id)
        except self._sdk.errors.NotFound:
            managed.container = client.containers.run(**container_options(managed.config))
            managed.started = True
            log.info("created container %s from image %s", managed.id, managed.config.image)
            return
        managed.container = container
        image = container.attrs.get("Config", {}).get("Image", "")
        if image != managed.config.image:
            log.warning("reusing container %s of image %s (config says %s)", managed.id, image, managed.config.image)
        if container.status == "running":
            log.info("reusing running container %s", managed.id)
            return
        container.start()
        managed.started = True
        log.info("started existing container %s", managed.id)

    def _status(self, managed: _Managed) -> str:
        assert managed.container is not None
        try:
            managed.container.reload()
        except self._sdk.errors.NotFound:
            return _MISSING
        return str(managed.container.status)

    def _revive(self, managed: _Managed, status: str) -> None:
        assert managed.container is not None
        if status == _MISSING:
            self._run(managed)
        elif status == "paused":
            managed.container.unpause()
        else:
            managed.container.start()

    def _describe(self, managed: _Managed) -> str:
        """The container's Docker state and last log line, for a start-up error."""
        assert managed.container is not None
        try:
            managed.container.reload()
            state = managed.container.attrs.get("State", {})
            text = f"docker status {state.get('Status')}, exit code {state.get('ExitCode')}"
            lines = managed.container.logs(tail=1).decode(errors="replace").strip()
        except Exception as exc:
            return f"docker state unknown: {_one_line(exc)}"
        return f"{text}, last log line {lines!r}" if lines else text

    def _stop_one(self, managed: _Managed) -> None:
        assert managed.container is not None
        try:
            managed.container.stop(timeout=self._stop_timeout)
            if self._remove_on_stop:
                managed.container.remove()
        except Exception as exc:
            log.warning("could not stop container %s: %s", managed.id, _one_line(exc))
        else:
            log.info("%s container %s", "removed" if self._remove_on_stop else "stopped", managed.id)


class ManagedContainer(ContainerClient):
    """The client of a managed container: runs and streams fail at once while the container
    is down; otherwise, and for :meth:`resources`, ``inner`` (its
    :class:`~infernet_core.containers.HttpContainer`) does the work.

    Args:
        inner: The client that calls the container's HTTP service.
        manager: The manager supervising the container.
    """

    def __init__(self, inner: ContainerClient, manager: DockerManager) -> None:
        self.info = inner.info
        self._inner = inner
        self._manager = manager

    async def run(self, payload: ContainerInput) -> Any:
        self._check_up()
        return await self._inner.run(payload)

    @asynccontextmanager
    async def stream(self, payload: ContainerInput) -> AsyncIterator[AsyncIterator[bytes]]:
        self._check_up()
        async with self._inner.stream(payload) as chunks:
            yield chunks

    async def resources(self, model_id: str | None = None) -> Any:
        return await self._inner.resources(model_id)

    def _check_up(self) -> None:
        if not self._manager.is_up(self.info.id):
            raise ContainerFailure(f"container {self.info.id} is down (restarting)")


def _one_line(error: object) -> str:
    """``error`` as one short line (for a Docker API error, the engine's own explanation)."""
    explanation = getattr(error, "explanation", None)
    text = " ".join(str(explanation or error).split()) or type(error).__name__
    return text[:300]


async def _in_threads(function: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """``function(item)`` for every item, each in a worker thread, all at once; results in order."""
    return await _gather([partial(anyio.to_thread.run_sync, function, item) for item in items])


async def _gather(calls: Sequence[Callable[[], Awaitable[_R]]]) -> list[_R]:
    """Await every call concurrently; their results, in order."""
    results: dict[int, _R] = {}

    async def one(index: int) -> None:
        results[index] = await calls[index]()

    async with anyio.create_task_group() as group:
        for index in range(len(calls)):
            group.start_soon(one, index)
    return [results[index] for index in range(len(calls))]
