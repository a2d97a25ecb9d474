"""HttpPool, the node's keep-alive HTTP/1.1 client, and HttpContainer over it, against real
servers on 127.0.0.1 started by each test (asyncio servers whose behaviour the test scripts)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from infernet_core import ContainerConfig, ContainerInput, HttpContainer, Source
from infernet_core.containers.http_pool import (
    ConnectFailed,
    ConnectionBroken,
    HttpPool,
    Target,
    TimedOut,
)
from infernet_core.errors import ContainerFailure

pytestmark = pytest.mark.anyio

HOST = "127.0.0.1"
PAYLOAD = ContainerInput(source=Source.OFFCHAIN, destination=Source.OFFCHAIN, data={"x": 1})
STREAM = ContainerInput(source=Source.OFFCHAIN, destination=Source.STREAM, data={"x": 1})


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    connection: int  # which connection (0, 1, ...) it came on


def ok(body: bytes = b'{"ok":true}', extra: str = "") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra.encode(), body)


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[bool | None]]


@dataclass
class Server:
    """Counts connections and requests; ``handler`` answers each request (True: close after)."""

    handler: Handler
    port: int = 0
    connections: int = 0
    open: int = 0
    in_flight: int = 0
    peak: int = 0
    requests: list[Request] = field(default_factory=list)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        index = self.connections
        self.connections += 1
        self.open += 1
        try:
            await self._serve(reader, writer, index)
        except asyncio.CancelledError:
            pass  # the test is over (asyncio < 3.12 logs a handler task ending cancelled)
        finally:
            self.open -= 1
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ")
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = Request(method, target, headers, body, index)
            self.requests.append(request)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                close = await self.handler(request, writer)
            finally:
                self.in_flight -= 1
            if close:
                return


@asynccontextmanager
async def serving(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(handler)
    listener = await asyncio.start_server(server.serve, HOST, 0, ssl=ssl_context)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        for task in server.tasks:
            task.cancel()
        await asyncio.gather(*server.tasks, return_exceptions=True)
        await listener.wait_closed()


async def echo(request: Request, writer: asyncio.StreamWriter) -> None:
    writer.write(ok(msgspec.json.encode({"path": request.target, "body": request.body.decode()})))


@asynccontextmanager
async def pool(**options: Any) -> AsyncIterator[HttpPool]:
    http = HttpPool(**options)
    try:
        yield http
    finally:
        await http.aclose()


async def settle() -> None:
    # Let both ends see a close.
    for _ in range(5):
        await asyncio.sleep(0.01)


# -- keep-alive ----------------------------------------------------------------------------------


async def test_sequential_calls_reuse_one_connection() -> None:
    async with serving(echo) as server, pool() as http:
        target = Target(f"{server.url}/a?b=1")
        for n in range(10):
            response = await http.request("POST", target, body=b"n%d" % n, timeout=5)
            assert response.status == 200
            assert msgspec.json.decode(response.body) == {"path": "/a?b=1", "body": f"n{n}"}
        assert server.connections == 1
        assert [r.connection for r in server.requests] == [0] * 10


async def test_concurrent_calls_open_connections_then_reuse_them() -> None:
    async def slow(request: Request, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.02)
        writer.write(ok())

    async with serving(slow) as server, pool() as http:
        target = Target(server.url)
        for _ in range(3):
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(lambda: http.request("GET", target, timeout=5))
        assert server.connections == 8
        assert len(server.requests) == 24


async def test_idle_connections_are_bounded() -> None:
    async def slow(request: Request, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.02)
        writer.write(ok())

    async with serving(slow) as server, pool(max_idle=2) as http:
        target = Target(server.url)
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(lambda: http.request("GET", target, timeout=5))
        await settle()
        assert server.connections == 6
        assert server.open == 2  # the others were closed on their return to the pool


async def test_idle_connections_expire() -> None:
    async with serving(echo) as server, pool(keepalive_expiry=0.05) as http:
        target = Target(server.url)
        await http.request("GET", target, timeout=5)
        await asyncio.sleep(0.1)
        await http.request("GET", target, timeout=5)
        assert server.connections == 2


async def test_server_closing_an_idle_connection_then_the_next_call_succeeds() -> None:
    async def answer_then_close(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok())  # keep-alive allowed, yet the server closes it (its idle timeout)
        return True

    async with serving(answer_then_close) as server, pool() as http:
        target = Target(server.url)
        for _ in range(3):
            await http.request("POST", target, body=b"{}", timeout=5)
            await settle()
        assert server.connections == 3
        assert len(server.requests) == 3  # the closed connections were noticed before sending


async def test_a_reused_connection_closed_without_an_answer_is_retried_once() -> None:
    # The race the retry is for: the server closes a kept-alive connection as the request is
    # sent on it (here: it reads the second request and closes without a byte of answer).
    async def first_only(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.connection == 0 and len(server.requests) > 1:
            return True
        writer.write(ok(b'{"n":%d}' % len(server.requests)))
        return False

    async with serving(first_only) as server, pool() as http:
        target = Target(server.url)
        assert (await http.request("POST", target, body=b"1", timeout=5)).body == b'{"n":1}'
        assert (await http.request("POST", target, body=b"2", timeout=5)).body == b'{"n":3}'
        assert [(r.connection, r.body) for r in server.requests] == [(0, b"1"), (0, b"2"), (1, b"2")]


async def test_a_new_connection_closed_without_an_answer_is_not_retried() -> None:
    async def hang_up(request: Request, writer: asyncio.StreamWriter) -> bool:
        return True

    async with serving(hang_up) as server, pool() as http:
        with pytest.raises(ConnectionBroken, match="^server disconnected without sending a response$"):
            await http.request("POST", Target(server.url), body=b"{}", timeout=5)
        assert len(server.requests) == 1


async def test_connection_close_and_http_1_0_are_not_kept() -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
        ok(b"ok"),
    ]

    async def scripted(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(answers[len(server.requests) - 1])

    async with serving(scripted) as server, pool() as http:
        for _ in answers:
            assert (await http.request("GET", Target(server.url), timeout=5)).body == b"ok"
        assert [r.connection for r in server.requests] == [0, 1, 2, 2]


# -- response framing ------------------------------------------------------------------------


async def test_content_length_chunked_and_read_to_eof_bodies() -> None:
    async def framed(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.target == "/length":
            writer.write(ok(b"0123456789"))
        elif request.target == "/chunked":
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\n012\r\n7;ext=1\r\n3456789\r\n0\r\nTrailer: x\r\n\r\n"
            )
        elif request.target == "/eof":
            writer.write(b"HTTP/1.1 200 OK\r\n\r\n0123")
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(b"456789")
            return True
        elif request.target == "/interim":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"0123456789"))
        elif request.target == "/empty":
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        return False

    async with serving(framed) as server, pool() as http:
        for path in ("/length", "/chunked", "/interim", "/length", "/eof", "/length"):
            response = await http.request("GET", Target(server.url + path), timeout=5)
            assert (response.status, response.body) == (200, b"0123456789"), path
        assert (await http.request("GET", Target(server.url + "/empty"), timeout=5)).body == b""
        # Kept: after the content-length, chunked and interim answers; not after the EOF one.
        assert [r.connection for r in server.requests] == [0, 0, 0, 0, 0, 1, 1]


async def test_a_short_body_is_a_broken_connection() -> None:
    async def short(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123")
        return True

    async with serving(short) as server, pool() as http:
        with pytest.raises(ConnectionBroken, match="received 4 bytes, expected 10"):
            await http.request("GET", Target(server.url), timeout=5)


async def test_stream_gives_chunks_as_they_come_and_keeps_the_connection() -> None:
    release = asyncio.Event()

    async def chunked(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await release.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")

    async with serving(chunked) as server, pool() as http:
        target = Target(server.url)
        async with http.stream("POST", target, body=b"{}", timeout=5) as response:
            assert response.status == 200
            parts = response.aiter_bytes()
            assert await parts.__anext__() == b"first"  # before the rest was sent
            release.set()
            assert [part async for part in parts] == [b"second"]
        release.clear()
        release.set()
        async with http.stream("POST", target, body=b"{}", timeout=5) as response:
            assert [part async for part in response.aiter_bytes()] == [b"first", b"second"]
        assert server.connections == 1


async def test_a_stream_left_early_closes_its_connection() -> None:
    async def chunked(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")

    async with serving(chunked) as server, pool() as http:
        target = Target(server.url)
        async with http.stream("GET", target, timeout=5) as response:
            assert await response.aiter_bytes().__anext__() == b"first"
        await settle()
        assert server.open == 0


# -- timeouts and failures -------------------------------------------------------------------


async def test_timeout_counts_the_whole_response() -> None:
    async def trickle(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        for _ in range(10):
            await asyncio.sleep(0.05)
            writer.write(b"x")

    async with serving(trickle) as server, pool() as http:
        with anyio.fail_after(2):
            with pytest.raises(TimedOut, match=r"^timed out after 0\.2s$"):
                await http.request("GET", Target(server.url), timeout=0.2)


async def test_a_timed_out_connection_is_not_reused() -> None:
    async def first_hangs(request: Request, writer: asyncio.StreamWriter) -> None:
        if len(server.requests) == 1:
            await asyncio.sleep(0.3)
        writer.write(ok(b"%d" % len(server.requests)))

    async with serving(first_hangs) as server, pool() as http:
        target = Target(server.url)
        with pytest.raises(TimedOut):
            await http.request("GET", target, timeout=0.1)
        assert (await http.request("GET", target, timeout=5)).body == b"2"
        assert [r.connection for r in server.requests] == [0, 1]


async def test_a_cancelled_call_leaves_no_connection_behind() -> None:
    closed = asyncio.Event()

    async def wait_for_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read()  # EOF: the client closed the connection
        closed.set()
        writer.close()

    listener = await asyncio.start_server(wait_for_close, HOST, 0)
    async with listener, pool() as http:
        with anyio.move_on_after(0.05):
            await http.request("GET", Target(f"http://{HOST}:{listener.sockets[0].getsockname()[1]}"), timeout=5)
        with anyio.fail_after(2):
            await closed.wait()


async def test_connection_refused() -> None:
    listener = await asyncio.start_server(lambda r, w: None, HOST, 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    async with pool() as http:
        with pytest.raises(ConnectFailed):
            await http.request("GET", Target(f"http://{HOST}:{port}/"), timeout=5)


def test_target_parsing() -> None:
    target = Target("http://Example.test:8080/base/service_output?x=1")
    assert (target.host, target.port, target.authority, target.path) == (
        "example.test",
        8080,
        "example.test:8080",
        "/base/service_output?x=1",
    )
    assert (Target("https://h").port, Target("https://h").path, Target("http://[::1]:81/").authority) == (
        443,
        "/",
        "[::1]:81",
    )
    assert Target("http://h/a b/é?q=x y#frag").path == "/a%20b/%C3%A9?q=x%20y"
    for bad in ("ftp://h/", "localhost:3000", "/path"):
        with pytest.raises(ValueError, match="not an http"):
            Target(bad)


# -- HttpContainer over the pool -------------------------------------------------------------


async def test_container_posts_to_its_prefix_with_bearer_and_json() -> None:
    async with serving(echo) as server, pool() as http:
        config = ContainerConfig(id="c", url=f"{server.url}/prefix/", bearer="tok")
        assert await HttpContainer(config, http).run(PAYLOAD) == {
            "path": "/prefix/service_output",
            "body": '{"source":1,"destination":1,"data":{"x":1},"requires_proof":false}',
        }
        [request] = server.requests
        assert request.method == "POST"
        assert request.headers["authorization"] == "Bearer tok"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["host"] == f"{HOST}:{server.port}"


async def test_container_max_concurrency_holds_the_rest_back() -> None:
    async def slow(request: Request, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.02)
        writer.write(ok())

    async with serving(slow) as server, pool() as http:
        container = HttpContainer(ContainerConfig(id="c", url=server.url, max_concurrency=3), http)
        outputs: list[Any] = []

        async def call() -> None:
            outputs.append(await container.run(PAYLOAD))

        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(call)
        assert outputs == [{"ok": True}] * 12
        assert server.peak == 3
        assert server.connections == 3


async def test_container_failures_name_their_cause() -> None:
    async def failing(request: Request, writer: asyncio.StreamWriter) -> None:
        if request.target == "/500/service_output":
            writer.write(b'HTTP/1.1 500 Internal Server Error\r\nContent-Length: 16\r\n\r\n{"error":"boom"}')
        elif request.target == "/text/service_output":
            writer.write(ok(b"not json"))
        else:
            await asyncio.sleep(3600)

    async with serving(failing) as server, pool() as http:

        async def failure(url: str, **config: Any) -> str:
            container = HttpContainer(ContainerConfig(id="c", url=url, **config), http)
            with pytest.raises(ContainerFailure) as caught:
                await container.run(PAYLOAD)
            return caught.value.message

        base = server.url
        assert await failure(f"{base}/500") == f'HTTP 500 from {base}/500/service_output: {{"error":"boom"}}'
        assert await failure(f"{base}/text") == f"response from {base}/text/service_output is not JSON: not json"
        assert await failure(f"{base}/hang", timeout=0.1) == f"timed out after 0.1s calling {base}/hang/service_output"
        assert await failure("ftp://x") == (
            "could not reach ftp://x/service_output: not an http(s) URL: 'ftp://x/service_output'"
        )


async def test_container_unreachable() -> None:
    listener = await asyncio.start_server(lambda r, w: None, HOST, 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    async with pool() as http:
        container = HttpContainer(ContainerConfig(id="c", url=f"http://{HOST}:{port}"), http)
        with pytest.raises(ContainerFailure) as caught:
            await container.run(PAYLOAD)
    assert caught.value.message.startswith(f"could not reach http://{HOST}:{port}/service_output: ")


async def test_container_stream_relays_parts_and_reports_a_break() -> None:
    async def chunked(request: Request, writer: asyncio.StreamWriter) -> bool:
        assert msgspec.json.decode(request.body) == {"source": 1, "destination": 2, "data": {"x": 1}}
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n3\r\ntwo\r\n")
        if request.target == "/broken/service_output":
            return True
        writer.write(b"0\r\n\r\n")
        return False

    async with serving(chunked) as server, pool() as http:
        container = HttpContainer(ContainerConfig(id="c", url=server.url), http)
        async with container.stream(STREAM) as chunks:
            assert [chunk async for chunk in chunks] == [b"one", b"two"]
        broken = HttpContainer(ContainerConfig(id="b", url=server.url + "/broken"), http)
        received: list[bytes] = []
        with pytest.raises(ContainerFailure) as caught:
            async with broken.stream(STREAM) as chunks:
                async for chunk in chunks:
                    received.append(chunk)
        assert received == [b"one", b"two"]
        assert caught.value.message == (
            f"response from {server.url}/broken/service_output broke off: "
            "peer closed connection without sending complete message body"
        )


async def test_container_stream_error_status_quotes_the_body() -> None:
    async def unavailable(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown")

    async with serving(unavailable) as server, pool() as http:
        container = HttpContainer(ContainerConfig(id="c", url=server.url), http)
        with pytest.raises(ContainerFailure) as caught:
            async with container.stream(STREAM):
                pass
        assert caught.value.message == f"HTTP 503 from {server.url}/service_output: down"
        assert server.connections == 1


async def test_container_resources_with_model_id_and_bearer() -> None:
    async def resources(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(ok(msgspec.json.encode({"target": request.target, "auth": request.headers.get("authorization")})))

    async with serving(resources) as server, pool() as http:
        container = HttpContainer(ContainerConfig(id="c", url=server.url, bearer="tok"), http)
        assert await container.resources("llama 3") == {
            "target": "/service-resources?model_id=llama+3",
            "auth": "Bearer tok",
        }
        assert (await container.resources())["target"] == "/service-resources"


# -- https -------------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_with_a_trusted_certificate_and_not_without(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    async with serving(echo, ssl_context=server_context) as server:
        url = f"https://{HOST}:{server.port}/x"
        async with pool(ssl_context=ssl.create_default_context(cafile=str(cert))) as http:
            for _ in range(2):
                assert (await http.request("GET", Target(url), timeout=5)).status == 200
            assert server.connections == 1
        async with pool() as http:  # the default context does not trust a self-signed certificate
            with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
                await http.request("GET", Target(url), timeout=5)
