"""A small keep-alive HTTP/1.1 client on asyncio streams, made for calling containers.

A container call is one small request and one small response on a loopback or LAN
connection, thousands of times a second. A general client (httpx over httpcore and anyio)
spends most of such a call's CPU in pool bookkeeping and stream wrappers; this one writes the
request in one write from prepared bytes, reads the response head with one ``readuntil`` and
a ``Content-Length`` body with one ``readexactly``, and keeps connections open for the next
call. It speaks just enough HTTP/1.1 for that: ``Content-Length``, chunked and read-to-close
bodies, interim 1xx responses skipped, ``Connection: close`` and HTTP/1.0 honoured, ``https``
through asyncio's TLS support. No proxies, redirects, cookies or content decoding (it sends no
``Accept-Encoding``, so servers answer uncompressed).

Errors, all :class:`HttpError`::

    HttpError
    +-- ConnectFailed       no connection could be opened
    +-- ConnectionBroken    closed, reset or malformed before the response was complete
    +-- TimedOut            the request took longer than its timeout

Only asyncio is supported (the node runs on anyio's asyncio backend).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Final
from urllib.parse import quote, urlsplit

__all__ = (
    "ConnectFailed",
    "ConnectionBroken",
    "HttpError",
    "HttpPool",
    "Response",
    "StreamingResponse",
    "Target",
    "TimedOut",
)

_USER_AGENT: Final = "infernet-core"
_READ_SIZE: Final = 64 * 1024
_NO_BODY_STATUS: Final = frozenset({204, 304})
_PATH_SAFE: Final = "/%:@!$&'()*+,;="


class HttpError(Exception):
    """An HTTP request failed; the message names the cause."""


class ConnectFailed(HttpError):
    """No connection to the server could be opened."""


class ConnectionBroken(HttpError):
    """The connection closed or was reset, or the server broke HTTP/1.1, before the response was complete."""


class TimedOut(HttpError):
    """The request did not complete within its timeout."""


class _Stale(Exception):
    # A reused connection failed before any byte of the response was read (see HttpPool.request).
    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class Target:
    """A parsed ``http://`` or ``https://`` URL, ready to be requested.

    Args:
        url: The URL; its path (default ``/``) and query are sent as they are, but for
            characters not allowed there, which are percent-encoded. A fragment and user
            information (``user:password@``) are left out.

    Raises:
        ValueError: Not an absolute http(s) URL.
    """

    __slots__ = ("authority", "host", "key", "path", "port", "scheme", "url")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        default = 443 if parts.scheme == "https" else 80
        try:
            self.host = parts.hostname.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"not an http(s) URL: {url!r}") from None
        self.url = url
        self.scheme = parts.scheme
        self.port = parts.port or default
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = host if self.port == default else f"{host}:{self.port}"
        # Characters that may not appear in a request target are percent-encoded, as httpx does.
        self.path = quote(parts.path or "/", safe=_PATH_SAFE) + (
            f"?{quote(parts.query, safe=_PATH_SAFE + '?')}" if parts.query else ""
        )
        self.key = (self.scheme, self.host, self.port)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"Target({self.url!r})"


class _Head:
    """What every response has: status, header fields (names in lower case) and the URL."""

    __slots__ = ("headers", "status", "url")

    def __init__(self, status: int, headers: dict[str, str], url: str) -> None:
        self.status = status
        self.headers = headers
        self.url = url

    @property
    def is_success(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300


class Response(_Head):
    """A complete response.

    Attributes:
        status: The status code.
        headers: The header fields, names in lower case (a repeated field keeps its last value).
        body: The body.
        url: The URL requested.
    """

    __slots__ = ("body",)

    def __init__(self, status: int, headers: dict[str, str], body: bytes, url: str) -> None:
        super().__init__(status, headers, url)
        self.body = body


class StreamingResponse(_Head):
    """A response whose body is read as it arrives, inside :meth:`HttpPool.stream`.

    Attributes:
        status: The status code.
        headers: The header fields, names in lower case.
        url: The URL requested.
    """

    __slots__ = ("_body",)

    def __init__(self, status: int, headers: dict[str, str], url: str, body: _Body) -> None:
        super().__init__(status, headers, url)
        self._body = body

    async def aiter_bytes(self) -> AsyncGenerator[bytes, None]:
        """The body in parts as they arrive (never an empty part); each read is bounded by
        the request's timeout.

        Raises:
            ConnectionBroken: The body broke off.
            TimedOut: A read took longer than the timeout.
        """
        while chunk := await self._body.read():
            yield chunk


class _Connection:
    __slots__ = ("idle_since", "key", "reader", "writer")

    def __init__(self, key: tuple[str, str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.key = key
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self) -> bool:
        # A server that closed the idle connection has usually been heard already (EOF or reset).
        return not (self.reader.at_eof() or self.writer.is_closing() or self.reader.exception() is not None)

    def close(self) -> None:
        self.writer.close()


class _Body:
    """Reads one response body by its framing; ``done`` once it has all been read."""

    __slots__ = ("_chunk_left", "_conn", "_left", "_timeout", "done", "keep_alive")

    def __init__(self, conn: _Connection, length: int | None, chunked: bool, keep_alive: bool, timeout: float) -> None:
        self._conn = conn
        self._left = length  # bytes still to come; None: chunked (see _chunk_left) or until EOF
        self._chunk_left = 0 if chunked else -1  # -1: not chunked
        self._timeout = timeout
        self.keep_alive = keep_alive and (length is not None or chunked)
        self.done = length == 0

    async def read(self) -> bytes:
        """The next part of the body, b"" at its end."""
        if self.done:
            return b""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._read()
        except TimeoutError:
            raise TimedOut(f"timed out after {self._timeout:g}s") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise ConnectionBroken(_describe(exc)) from None

    async def _read(self) -> bytes:
        reader = self._conn.reader
        if self._left is not None:  # Content-Length
            data = await reader.read(min(self._left, _READ_SIZE))
            if not data:
                raise ConnectionBroken(f"peer closed connection with {self._left} bytes of the body still to come")
            self._left -= len(data)
            self.done = self._left == 0
            return data
        if self._chunk_left < 0:  # until EOF
            data = await reader.read(_READ_SIZE)
            self.done = not data
            return data
        if self._chunk_left == 0:  # at a chunk's size line
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailer fields: ignored
                self.done = True
                return b""
            self._chunk_left = size
        data = await reader.read(min(self._chunk_left, _READ_SIZE))
        if not data:
            raise ConnectionBroken("peer closed connection in the middle of a chunk")
        self._chunk_left -= len(data)
        if self._chunk_left == 0 and await reader.readexactly(2) != b"\r\n":
            raise ConnectionBroken("malformed chunked body")
        return data

    async def read_all(self) -> bytes:
        parts = []
        while part := await self.read():
            parts.append(part)
        return b"".join(parts)


class HttpPool:
    """Keep-alive HTTP/1.1 connections to any number of servers, shared by many tasks.

    Each request takes an idle connection to its server if there is one, else opens one; a
    connection goes back to the pool only after a complete response that allows keep-alive,
    so a request that fails, times out or is cancelled never leaves a half-read connection
    behind. There is no limit on connections in use (callers bound their own concurrency);
    at most ``max_idle`` stay open while idle, each for at most ``keepalive_expiry`` seconds.

    Args:
        max_idle: Idle connections kept open, over all servers.
        keepalive_expiry: Seconds an idle connection is kept before it is closed.
        ssl_context: For ``https`` URLs; default: certificates verified against certifi's
            bundle (as httpx does), or the system's when certifi is missing.
    """

    def __init__(
        self, *, max_idle: int = 64, keepalive_expiry: float = 5.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._idle_count = 0
        self._closed = False

    async def request(
        self,
        method: str,
        target: Target,
        *,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
        timeout: float,
    ) -> Response:
        """Send one request and read the whole response.

        Args:
            method: The method, e.g. ``"POST"``.
            target: Where to send it.
            body: The request body (``Content-Length`` is set for it).
            headers: More header fields (``Host``, ``User-Agent`` and ``Content-Length`` are set here).
            timeout: Seconds the whole request may take, connecting and reading included.

        Raises:
            ConnectFailed: No connection could be opened.
            ConnectionBroken: The connection broke before the response was complete.
            TimedOut: It took longer than ``timeout``.
        """
        data = _request_bytes(method, target, headers, body)
        try:
            async with asyncio.timeout(timeout):
                conn = self._checkout(target.key)
                if conn is not None:
                    try:
                        return await self._exchange(conn, data, method, target, timeout, reused=True)
                    except _Stale:
                        # The kept-alive connection was closed or reset and not one byte of an
                        # answer came back: nearly always the server closing it at its idle timeout
                        # as we sent, in which case it never read the request. So the request is
                        # sent again, once, on a new connection -- for a POST (a container call)
                        # too: the one case where that runs a call twice is a server that read the
                        # request and then dropped the connection without answering, i.e. a
                        # container dying mid-call, whose computation the node has not used; a
                        # container with side effects of its own would see that call twice. A
                        # new connection failing the same way is reported, not retried.
                        pass
                conn = await self._connect(target)
                try:
                    return await self._exchange(conn, data, method, target, timeout, reused=False)
                except _Stale as stale:  # pragma: no cover - _Stale only comes from reused connections
                    raise ConnectionBroken(stale.cause) from None
        except TimeoutError:
            raise TimedOut(f"timed out after {timeout:g}s") from None

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        target: Target,
        *,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
        timeout: float,
    ) -> AsyncIterator[StreamingResponse]:
        """Send one request; give its response once the head is in, the body to be read::

            async with pool.stream("POST", target, body=b"...", timeout=10) as response:
                async for part in response.aiter_bytes():
                    ...

        ``timeout`` bounds connecting, sending and reading the head, then each read of the body.
        The connection is kept only if the body was read to its end.

        Raises:
            ConnectFailed: No connection could be opened.
            ConnectionBroken: The connection broke before the response head was complete.
            TimedOut: Connecting, sending or reading the head took longer than ``timeout``.
        """
        data = _request_bytes(method, target, headers, body)
        try:
            async with asyncio.timeout(timeout):
                conn = self._checkout(target.key)
                head = None
                if conn is not None:
                    with contextlib.suppress(_Stale):  # retried once, as in request()
                        head = await self._send(conn, data, method, reused=True)
                if head is None:
                    conn = await self._connect(target)
                    head = await self._send(conn, data, method, reused=False)
        except TimeoutError:
            raise TimedOut(f"timed out after {timeout:g}s") from None
        status, headers_in, framing = head
        assert conn is not None
        response_body = _Body(conn, *framing, timeout=timeout)
        try:
            yield StreamingResponse(status, headers_in, target.url, response_body)
        finally:
            if response_body.done and response_body.keep_alive:
                self._checkin(conn)
            else:
                conn.close()

    async def aclose(self) -> None:
        """Close the idle connections; connections in use close when their requests end."""
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._idle_count = 0

    # -- internals ------------------------------------------------------------------------

    def _checkout(self, key: tuple[str, str, int]) -> _Connection | None:
        conns = self._idle.get(key)
        if not conns:
            return None
        deadline = time.monotonic() - self.keepalive_expiry
        while conns:
            conn = conns.pop()  # the most recently used first: the others may expire
            self._idle_count -= 1
            if conn.idle_since > deadline and conn.usable():
                return conn
            conn.close()
        return None

    def _checkin(self, conn: _Connection) -> None:
        if self._closed or self._idle_count >= self.max_idle or not conn.usable():
            conn.close()
            return
        now = time.monotonic()
        conn.idle_since = now
        conns = self._idle.get(conn.key)
        if conns is None:
            conns = self._idle[conn.key] = deque()
        # Drop the connections idle too long (the oldest are on the left).
        while conns and conns[0].idle_since <= now - self.keepalive_expiry:
            conns.popleft().close()
            self._idle_count -= 1
        conns.append(conn)
        self._idle_count += 1

    async def _connect(self, target: Target) -> _Connection:
        context = None
        if target.scheme == "https":
            context = self._ssl = self._ssl or _default_ssl_context()
        try:
            reader, writer = await asyncio.open_connection(
                target.host, target.port, ssl=context, server_hostname=target.host if context else None
            )
        except (OSError, ssl.SSLError) as exc:
            if isinstance(exc, TimeoutError):
                raise  # the request's timeout, or the system's connect timeout: a timeout either way
            raise ConnectFailed(_describe(exc)) from None
        return _Connection(target.key, reader, writer)

    async def _exchange(
        self, conn: _Connection, data: bytes, method: str, target: Target, timeout: float, *, reused: bool
    ) -> Response:
        ok = False
        try:
            status, headers, (length, chunked, keep_alive) = await self._send(conn, data, method, reused=reused)
            if length is not None and not chunked:
                try:
                    body = await conn.reader.readexactly(length) if length else b""
                except asyncio.IncompleteReadError as exc:
                    raise ConnectionBroken(
                        f"peer closed connection without sending complete message body: "
                        f"received {len(exc.partial)} bytes, expected {length}"
                    ) from None
                except OSError as exc:
                    raise ConnectionBroken(_describe(exc)) from None
                ok = keep_alive
            else:
                reader = _Body(conn, length, chunked, keep_alive, timeout)
                body = await reader.read_all()
                ok = reader.keep_alive
            return Response(status, headers, body, target.url)
        finally:
            if ok:
                self._checkin(conn)
            else:
                conn.close()

    async def _send(
        self, conn: _Connection, data: bytes, method: str, *, reused: bool
    ) -> tuple[int, dict[str, str], tuple[int | None, bool, bool]]:
        """Write the request and read the response head; close the connection on failure."""
        try:
            conn.writer.write(data)
            await conn.writer.drain()
            while True:
                try:
                    raw = await conn.reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    if reused and not exc.partial:
                        raise _Stale("server closed the connection without a response") from None
                    raise ConnectionBroken(
                        "server disconnected without sending a response"
                        if not exc.partial
                        else "server disconnected in the middle of a response head"
                    ) from None
                version, status, headers = _parse_head(raw)
                if not 100 <= status < 200:
                    break
        except (ConnectionResetError, BrokenPipeError) as exc:
            # A reset while sending or waiting, on a reused connection: taken as "no byte read"
            # (asyncio drops a partly buffered head on a reset; a server that starts an answer
            # and then resets is not worth telling apart).
            conn.close()
            if reused:
                raise _Stale(_describe(exc)) from None
            raise ConnectionBroken(_describe(exc)) from None
        except OSError as exc:
            conn.close()
            if isinstance(exc, TimeoutError):
                raise
            raise ConnectionBroken(_describe(exc)) from None
        except asyncio.LimitOverrunError:
            conn.close()
            raise ConnectionBroken("response head too large") from None
        except BaseException:
            conn.close()
            raise
        return status, headers, _framing(method, version, status, headers)


def _request_bytes(method: str, target: Target, headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
    lines = f"{method} {target.path} HTTP/1.1\r\nHost: {target.authority}\r\nUser-Agent: {_USER_AGENT}\r\n"
    for name, value in headers:
        lines += f"{name}: {value}\r\n"
    if body or method in ("POST", "PUT", "PATCH"):
        lines += f"Content-Length: {len(body)}\r\n"
    return (lines + "\r\n").encode("latin-1") + body


def _parse_head(raw: bytes) -> tuple[str, int, dict[str, str]]:
    lines = raw[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ConnectionBroken(f"malformed status line: {lines[0][:100]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ConnectionBroken(f"malformed header line: {line[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    return version, int(code), headers


def _framing(method: str, version: str, status: int, headers: dict[str, str]) -> tuple[int | None, bool, bool]:
    """How the body ends (RFC 9112 6.3): (Content-Length or None, chunked, keep-alive allowed)."""
    connection = headers.get("connection", "").lower()
    keep_alive = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
    if method == "HEAD" or status in _NO_BODY_STATUS:
        return 0, False, keep_alive
    encoding = headers.get("transfer-encoding")
    if encoding is not None:
        if encoding.lower().rsplit(",", 1)[-1].strip() == "chunked":
            return None, True, keep_alive
        return None, False, False  # another coding last: the body ends at close
    length = headers.get("content-length")
    if length is None:
        return None, False, False
    try:
        value = int(length)
    except ValueError:
        value = -1
    if value < 0:
        raise ConnectionBroken(f"invalid Content-Length: {length[:100]!r}")
    return value, False, keep_alive


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError):  # ssl's certificate error is a ValueError too
        return str(exc) or type(exc).__name__
    if isinstance(exc, asyncio.IncompleteReadError):
        return "peer closed connection without sending complete message body"
    if isinstance(exc, asyncio.LimitOverrunError):
        return "chunk size line too long"
    if isinstance(exc, ValueError):
        return "malformed chunked body"
    return str(exc) or type(exc).__name__


def _default_ssl_context() -> ssl.SSLContext:
    try:
        import certifi
    except ImportError:  # pragma: no cover - httpx, a dependency, installs certifi
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())
