"""Container clients' streaming and resources: LocalContainer (async generators, the one-chunk
fallback, resources arguments), HttpContainer over httpx's MockTransport, and the chunk rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from infernet_core import ContainerConfig, ContainerFailure, ContainerInput, HttpContainer, LocalContainer, Source
from infernet_core.containers.chunks import decode_output, encode_chunk

pytestmark = pytest.mark.anyio

STREAM = ContainerInput(source=Source.OFFCHAIN, destination=Source.STREAM, data={"q": 1})


async def collect(container: Any, payload: ContainerInput = STREAM) -> list[bytes]:
    async with container.stream(payload) as chunks:
        return [chunk async for chunk in chunks]


# -- chunk rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "chunk"),
    [
        (b"raw\xff", b"raw\xff"),
        (bytearray(b"ba"), b"ba"),
        (memoryview(b"mv"), b"mv"),
        ("tëxt", "tëxt".encode()),
        ({"a": [1, None]}, b'{"a":[1,null]}'),
        (3, b"3"),
    ],
)
def test_encode_chunk(value: Any, chunk: bytes) -> None:
    assert encode_chunk(value) == chunk


def test_encode_chunk_refuses_unrepresentable_values() -> None:
    with pytest.raises(ContainerFailure) as caught:
        encode_chunk(object())
    assert caught.value.message == "chunk is not JSON-representable (object)"


@pytest.mark.parametrize(
    ("body", "output"),
    [
        (b'{"a": 1}', {"a": 1}),
        (b"[1, 2]", [1, 2]),
        (b"42", 42),
        (b'"quoted"', "quoted"),
        (b"plain text", "plain text"),
        (b'{"a": 1} trailing', '{"a": 1} trailing'),
        (b"", ""),
        (b"bad \xff byte", "bad \ufffd byte"),
        (b"[" * 100_000, "[" * 100_000),
    ],
)
def test_decode_output(body: bytes, output: Any) -> None:
    assert decode_output(body) == output


# -- LocalContainer ----------------------------------------------------------------------------


async def test_async_generator_streams_its_values_as_chunks() -> None:
    seen: list[ContainerInput] = []

    async def gen(payload: ContainerInput) -> AsyncIterator[Any]:
        seen.append(payload)
        yield "a"
        yield b"b"
        yield {"c": 1}

    assert await collect(LocalContainer("gen", gen)) == [b"a", b"b", b'{"c":1}']
    assert seen == [STREAM]


async def test_async_generator_run_collects_and_decodes() -> None:
    async def text(payload: ContainerInput) -> AsyncIterator[str]:
        yield "hello "
        yield "world"

    async def json_parts(payload: ContainerInput) -> AsyncIterator[bytes]:
        yield b'{"n": '
        yield b"1}"

    assert await LocalContainer("text", text).run(STREAM) == "hello world"
    assert await LocalContainer("json", json_parts).run(STREAM) == {"n": 1}


async def test_async_generator_failure_is_a_container_failure() -> None:
    async def breaks(payload: ContainerInput) -> AsyncIterator[str]:
        yield "ok"
        raise ValueError("broken pipe")

    container = LocalContainer("breaks", breaks)
    received: list[bytes] = []
    with pytest.raises(ContainerFailure) as caught:
        async with container.stream(STREAM) as chunks:
            async for chunk in chunks:
                received.append(chunk)
    assert received == [b"ok"]
    assert caught.value.message == "ValueError: broken pipe"
    with pytest.raises(ContainerFailure) as caught:
        await container.run(STREAM)
    assert caught.value.message == "ValueError: broken pipe"


async def test_async_generator_unrepresentable_chunk_fails() -> None:
    async def odd(payload: ContainerInput) -> AsyncIterator[Any]:
        yield object()

    with pytest.raises(ContainerFailure) as caught:
        await LocalContainer("odd", odd).run(STREAM)
    assert caught.value.message == "chunk is not JSON-representable (object)"


async def test_async_generator_run_times_out() -> None:
    async def slow(payload: ContainerInput) -> AsyncIterator[str]:
        yield "a"
        await anyio.sleep(5)
        yield "b"

    with pytest.raises(ContainerFailure) as caught:
        await LocalContainer("slow", slow, timeout=0.05).run(STREAM)
    assert caught.value.message == "timed out after 0.05s"


async def test_leaving_early_closes_the_generator() -> None:
    closed = anyio.Event()

    async def endless(payload: ContainerInput) -> AsyncIterator[str]:
        try:
            while True:
                yield "x"
                await anyio.sleep(0)
        finally:
            closed.set()

    async with LocalContainer("endless", endless).stream(STREAM) as chunks:
        async for _ in chunks:
            break
    assert closed.is_set()


async def test_async_generator_method_of_a_callable_object_streams() -> None:
    class Parts:
        async def __call__(self, payload: ContainerInput) -> AsyncIterator[str]:
            yield "one"
            yield "two"

    assert await collect(LocalContainer("parts", Parts())) == [b"one", b"two"]


@pytest.mark.parametrize("sync", [True, False])
async def test_non_generator_streams_its_output_as_one_json_chunk(sync: bool) -> None:
    def upper(payload: ContainerInput) -> Any:
        return {"text": "HI", "data": payload.data}

    async def async_upper(payload: ContainerInput) -> Any:
        return upper(payload)

    container = LocalContainer("upper", upper if sync else async_upper)
    assert await collect(container) == [b'{"text":"HI","data":{"q":1}}']


async def test_non_generator_stream_failure_raises_on_entering() -> None:
    async def boom(payload: ContainerInput) -> Any:
        raise RuntimeError("kaboom")

    with pytest.raises(ContainerFailure) as caught:
        await collect(LocalContainer("boom", boom))
    assert caught.value.message == "RuntimeError: kaboom"


async def test_local_resources() -> None:
    async def echo(payload: ContainerInput) -> Any:
        return payload.data

    async def by_model(model_id: str | None) -> Any:
        return {"asked": model_id}

    def broken(model_id: str | None) -> Any:
        raise KeyError(model_id)

    assert await LocalContainer("fixed", echo, resources={"gpu": 1}).resources("m") == {"gpu": 1}
    assert await LocalContainer("async", echo, resources=by_model).resources("m") == {"asked": "m"}
    assert await LocalContainer("async", echo, resources=by_model).resources() == {"asked": None}
    with pytest.raises(ContainerFailure, match="^KeyError: 'm'$"):
        await LocalContainer("broken", echo, resources=broken).resources("m")
    with pytest.raises(ContainerFailure, match="^container none offers no resources$"):
        await LocalContainer("none", echo).resources()


# -- HttpContainer -----------------------------------------------------------------------------


class Recorded:
    """A MockTransport handler recording requests and answering with ``respond(request)``."""

    def __init__(self, respond: Any) -> None:
        self.requests: list[httpx.Request] = []
        self._respond = respond

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        await request.aread()
        response: httpx.Response = self._respond(request)
        return response


class Parts(httpx.AsyncByteStream):
    """A response body sent in parts; raises ``error`` after them if given."""

    def __init__(self, *parts: bytes, error: Exception | None = None) -> None:
        self.parts = parts
        self.error = error
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part
        if self.error is not None:
            raise self.error

    async def aclose(self) -> None:
        self.closed = True


def http_container(handler: Any, **config: Any) -> tuple[HttpContainer, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    settings = {"id": "c", "url": "http://container.test:8000/", **config}
    return HttpContainer(ContainerConfig(**settings), client), client


async def test_http_stream_posts_the_stream_body_and_relays_parts() -> None:
    body = Parts(b"one ", b"two")
    handler = Recorded(lambda request: httpx.Response(200, stream=body))
    container, client = http_container(handler, bearer="tok")
    async with client:
        assert await collect(container) == [b"one ", b"two"]
    [request] = handler.requests
    assert str(request.url) == "http://container.test:8000/service_output"
    assert request.method == "POST"
    assert msgspec.json.decode(request.content) == {"source": 1, "destination": 2, "data": {"q": 1}}
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Bearer tok"
    assert body.closed


async def test_http_stream_error_status_fails_on_entering() -> None:
    handler = Recorded(lambda request: httpx.Response(503, stream=Parts(b"down ", b"for maintenance")))
    container, client = http_container(handler)
    async with client:
        with pytest.raises(ContainerFailure) as caught:
            await collect(container)
    assert caught.value.message == "HTTP 503 from http://container.test:8000/service_output: down for maintenance"


async def test_http_stream_broken_off_fails_while_iterating() -> None:
    body = Parts(b"partial", error=httpx.RemoteProtocolError("peer closed connection"))
    container, client = http_container(Recorded(lambda request: httpx.Response(200, stream=body)))
    received: list[bytes] = []
    async with client:
        with pytest.raises(ContainerFailure) as caught:
            async with container.stream(STREAM) as chunks:
                async for chunk in chunks:
                    received.append(chunk)
    assert received == [b"partial"]
    assert caught.value.message == (
        "response from http://container.test:8000/service_output broke off: peer closed connection"
    )


async def test_http_stream_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    container, client = http_container(refuse)
    async with client:
        with pytest.raises(ContainerFailure) as caught:
            await collect(container)
    assert caught.value.message == "could not reach http://container.test:8000/service_output: connection refused"


async def test_http_stream_requests_nothing_about_proofs_even_if_asked() -> None:
    handler = Recorded(lambda request: httpx.Response(200, content=b"x"))
    container, client = http_container(handler)
    payload = ContainerInput(source=Source.OFFCHAIN, destination=Source.STREAM, data={}, requires_proof=True)
    async with client:
        assert await collect(container, payload) == [b"x"]
    assert "requires_proof" not in msgspec.json.decode(handler.requests[0].content)


@pytest.mark.parametrize(
    ("config", "base"),
    [
        ({"url": "http://container.test:8000/"}, "http://container.test:8000"),
        ({"url": "", "port": 3999}, "http://localhost:3999"),
    ],
)
async def test_http_resources_url_model_id_and_bearer(config: dict[str, Any], base: str) -> None:
    handler = Recorded(lambda request: httpx.Response(200, json={"gpus": 2}))
    container, client = http_container(handler, bearer="tok", **config)
    async with client:
        assert await container.resources() == {"gpus": 2}
        assert await container.resources("llama 3") == {"gpus": 2}
    plain, with_model = handler.requests
    assert plain.method == "GET"
    assert str(plain.url) == f"{base}/service-resources"
    assert str(with_model.url) == f"{base}/service-resources?model_id=llama+3"
    assert plain.headers["authorization"] == "Bearer tok"
    assert "content-type" not in plain.headers


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(404, text="no such route"), "HTTP 404 from http://c.test/service-resources: no such route"),
        (httpx.Response(200, text="not json"), "response from http://c.test/service-resources is not JSON: not json"),
    ],
)
async def test_http_resources_failures(response: httpx.Response, message: str) -> None:
    container, client = http_container(Recorded(lambda request: response), url="http://c.test")
    async with client:
        with pytest.raises(ContainerFailure) as caught:
            await container.resources()
    assert caught.value.message == message


def test_decode_output_keeps_a_body_nested_too_deeply_as_text() -> None:
    body = b"[" * 65 + b"]" * 65
    assert decode_output(body) == body.decode()  # 65 levels: more than the default 64
    assert decode_output(b"[[]]", max_depth=2) == [[]]
    assert decode_output(b"[[[]]]", max_depth=2) == "[[[]]]"
