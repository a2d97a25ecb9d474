"""The Node: the one facade over config, guardian, store, containers and running jobs."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterable, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import httpx
from anyio.abc import TaskGroup

from . import __version__
from .backends import build_backend, build_rate_limiter
from .backoff import STORE_WRITE
from .config import NodeConfig
from .containers.base import ContainerClient
from .containers.docker import DockerManager
from .containers.http import HttpContainer
from .containers.http_pool import HttpPool
from .containers.local import ContainerFunction, LocalContainer, Resources
from .dispatch import Dispatcher, LocalDispatcher
from .errors import (
    BadRequest,
    ConfigError,
    InfernetError,
    InvalidTransition,
    NodeNotRunning,
    NotFound,
    Overloaded,
    StoreUnavailable,
)
from .guardian import ContainerRules, Guardian
from .jobs import Job, JobAborted, StatusReported, apply, new_job
from .metrics import InstrumentedContainer, InstrumentedStore, NodeMetrics
from .models import (
    ChainInfo,
    DelegatedSubscriptionRequest,
    Destination,
    JobRequest,
    JobResult,
    NodeInfo,
    PendingCounts,
    Source,
    StatusUpdate,
)
from .parsing import ComputeRequest
from .pipeline import run_pipeline
from .ratelimit import RateLimiter
from .readiness import Check, port_answers, run_checks
from .resources import collect_resources
from .store import ResultStore, expired
from .streaming import STREAM_ONLY_OFFCHAIN, JobStream

if TYPE_CHECKING:
    from .chain import ChainRuntime

__all__ = ("STOPPED_REASON", "BatchEntry", "Node")

log = logging.getLogger("infernet_core.node")

BatchEntry = str | None | InfernetError
"""One batch answer: a job id, ``None`` for an accepted delegated subscription, or an error."""

STOPPED_REASON = "node stopped before the job finished"

_WAIT_RECHECK = 1.0
"""Seconds :meth:`Node.wait` waits for a wake-up before it reads the store again (a job may
end where this node does not see it: another replica, an expiry sweep)."""

BATCH_SLICE = 64
"""Requests of a batch admitted together, before the node serves others again."""

EXPIRY_SWEEP = 1.0
"""Seconds between sweeps that fail the jobs still running after ``store.pending_ttl``."""
"""The error of a job whose node stopped (or died) while running it."""


class Node:
    """An Infernet node: admits jobs, runs them through containers, keeps their results.

    Use it as an async context manager; it owns the task group its jobs run in, the pooled
    HTTP client its containers share, the Docker containers it manages
    (``manage_containers``) and, with ``chain.enabled``, its chain side (:attr:`chain`)::

        node = Node(config)

        @node.container("upper")
        async def upper(payload):
            return {"text": payload.data["text"].upper()}

        async with node:
            job_id = await node.submit(JobRequest(containers=["upper"], data={"text": "hi"}), "me")

    Args:
        config: The node configuration; ``NodeConfig()`` (the default) has no containers.
        store: Where jobs are kept; by default the store ``config.store`` names (an
            in-memory one unless it names sqlite or Redis).
        dispatcher: How accepted jobs reach a runner; by default the one that goes with
            the store (this node's own task group; for Redis, with recovery of the jobs
            of replicas whose lease expired).
        containers: Extra containers (in-process ones, say) beside those in ``config``.
        rate_limiter: Limits requests per endpoint and client address; by default the one
            ``config.server.rate_limit`` asks for (shared through Redis with a Redis store).
        http_client: An ``httpx.AsyncClient`` the configured containers are called through
            (a host's own transport, proxies, TLS settings); the host keeps it and closes it.
            By default the node's own keep-alive pool.
    """

    def __init__(
        self,
        config: NodeConfig | None = None,
        *,
        store: ResultStore | None = None,
        dispatcher: Dispatcher | None = None,
        containers: Iterable[ContainerClient] = (),
        rate_limiter: RateLimiter | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config if config is not None else NodeConfig()
        if store is None:
            store, default_dispatcher = build_backend(self.config)
        else:
            default_dispatcher = LocalDispatcher()
        self.metrics = NodeMetrics() if self.config.server.metrics else None
        """The node's Prometheus metrics (``server.metrics``), ``None`` when off."""
        self.dispatcher = dispatcher if dispatcher is not None else default_dispatcher
        self.rate_limiter = rate_limiter if rate_limiter is not None else build_rate_limiter(self.config, store)
        self.store = store if self.metrics is None else InstrumentedStore(store, self.metrics)
        """Limits requests per endpoint and client (``server.rate_limit``; ``None``: no limit).
        The HTTP face applies it; an embedder calling the node directly is not limited."""
        self._task_group: TaskGroup | None = None
        self._extra: dict[str, ContainerClient] = {}
        for client in containers:
            self.add_container(client)
        self._clients: dict[str, ContainerClient] = {}
        self._docker: DockerManager | None = None
        self._guardian = Guardian({})
        self._http: HttpPool | None = None
        self._resources = AsyncExitStack()
        """What a start opened (store, limiter, pools, chain, Docker), closed by a stop."""
        self._host_http = http_client
        """The host's own HTTP client for the configured containers (it stays the host's)."""
        self._chain: ChainRuntime | None = None
        self._accepting = False
        self._running_jobs = 0
        self._admitting = 0
        """Jobs between admission and their start (being stored): they count against
        ``server.max_pending`` too, or a burst would pass the check all at once."""
        self._waiters: deque[anyio.Event] = deque()
        """Requests waiting for room below ``server.max_queued``, first come first served:
        each job that ends hands its place to the first of them."""
        self._idle = anyio.Event()
        self._idle.set()
        self._waiting: dict[tuple[str, str], _Waiting] = {}
        """Callers of :meth:`wait`, by job: woken when this node stores the job's end."""

    # -- set-up ------------------------------------------------------------------------

    def add_container(self, client: ContainerClient) -> None:
        """Offer ``client`` as a container (before the node starts).

        Raises:
            ValueError: A container with that id exists, or the node is running.
        """
        if self._task_group is not None:
            raise ValueError("containers must be added before the node starts")
        container_id = client.info.id
        if container_id in self._extra or any(c.id == container_id for c in self.config.containers):
            raise ValueError(f"container id {container_id!r} is used twice")
        self._extra[container_id] = client

    def container(
        self,
        id: str,
        *,
        external: bool = True,
        description: str = "",
        timeout: float = 180.0,
        resources: Resources | None = None,
    ) -> Callable[[ContainerFunction], ContainerFunction]:
        """Decorator: register a Python function as an in-process container.

        The function takes a :class:`~infernet_core.models.ContainerInput` and returns the
        output (an async generator function streams it); see
        :class:`~infernet_core.containers.LocalContainer`, which also says what
        ``resources`` may be.
        """

        def register(function: ContainerFunction) -> ContainerFunction:
            self.add_container(
                LocalContainer(
                    id, function, external=external, description=description, timeout=timeout, resources=resources
                )
            )
            return function

        return register

    async def __aenter__(self) -> Self:
        for sentence in self.config.ignored_settings():
            log.warning("config: %s", sentence)
        # Everything opened from here on is closed through one exit stack, in reverse order:
        # by a stop, or at once by a start that fails half-way.
        stack = self._resources = AsyncExitStack()
        try:
            await self._open(stack)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            raise
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        try:
            docker = self._docker
            if docker is not None:
                # Containers answer before any job (an interrupted one included) runs.
                await docker.start()
                self._task_group.start_soon(docker.monitor)
            for job, request in await self.store.interrupted():
                self._spawn(job, request, True)
            self._task_group.start_soon(self._expire_overdue)
            await self.dispatcher.start(self._task_group, self._spawn)
            if self._chain is not None:
                await self._chain.start(self._task_group)
        except BaseException:
            # Start-up failed half-way: release what was opened, as a stop would.
            await self.__aexit__(None, None, None)
            raise
        self._accepting = True
        log.info("node started with containers: %s", ", ".join(self._clients) or "(none)")
        return self

    async def _open(self, stack: AsyncExitStack) -> None:
        """Open the store, limiter, HTTP pool, chain side and Docker manager, each pushed on
        ``stack`` to be closed; build the container clients and the guardian."""
        rules = {
            info.id: ContainerRules.build(info.id, external=info.external)
            for info in (client.info for client in self._extra.values())
        }
        for c in self.config.containers:
            rules[c.id] = ContainerRules.build(
                c.id,
                external=c.external,
                generates_proofs=c.generates_proofs,
                allowed_ips=c.allowed_ips,
                allowed_addresses=c.allowed_addresses,
                allowed_delegate_addresses=c.allowed_delegate_addresses,
            )
        self._guardian = Guardian(rules)
        chain = self._chain_runtime()  # before anything opens: a missing chain extra fails here
        managed = self.config.manage_containers and bool(self.config.containers)
        docker = DockerManager.from_config(self.config) if managed else None
        await self.store.open()
        stack.push_async_callback(self.store.aclose)
        if self.rate_limiter is not None:
            await self.rate_limiter.open()
            stack.push_async_callback(self.rate_limiter.aclose)
        stack.push_async_callback(self.dispatcher.aclose)
        http: HttpPool | httpx.AsyncClient
        if self._host_http is not None:
            http = self._host_http
        else:
            http = self._http = HttpPool(max_idle=64)
            stack.push_async_callback(http.aclose)
        if chain is not None:
            stack.push_async_callback(chain.aclose)
        self._chain = chain
        clients: dict[str, ContainerClient] = {c.id: HttpContainer(c, http) for c in self.config.containers}
        if docker is not None:
            stack.push_async_callback(docker.stop)
            clients = {cid: docker.wrap(client) for cid, client in clients.items()}
        self._docker = docker
        clients.update(self._extra)
        metrics = self.metrics
        if metrics is not None:
            clients = {cid: InstrumentedContainer(client, metrics) for cid, client in clients.items()}
            metrics.track_pending(
                lambda: self._running_jobs + self._admitting,
                lambda: self._chain.pending_count if self._chain is not None else 0,
            )
            if docker is not None:
                docker.on_restart = lambda container: metrics.container_restarts.labels(container).inc()
        self._clients = clients

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        self._accepting = False
        task_group, self._task_group = self._task_group, None
        try:
            if task_group is not None:
                with anyio.move_on_after(self.config.shutdown_grace, shield=True):
                    await self._idle.wait()
                task_group.cancel_scope.cancel()
                return await task_group.__aexit__(exc_type, exc, tb)
            return None
        finally:
            with anyio.CancelScope(shield=True):
                resources, self._resources = self._resources, AsyncExitStack()
                await resources.aclose()
                self._docker = None
                self._http = None
            log.info("node stopped")

    def _chain_runtime(self) -> ChainRuntime | None:
        if not self.config.chain.enabled:
            return None
        try:
            from .chain import ChainRuntime  # web3 is imported only by nodes that use the chain
        except ImportError as exc:
            raise ConfigError(
                f"config: chain.enabled is true, but the chain extra is missing ({exc.name}):"
                " pip install 'infernet-core[chain]'"
            ) from None
        return ChainRuntime(self.config, self._guardian, self._run_onchain, self.metrics)

    @property
    def chain(self) -> ChainRuntime | None:
        """The chain side (wallet, processor, listener) while running with the chain enabled."""
        return self._chain

    # -- jobs ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the node accepts jobs."""
        return self._accepting

    async def submit(self, request: ComputeRequest, client: str) -> str | None:
        """Admit and start a job; return its id (``None`` for a delegated subscription).

        The job is stored as running before this returns, so its id can be read at once.

        Raises:
            AdmissionError: The guardian refused the request.
            NodeNotRunning: The node is not started or is stopping.
            Overloaded: ``server.max_pending`` jobs are pending here (503, ``Retry-After``).
        """
        self._require_running()
        if isinstance(request, DelegatedSubscriptionRequest):
            chain = self._chain
            # Expiry is judged by chain time, as the Coordinator will judge it.
            now = await chain.chain_time() if chain is not None else time.time()
            self._guardian.check_delegated(request, chain_enabled=chain is not None, now=now)
            assert chain is not None  # the guardian refuses delegated requests without a chain
            await chain.admit_delegated(request)
            return None
        self._guardian.check_job(request, client)
        async with self._room():
            job = new_job(str(uuid.uuid4()), client, request.containers, created_at=time.time())
            await self.store.put(job, request)
            if self.metrics is not None:
                self.metrics.job_accepted(job)
            try:
                await self.dispatcher.dispatch(job, request)
            except StoreUnavailable as exc:
                # The client gets a 503 and no id; don't leave the stored job looking alive.
                reason = f"not dispatched: {exc.message}"
                failed = apply(job, JobAborted(container="", reason=reason), now=time.time())
                with contextlib.suppress(StoreUnavailable):
                    await self.store.put(failed)
                raise
        return job.id

    async def submit_batch(self, requests: Sequence[ComputeRequest | InfernetError], client: str) -> list[BatchEntry]:
        """Submit each request on its own; return one entry per request, in order.

        An entry is the job id, ``None`` for an accepted delegated subscription, or the
        error that rejected the request (a parse error passed in is returned as is).
        Requests are admitted in slices of :data:`BATCH_SLICE`: the requests of a slice
        together (so that a store writes them as one group), and the event loop serves
        others between slices, so a big batch never holds up other clients.

        Raises:
            NodeNotRunning: The node is not started or is stopping.
        """
        self._require_running()
        # Parse errors stay as they are; each request's place gets its answer.
        entries: list[BatchEntry] = [r if isinstance(r, InfernetError) else None for r in requests]

        async def admit(index: int, request: ComputeRequest) -> None:
            try:
                entries[index] = await self.submit(request, client)
            except InfernetError as exc:
                entries[index] = exc

        for start in range(0, len(requests), BATCH_SLICE):
            async with anyio.create_task_group() as tg:
                for index in range(start, min(start + BATCH_SLICE, len(requests))):
                    request = requests[index]
                    if not isinstance(request, InfernetError):
                        tg.start_soon(admit, index, request)
            stopped = next((e for e in entries[start : start + BATCH_SLICE] if isinstance(e, NodeNotRunning)), None)
            if stopped is not None:
                raise stopped
            await anyio.sleep(0)  # let other requests in between slices
        return entries

    def stream(self, request: ComputeRequest, client: str) -> StreamOpening:
        """Admit and start a stream job: its first container's response, chunk by chunk.

        Only ``request.containers[0]`` runs (destination STREAM; the guardian still checks
        them all). The job is stored as running before this returns, and again when it ends:
        with the collected output decoded, or failed if the container fails, the stream
        takes over ``config.stream_timeout`` seconds, or the reader leaves early::

            async with node.stream(request, client) as stream:
                async for chunk in stream:
                    ...

        ``await node.stream(...)`` admits it and gives the :class:`JobStream` un-entered (for
        a caller that hands it on, as the HTTP face does).

        Raises:
            BadRequest: ``request`` is a delegated subscription (only jobs stream).
            AdmissionError: The guardian refused the request.
            NodeNotRunning: The node is not started or is stopping.
            Overloaded: ``server.max_pending`` jobs are pending here.
        """
        return StreamOpening(self._open_stream(request, client))

    async def _open_stream(self, request: ComputeRequest, client: str) -> JobStream:
        self._require_running()
        if not isinstance(request, JobRequest):
            raise BadRequest(STREAM_ONLY_OFFCHAIN)
        self._guardian.check_job(request, client)
        container = self._clients[request.containers[0]]
        async with self._room():
            job = new_job(str(uuid.uuid4()), client, [container.info.id], created_at=time.time())
            await self.store.put(job)
            if self.metrics is not None:
                self.metrics.job_accepted(job)
            stream = JobStream(job)
            self._start_job(
                functools.partial(
                    stream.pump,
                    container,
                    request.data,
                    timeout=self.config.stream_timeout,
                    store=self._store_result,
                    stopped_reason=STOPPED_REASON,
                )
            )
        return stream

    async def resources(self, model_id: str | None = None) -> dict[str, Any]:
        """Every container's resources (``GET /service-resources``), asked in parallel.

        Containers that fail, or do not answer within ``config.resources_timeout`` seconds,
        are left out; so are in-process containers that offer none.

        Args:
            model_id: Passed on to each container, to ask about that model only.

        Returns:
            Container id to what the container reported.

        Raises:
            NodeNotRunning: The node is not started or is stopping.
        """
        self._require_running()
        return await collect_resources(self._clients.values(), model_id, timeout=self.config.resources_timeout)

    async def results(self, ids: Sequence[str], client: str, *, intermediate: bool = False) -> list[JobResult]:
        """The results of ``client``'s jobs among ``ids``, in the order asked (unknown ids skipped)."""
        jobs = await self.store.get(client, ids)
        return [job.to_result(intermediate=intermediate) for job in jobs]

    async def wait(
        self, job_id: str, client: str, *, timeout: float | None = None, intermediate: bool = False
    ) -> JobResult:
        """Wait until ``client``'s job ``job_id`` has finished; return its result.

        A job this node runs wakes the waiter the moment its result is stored; a job that ends
        elsewhere (another replica, ``PUT /api/status``, expiry) is seen within a second.

        Raises:
            NotFound: No such job of ``client``.
            TimeoutError: It is still running after ``timeout`` seconds.
        """
        key = (client, job_id)
        with anyio.fail_after(timeout):
            while True:
                waiting = self._waiting.get(key)
                if waiting is None:
                    waiting = self._waiting[key] = _Waiting()
                waiting.count += 1
                try:
                    found = await self.results([job_id], client, intermediate=intermediate)
                    if not found:
                        raise NotFound("Job not found", {"id": job_id})
                    if found[0].status != "running":
                        return found[0]
                    with anyio.move_on_after(_WAIT_RECHECK):
                        await waiting.event.wait()
                finally:
                    waiting.count -= 1
                    if not waiting.count and self._waiting.get(key) is waiting:
                        del self._waiting[key]

    async def wait_many(
        self, ids: Sequence[str], client: str, *, timeout: float | None = None, intermediate: bool = False
    ) -> list[JobResult]:
        """:meth:`wait` for each of ``ids`` at once; the results in the order asked.

        Raises:
            NotFound: One of the ids is not a job of ``client``.
            TimeoutError: Some are still running after ``timeout`` seconds.
        """
        results: list[JobResult | None] = [None] * len(ids)

        async def one(index: int, job_id: str) -> None:
            results[index] = await self.wait(job_id, client, timeout=timeout, intermediate=intermediate)

        async with anyio.create_task_group() as tg:
            for index, job_id in enumerate(ids):
                tg.start_soon(one, index, job_id)
        return [result for result in results if result is not None]

    async def run(self, request: JobRequest, client: str, *, timeout: float | None = None) -> JobResult:
        """Submit ``request`` and wait for its result: the common case in one call.

        Raises:
            AdmissionError: The guardian refused the request.
            Overloaded: The node is full.
            TimeoutError: The job is still running after ``timeout`` seconds.
        """
        job_id = await self.submit(request, client)
        assert job_id is not None  # a JobRequest always gets an id
        return await self.wait(job_id, client, timeout=timeout)

    async def job_ids(self, client: str, *, pending: bool | None = None) -> list[str]:
        """Ids of ``client``'s jobs: pending only (``True``), finished only (``False``) or all."""
        return await self.store.ids(client, pending)

    async def record_status(self, update: StatusUpdate, client: str) -> None:
        """Record a status reported by a container that does not speak the protocol.

        A new id is stored with the reported status; a known running job moves to it.

        Raises:
            InvalidTransition: The job has already finished.
        """
        existing = await self.store.get(client, [update.id])
        now = time.time()
        if existing:
            job = apply(existing[0], StatusReported(status=update.status), now=now)
        else:
            job = new_job(update.id, client, update.containers, created_at=now, status=update.status)
        if not await self.store.put(job):
            raise InvalidTransition("Job has already finished", {"id": update.id})
        if not job.pending:
            self._wake(job)

    async def readiness(self) -> dict[str, str]:
        """What keeps the node from doing its job right now (``GET /ready``): check name to
        reason; empty when ready. See :mod:`infernet_core.readiness`."""
        if not self._accepting:
            return {"node": "not running"}
        checks: dict[str, Check] = {"store": self._store_ready}
        down = self._docker.down_ids() if self._docker is not None else frozenset()
        for c in self.config.containers:
            if c.id in down:
                checks[f"container {c.id}"] = _reason("managed container is down")
            elif self._docker is None:
                checks[f"container {c.id}"] = functools.partial(port_answers, c.base_url)
        chain = self._chain
        if chain is not None:
            checks["chain"] = functools.partial(chain.readiness, self.config.chain.wallet)
        return await run_checks(checks)

    async def _store_ready(self) -> str | None:
        await self.store.pending_count()
        return None

    async def info(self) -> NodeInfo:
        """What ``GET /info`` shows: version, containers (managed ones only while they run),
        pending counts, chain state."""
        down = self._docker.down_ids() if self._docker is not None else frozenset()
        return NodeInfo(
            version=__version__,
            containers=[client.info for cid, client in self._clients.items() if cid not in down],
            pending=PendingCounts(
                offchain=await self.store.pending_count(),
                onchain=self._chain.pending_count if self._chain is not None else 0,
            ),
            chain=ChainInfo(enabled=self._chain is not None, address=self._chain.address if self._chain else ""),
        )

    # -- internals -------------------------------------------------------------------------

    def _require_running(self) -> TaskGroup:
        if not self._accepting or self._task_group is None:
            raise NodeNotRunning("Node is not running")
        return self._task_group

    @contextlib.asynccontextmanager
    async def _room(self) -> AsyncIterator[None]:
        """Hold a place for one new job while it is stored and started.

        Refused at once while ``server.max_pending`` jobs are pending here (running, being
        admitted or waiting to be). While ``server.max_queued`` are running or being
        admitted, it first waits in line (up to ``server.admission_wait`` seconds) for one
        to end: admission then keeps pace with execution instead of piling up jobs faster
        than the containers take them.
        """
        server = self.config.server
        pending = self._running_jobs + self._admitting + len(self._waiters)
        if pending >= server.max_pending:
            raise Overloaded("Too many pending jobs", {"pending": pending, "max_pending": server.max_pending})
        if self._waiters or self._running_jobs + self._admitting >= server.max_queued:
            await self._wait_in_line(server.max_queued, server.admission_wait)
        else:
            self._admitting += 1
        try:
            yield
        finally:
            self._admitting -= 1
            self._hand_off()

    async def _wait_in_line(self, max_queued: int, wait: float) -> None:
        """Wait until a job that ends hands this request its place (counted as admitting)."""
        turn = anyio.Event()
        self._waiters.append(turn)
        try:
            with anyio.move_on_after(wait):
                await turn.wait()
        except BaseException:  # cancelled (the client left): give back a place handed over
            self._leave_line(turn)
            raise
        if not turn.is_set():
            self._waiters.remove(turn)
            raise Overloaded("Too many pending jobs", {"queued": max_queued, "waited": wait})

    def _leave_line(self, turn: anyio.Event) -> None:
        if turn.is_set():
            self._admitting -= 1
            self._hand_off()
        else:
            self._waiters.remove(turn)

    def _hand_off(self) -> None:
        """Give free places (below ``server.max_queued``) to the requests waiting in line."""
        max_queued = self.config.server.max_queued
        while self._waiters and self._running_jobs + self._admitting < max_queued:
            self._admitting += 1
            self._waiters.popleft().set()

    def _spawn(self, job: Job, request: JobRequest | None, interrupted: bool) -> None:
        self._start_job(functools.partial(self._execute, job, request, interrupted))

    def _start_job(self, run: Callable[[], Awaitable[None]]) -> None:
        """Run ``run()`` in the task group, counted as a running job (for a stopping node's
        grace) until it returns."""
        # Counted here, not in the task, so a stopping node waits for jobs not yet started.
        if self._task_group is None:
            raise NodeNotRunning("Node is not running")
        if self._running_jobs == 0:
            self._idle = anyio.Event()
        self._running_jobs += 1
        self._task_group.start_soon(self._counted, run)

    async def _counted(self, run: Callable[[], Awaitable[None]]) -> None:
        try:
            await run()
        finally:
            self._running_jobs -= 1
            self._hand_off()
            if self._running_jobs == 0:
                self._idle.set()

    async def _execute(self, job: Job, request: JobRequest | None, interrupted: bool) -> None:
        """Run one job to a terminal state and store it; never raises (but for cancellation).

        An interrupted job (its node died mid-run) is failed, or run again when the config
        says ``rerun_interrupted`` and its request survived.
        """
        if request is None or (interrupted and not self.config.rerun_interrupted):
            job = apply(job, JobAborted(container="", reason=STOPPED_REASON), now=time.time())
        else:
            # A job has store.pending_ttl to finish, counted from its acceptance (a rerun's
            # from now), time queued for a container slot included.
            start = time.time() if interrupted else job.created_at
            job = await self._run_pipeline(job, request, deadline=start + self.config.store.pending_ttl)
        await self._store_result(job)

    async def _run_pipeline(self, job: Job, request: JobRequest, deadline: float) -> Job:
        try:
            with anyio.move_on_after(max(0.0, deadline - time.time())):
                return await run_pipeline(
                    job,
                    self._clients,
                    request.data,
                    requires_proof=request.requires_proof,
                    max_depth=self.config.server.max_depth,
                )
            return expired(job, time.time())  # still running after pending_ttl: given up
        except anyio.get_cancelled_exc_class():
            # The node is stopping. With rerun_interrupted the job is left running for a
            # restart (or another replica) to run again; otherwise it fails now.
            if not self.config.rerun_interrupted:
                aborted = apply(job, JobAborted(container="", reason=STOPPED_REASON), now=time.time())
                with anyio.CancelScope(shield=True):
                    await self._store_result(aborted, patience=1.0)
            raise
        except Exception as exc:
            log.exception("job %s crashed", job.id, extra={"job_id": job.id})
            reason = f"internal error: {type(exc).__name__}: {exc}"
            return apply(job, JobAborted(container="", reason=reason), now=time.time())

    async def _run_onchain(self, containers: Sequence[str], data: Any, source: Source) -> Job:
        """Run a subscription's containers (not stored: the result goes on-chain)."""
        job = new_job(str(uuid.uuid4()), "onchain", list(containers), created_at=time.time())
        try:
            return await run_pipeline(
                job,
                self._clients,
                data,
                source=source,
                destination=Destination.ONCHAIN,
                max_depth=self.config.server.max_depth,
            )
        except Exception as exc:
            log.exception("on-chain job %s crashed", job.id, extra={"job_id": job.id})
            return apply(job, JobAborted(container="", reason=f"internal error: {exc}"), now=time.time())

    def _wake(self, job: Job) -> None:
        """Wake the callers of :meth:`wait` on ``job`` (just stored as finished)."""
        waiting = self._waiting.pop((job.client, job.id), None)
        if waiting is not None:
            waiting.event.set()

    async def _expire_overdue(self) -> None:
        """Every :data:`EXPIRY_SWEEP` seconds, fail the jobs still running after
        ``pending_ttl`` (never raises: a failing store is logged, once while it fails)."""
        failing = False
        while True:
            await anyio.sleep(EXPIRY_SWEEP)
            try:
                count = await self.store.expire_running()
            except Exception as exc:
                if not failing:
                    reason = exc.message if isinstance(exc, InfernetError) else repr(exc)
                    log.warning("cannot expire overdue jobs (retrying every %gs): %s", EXPIRY_SWEEP, reason)
                failing = True
                continue
            failing = False
            if count:
                log.warning("%d job(s) still running after pending_ttl were failed (expired)", count)

    async def _store_result(self, job: Job, patience: float | None = None) -> None:
        """Store a finished job, retrying while the store is unavailable (up to ``patience``
        seconds, by default the pending TTL, after which the record has expired anyway)."""
        deadline = anyio.current_time() + (patience if patience is not None else self.config.store.pending_ttl)
        delays = STORE_WRITE.delays()
        while True:
            try:
                if not await self.store.put(job):
                    log.warning(
                        "job %s was already finished (expired, or by PUT /api/status); its run's result is dropped",
                        job.id,
                        extra={"job_id": job.id},
                    )
                else:
                    self._wake(job)
                    if self.metrics is not None:
                        self.metrics.job_finished(job)
                return
            except StoreUnavailable as exc:
                delay = next(delays)
                if anyio.current_time() + delay > deadline:
                    log.error("gave up storing the result of job %s: %s", job.id, exc.message, extra={"job_id": job.id})
                    return
                log.warning(
                    "result store unavailable, retrying job %s in %.2fs: %s",
                    job.id,
                    delay,
                    exc.message,
                    extra={"job_id": job.id},
                )
            except Exception:
                log.exception("could not store the result of job %s", job.id, extra={"job_id": job.id})
                return
            await anyio.sleep(delay)


class StreamOpening:
    """What :meth:`Node.stream` returns: ``async with`` it for the entered stream, or await
    it for the stream itself."""

    __slots__ = ("_opening", "_stream")

    def __init__(self, opening: Coroutine[Any, Any, JobStream]) -> None:
        self._opening = opening
        self._stream: JobStream | None = None

    def __await__(self) -> Generator[Any, None, JobStream]:
        return self._opening.__await__()

    async def __aenter__(self) -> JobStream:
        self._stream = await self._opening
        return await self._stream.__aenter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._stream is not None
        await self._stream.__aexit__(exc_type, exc, tb)


class _Waiting:
    """The callers of :meth:`Node.wait` on one job, and the event that wakes them."""

    __slots__ = ("count", "event")

    def __init__(self) -> None:
        self.count = 0
        self.event = anyio.Event()


def _reason(text: str) -> Check:
    async def check() -> str | None:
        return text

    return check
