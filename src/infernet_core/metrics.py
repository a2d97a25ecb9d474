"""Prometheus metrics of one node (``GET /metrics``), on a registry of its own.

A :class:`Node` makes metrics only when ``server.metrics`` is on (``infernet-node`` turns it
on, an embedded ``Node`` leaves it off and pays nothing). Everything is counted where it
happens: the node counts jobs, :class:`InstrumentedStore` wraps the result store,
:class:`InstrumentedContainer` wraps each container client, the HTTP face counts requests
and rate-limited ones, the chain side counts blocks, deliveries, RPC errors, balance and gas.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .containers.base import ContainerClient
from .errors import ContainerFailure, StoreUnavailable
from .jobs import Job
from .models import ContainerInput, JobRequest
from .store import ResultStore

__all__ = ("CONTENT_TYPE", "InstrumentedContainer", "InstrumentedStore", "NodeMetrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The ``Content-Type`` of :meth:`NodeMetrics.render`."""

T = TypeVar("T")

# Buckets from a millisecond (an in-process container, a store call) to minutes (a model).
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0)
_STORE_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class NodeMetrics:
    """Every metric of a node, registered on :attr:`registry`."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        # Jobs.
        self.jobs_accepted = Counter(
            "infernet_jobs_accepted", "Off-chain jobs accepted, by first container", ["container"], registry=registry
        )
        self.jobs_finished = Counter(
            "infernet_jobs_finished",
            "Off-chain jobs finished, by status and last container run",
            ["status", "container"],
            registry=registry,
        )
        self.job_seconds = Histogram(
            "infernet_job_duration_seconds",
            "From acceptance to the end",
            ["status"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.container_seconds = Histogram(
            "infernet_container_call_duration_seconds",
            "Container calls, by container and outcome (ok / failed)",
            ["container", "outcome"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.pending = Gauge("infernet_jobs_pending", "Jobs pending on this node", ["kind"], registry=registry)
        # HTTP.
        self.http_requests = Counter(
            "infernet_http_requests",
            "HTTP requests, by route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_seconds = Histogram(
            "infernet_http_request_duration_seconds",
            "HTTP requests, to the end of the response head",
            ["route"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.rate_limited = Counter(
            "infernet_http_rate_limited", "Requests refused 429, by route", ["route"], registry=registry
        )
        # Store.
        self.store_seconds = Histogram(
            "infernet_store_operation_duration_seconds",
            "Result store calls, by operation",
            ["operation"],
            buckets=_STORE_SECONDS,
            registry=registry,
        )
        self.store_errors = Counter(
            "infernet_store_errors", "Result store calls that failed (unavailable)", ["operation"], registry=registry
        )
        # Chain.
        self.head_block = Gauge("infernet_chain_head_block", "The chain's latest block", registry=registry)
        self.listener_lag = Gauge(
            "infernet_chain_listener_lag_blocks", "Blocks the listener trails the head by", registry=registry
        )
        self.deliveries = Counter(
            "infernet_chain_deliveries",
            "deliverCompute transactions, by outcome and revert name",
            ["outcome", "revert"],
            registry=registry,
        )
        self.rpc_errors = Counter(
            "infernet_chain_rpc_errors", "RPC calls that failed, by kind", ["kind"], registry=registry
        )
        self.wallet_balance = Gauge("infernet_chain_wallet_balance_wei", "The node wallet's balance", registry=registry)
        self.gas_price = Gauge("infernet_chain_gas_price_wei", "The chain's gas price", registry=registry)
        # Docker.
        self.container_restarts = Counter(
            "infernet_container_restarts",
            "Managed containers restarted after they died",
            ["container"],
            registry=registry,
        )

        # Bound children by label values (labels() costs more than counting).
        self._accepted: dict[str, Any] = {}
        self._finished: dict[tuple[str, str], tuple[Any, Any]] = {}

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def track_pending(self, offchain: Callable[[], float], onchain: Callable[[], float]) -> None:
        """Read the pending counts when scraped (nothing is paid per job)."""
        self.pending.labels("offchain").set_function(offchain)
        self.pending.labels("onchain").set_function(onchain)

    def job_accepted(self, job: Job) -> None:
        """Count an accepted off-chain job."""
        container = job.containers[0] if job.containers else ""
        child = self._accepted.get(container)
        if child is None:
            child = self._accepted[container] = self.jobs_accepted.labels(container)
        child.inc()

    def job_finished(self, job: Job) -> None:
        """Count a finished off-chain job and time it."""
        container = job.error.container if job.error is not None and job.error.container else ""
        if not container and job.outputs:
            container = job.outputs[-1].container
        key = (job.status, container)
        children = self._finished.get(key)
        if children is None:
            children = self._finished[key] = (self.jobs_finished.labels(*key), self.job_seconds.labels(job.status))
        children[0].inc()
        if job.finished_at is not None:
            children[1].observe(max(0.0, job.finished_at - job.created_at))


class InstrumentedStore(ResultStore):
    """A result store whose calls are timed, and whose failures are counted, by operation."""

    def __init__(self, store: ResultStore, metrics: NodeMetrics) -> None:
        self.inner = store
        self._seconds = {op: metrics.store_seconds.labels(op) for op in _STORE_OPERATIONS}
        self._errors = {op: metrics.store_errors.labels(op) for op in _STORE_OPERATIONS}
        self._put_seconds, self._put_errors = self._seconds["put"], self._errors["put"]

    async def _timed(self, operation: str, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return await call()
        except StoreUnavailable:
            self._errors[operation].inc()
            raise
        finally:
            self._seconds[operation].observe(time.perf_counter() - started)

    async def put(self, job: Job, request: JobRequest | None = None) -> bool:
        # The hot path, written out (no closure, no extra coroutine).
        started = time.perf_counter()
        try:
            return await self.inner.put(job, request)
        except StoreUnavailable:
            self._put_errors.inc()
            raise
        finally:
            self._put_seconds.observe(time.perf_counter() - started)

    async def get(self, client: str, ids: Sequence[str]) -> list[Job]:
        found: list[Job] = await self._timed("get", lambda: self.inner.get(client, ids))
        return found

    async def ids(self, client: str, pending: bool | None = None) -> list[str]:
        listed: list[str] = await self._timed("ids", lambda: self.inner.ids(client, pending))
        return listed

    async def pending_count(self) -> int:
        count: int = await self._timed("pending_count", self.inner.pending_count)
        return count

    async def expire_running(self, limit: int = 1000) -> int:
        count: int = await self._timed("expire_running", lambda: self.inner.expire_running(limit))
        return count

    async def open(self) -> None:
        await self.inner.open()

    async def interrupted(self) -> list[tuple[Job, JobRequest | None]]:
        return await self.inner.interrupted()

    async def aclose(self) -> None:
        await self.inner.aclose()


_STORE_OPERATIONS = ("put", "get", "ids", "pending_count", "expire_running")


class InstrumentedContainer(ContainerClient):
    """A container client whose calls are timed by outcome."""

    def __init__(self, client: ContainerClient, metrics: NodeMetrics) -> None:
        self.inner = client
        self.info = client.info
        self._ok = metrics.container_seconds.labels(client.info.id, "ok")
        self._failed = metrics.container_seconds.labels(client.info.id, "failed")

    async def run(self, payload: ContainerInput) -> Any:
        started = time.perf_counter()
        try:
            output = await self.inner.run(payload)
        except ContainerFailure:
            self._failed.observe(time.perf_counter() - started)
            raise
        self._ok.observe(time.perf_counter() - started)
        return output

    @asynccontextmanager
    async def stream(self, payload: ContainerInput) -> AsyncIterator[AsyncIterator[bytes]]:
        async with self.inner.stream(payload) as chunks:
            yield chunks

    async def resources(self, model_id: str | None = None) -> Any:
        return await self.inner.resources(model_id)
