"""The raw-ASGI face of a Node: the seed REST API, with no web framework underneath."""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import parse_qsl

import anyio
from anyio.lowlevel import checkpoint

from infernet_core import Node
from infernet_core.errors import (
    BadRequest,
    Forbidden,
    InfernetError,
    NodeNotRunning,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
)
from infernet_core.guardian import in_networks, parse_networks
from infernet_core.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from infernet_core.parsing import parse_batch, parse_compute_request, parse_status_update
from infernet_core.ratelimit import Decision, RateLimiter

from .clientaddr import client_address
from .logthrottle import LogThrottle
from .observe import UNMATCHED, RequestObserver
from .openapi import openapi_document
from .responses import CONNECTION_CLOSE, BytesResponse, JSONResponse, Response, error_body, error_response
from .routing import MethodNotAllowed, Router, route_path
from .streaming import JobStreamResponse
from .types import Receive, Scope, Send

__all__ = ("InfernetApp",)

log = logging.getLogger("infernet_asgi")

_TRUE: Final = frozenset({"true", "1"})
_FALSE: Final = frozenset({"false", "0"})
_MAX_IDS: Final = 1000
_UNLIMITED: Final = frozenset({"/health", "/ready", "/metrics", "/openapi.json"})
"""Routes no rate limit applies to (probes and scrapers)."""


class ClientDisconnected(Exception):
    """The client went away before its request body arrived."""


class Request:
    """What a handler needs of one HTTP request."""

    __slots__ = ("_body_done", "_body_timeout", "_max_body", "_receive", "client", "scope")

    def __init__(self, scope: Scope, receive: Receive, max_body: int, body_timeout: float = math.inf) -> None:
        self.scope = scope
        self._receive = receive
        self._max_body = max_body
        self._body_timeout = body_timeout
        self._body_done = False
        self.client: str | None = None
        """The client's address once worked out (the rate limit and the handler both need it)."""

    def query(self) -> list[tuple[str, str]]:
        """The query string as ``(name, value)`` pairs, in order."""
        return parse_qsl(self.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)

    async def body(self) -> bytes:
        """The whole request body, refusing more than the configured limit, or one slower
        than the configured timeout.

        Raises:
            PayloadTooLarge: The body (or its declared length) exceeds the limit.
            RequestTimeout: The body took longer than the timeout to arrive.
            ClientDisconnected: The client went away first.
        """
        for name, value in self.scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self._max_body:
                raise PayloadTooLarge("Request body too large", {"limit": self._max_body})
        try:
            with anyio.fail_after(self._body_timeout):
                return await self._read_body()
        except TimeoutError:
            raise RequestTimeout("Request body timed out", {"timeout": self._body_timeout}) from None

    async def _read_body(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._body_done = True
                raise ClientDisconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise PayloadTooLarge("Request body too large", {"limit": self._max_body})
            chunks.append(chunk)
            if not message.get("more_body", False):
                self._body_done = True
                return b"".join(chunks) if len(chunks) != 1 else chunks[0]

    @property
    def body_unread(self) -> bool:
        """Whether the request declares a body (``Content-Length`` above 0 or a
        ``Transfer-Encoding``) that has not been read to its end."""
        if self._body_done:
            return False
        for name, value in self.scope.get("headers", ()):
            if name == b"transfer-encoding" or (name == b"content-length" and value.strip().lstrip(b"0")):
                return True
        return False

    async def discard_body(self) -> None:
        """Read and drop what is left of the body, until its end or the client's disconnect."""
        while not self._body_done:
            message = await self._receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                self._body_done = True

    async def disconnected(self) -> None:
        """Return once the client has disconnected (call it after reading the body)."""
        while (await self._receive())["type"] != "http.disconnect":
            pass


Handler = Callable[["InfernetApp", Request], Awaitable[Response]]


class InfernetApp:
    """An ASGI application serving one :class:`~infernet_core.Node`.

    Mount it in any ASGI host (Starlette, FastAPI, ...) or serve it with hypercorn. It
    handles the ``lifespan`` scope itself when served standalone; a host app that mounts it
    should enter :meth:`lifespan` from its own lifespan instead, because frameworks do not
    forward lifespan events to mounted apps::

        app = InfernetApp(node)
        host = Starlette(routes=[Mount("/infernet", app)], lifespan=lambda _: app.lifespan())

    Args:
        node: The node to serve. The app starts and stops it in :meth:`lifespan` unless it
            is already running.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        server = node.config.server
        self._max_body = server.max_body_bytes
        self._body_timeout = server.body_timeout
        self._max_depth = server.max_depth
        self._max_batch = server.max_batch
        self._timeouts = LogThrottle(log)
        self._limiter = node.rate_limiter
        self._observer = RequestObserver(node.metrics, node.config.log is not None and node.config.log.access)
        self._trusted_proxies = parse_networks(server.trusted_proxies)
        self._local_networks = parse_networks(server.local_networks)

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Run the node for the duration of the block (a no-op if it already runs)."""
        if self.node.running:
            yield
            return
        async with self.node:
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await _refuse_websocket(scope, receive, send)
        else:
            raise RuntimeError(f"InfernetApp does not serve {kind!r} scopes")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request = Request(scope, receive, self._max_body, self._body_timeout)
        method: str = scope["method"]
        route = UNMATCHED
        headers: list[tuple[bytes, bytes]] = []
        response: Response
        try:
            path = route_path(scope)
            handler = ROUTER.match(method, path)
            route = path
            # Every route reads or writes the node's store, which only exists while it runs.
            if not self.node.running:
                raise NodeNotRunning("Node is not running")
            limiter = self._limiter
            if limiter is not None and path not in _UNLIMITED and (method, path) != ("PUT", "/api/status"):
                # One bucket per endpoint and client; checked before the guardian.
                decision = await limiter.check(f"{method} {path} {self._client(request)}")
                headers = decision.headers()
                if not decision.allowed:
                    raise self._refused(limiter, path, decision)
            response = await handler(self, request)
        except ClientDisconnected:
            return
        except MethodNotAllowed as exc:
            route = path  # a known route, asked with another method
            response = error_response(exc, [(b"allow", ", ".join(exc.allowed).encode("ascii"))])
        except RequestTimeout as exc:
            self._timeouts.log(
                logging.INFO, "body-timeout", "request body not received within %g s: answered 408", self._body_timeout
            )
            response = error_response(exc)
        except InfernetError as exc:
            response = error_response(exc)
        except Exception:
            log.exception("unhandled error serving %s %s", scope["method"], scope["path"])
            response = JSONResponse({"error": "Internal server error"}, status=500)
        observer = self._observer
        status = [0]
        if observer.active or headers:
            send, status = observer.wrap(send, headers)
        if request.body_unread:
            await _send_closing(request, response, send)
        else:
            await response(send)
        if observer.active:
            client = self._client(request) if observer.access else ""
            observer.record(method, route, scope["path"], status[0], started, client)

    def _refused(self, limiter: RateLimiter, path: str, decision: Decision) -> RateLimited:
        self._observer.rate_limited(path)
        limit = limiter.limit
        return RateLimited(
            "Too many requests",
            {"limit": limit.num_requests, "period": limit.period},
            retry_after=decision.retry_after_seconds,
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        started = False
        try:
            async with self.lifespan():
                await send({"type": "lifespan.startup.complete"})
                started = True
                await receive()  # lifespan.shutdown
        except BaseException as exc:
            text = "".join(traceback.format_exception_only(exc)).strip()
            failed = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
            await send({"type": failed, "message": text})
            if not isinstance(exc, Exception):
                raise
            return
        await send({"type": "lifespan.shutdown.complete"})

    # -- handlers --------------------------------------------------------------------------

    def _client(self, request: Request) -> str:
        if request.client is None:
            request.client = client_address(request.scope, self._trusted_proxies)
        return request.client

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "healthy"})

    async def ready(self, request: Request) -> JSONResponse:
        problems = await self.node.readiness()
        if problems:
            return JSONResponse({"error": "Not ready", "params": problems}, status=503)
        return JSONResponse({"status": "ready"})

    async def metrics(self, request: Request) -> JSONResponse:
        if self.node.metrics is None:
            raise NotFound("Metrics are off (server.metrics)", {"path": "/metrics"})
        return BytesResponse(self.node.metrics.render(), METRICS_CONTENT_TYPE)

    async def openapi(self, request: Request) -> JSONResponse:
        return JSONResponse(openapi_document(request.scope.get("root_path", "")))

    async def info(self, request: Request) -> JSONResponse:
        return JSONResponse(await self.node.info())

    async def create_job(self, request: Request) -> JSONResponse:
        client = self._client(request)
        job_request = parse_compute_request(await request.body(), self._max_depth)
        job_id = await self.node.submit(job_request, client)
        return JSONResponse({} if job_id is None else {"id": job_id})

    async def stream_job(self, request: Request) -> Response:
        client = self._client(request)
        stream = await self.node.stream(parse_compute_request(await request.body(), self._max_depth), client)
        return JobStreamResponse(stream, request.disconnected)

    async def create_batch(self, request: Request) -> JSONResponse:
        client = self._client(request)
        batch = parse_batch(await request.body(), self._max_depth, self._max_batch)
        entries = await self.node.submit_batch(batch, client)
        return JSONResponse([_batch_entry(entry) for entry in entries])

    async def get_jobs(self, request: Request) -> JSONResponse:
        client = self._client(request)
        query = request.query()
        ids = [value for name, value in query if name == "id"]
        # Both flags are checked whatever the request asks (a bad one is a 400 either way).
        pending = _bool_param(query, "pending")
        intermediate = _bool_param(query, "intermediate") or False
        if not ids:
            return JSONResponse(await self.node.job_ids(client, pending=pending))
        if len(ids) > _MAX_IDS:
            raise BadRequest(f"Too many job ids (at most {_MAX_IDS})", {"count": len(ids)})
        # Ids the caller does not have are left out: none known is 200 [] (the seed, the
        # reference node and its client agree; the client reads [] as "not found").
        return JSONResponse(await self.node.results(ids, client, intermediate=intermediate))

    async def put_status(self, request: Request) -> JSONResponse:
        client = self._client(request)
        if not in_networks(client, self._local_networks):
            raise Forbidden("Unauthorized", {"address": client})
        update = parse_status_update(await request.body(), self._max_depth)
        await self.node.record_status(update, client)
        return JSONResponse({"id": update.id, "status": update.status})

    async def resources(self, request: Request) -> JSONResponse:
        return JSONResponse(await self.node.resources(_last_param(request.query(), "model_id")))


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """The node serves no WebSocket: refuse the handshake, with the node's JSON error where
    the server lets an app answer it over HTTP (the ``websocket.http.response`` extension)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1003})
        return
    response = JSONResponse({"error": "WebSocket connections are not served"}, status=400)
    await send({"type": "websocket.http.response.start", "status": response.status, "headers": response.headers})
    await send({"type": "websocket.http.response.body", "body": response.body})


async def _send_closing(request: Request, response: Response, send: Send) -> None:
    """Send ``response`` to a request whose body is left unread, and end its connection.

    The response says ``Connection: close``. While it is sent, what arrives of the body is
    read and dropped: a server may hold body chunks the app has not read in a bounded queue
    (hypercorn does), and block, until the app reads them, on the message that tells the
    app the response is done, so neither side would ever close the connection. A response
    sent without waiting (the server took every message at once) reads nothing.
    """
    if isinstance(response, JSONResponse):
        response.headers.append(CONNECTION_CLOSE)

    async def discard() -> None:
        await checkpoint()
        await request.discard_body()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(discard)
        await response(send)
        tasks.cancel_scope.cancel()


def _last_param(query: list[tuple[str, str]], name: str) -> str | None:
    """The last value of a query parameter, or None when absent."""
    value: str | None = None
    for key, candidate in query:
        if key == name:
            value = candidate
    return value


def _bool_param(query: list[tuple[str, str]], name: str) -> bool | None:
    """The last value of a boolean query parameter, or None when absent.

    Raises:
        BadRequest: The value is not true/false/1/0.
    """
    value = _last_param(query, name)
    if value is None:
        return None
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise BadRequest(
        f"Invalid query parameter {name!r}: expected true or false",
        {"name": name, "value": value},
    )


def _batch_entry(entry: str | InfernetError | None) -> dict[str, Any]:
    if entry is None:
        return {}
    if isinstance(entry, str):
        return {"id": entry}
    return error_body(entry)


ROUTER: Final[Router[Handler]] = Router(
    {
        "/health": {"GET": InfernetApp.health},
        "/ready": {"GET": InfernetApp.ready},
        "/metrics": {"GET": InfernetApp.metrics},
        "/openapi.json": {"GET": InfernetApp.openapi},
        "/info": {"GET": InfernetApp.info},
        "/api/jobs": {"GET": InfernetApp.get_jobs, "POST": InfernetApp.create_job},
        "/api/jobs/batch": {"POST": InfernetApp.create_batch},
        "/api/jobs/stream": {"POST": InfernetApp.stream_job},
        "/api/status": {"PUT": InfernetApp.put_status},
        "/resources": {"GET": InfernetApp.resources},
    }
)
