"""POST /api/jobs/stream in-process, with hand-written ``receive``/``send`` (``ASGITransport``
collects the whole body, so it cannot show when each chunk leaves), and its refusals through
httpx.

The streaming containers here are async generators that wait on events the test sets, so a
test decides when each part is produced and can check what the app has sent by then.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from infernet_asgi import InfernetApp
from infernet_core import ContainerInput, NodeConfig

pytestmark = pytest.mark.anyio


class Parts:
    """An async generator container yielding ``parts``, each only once the test allows it."""

    def __init__(self, *parts: Any, fail_after: int | None = None) -> None:
        self.parts = parts
        self.fail_after = fail_after
        self.allowed = 0
        self.changed = anyio.Event()
        self.produced: list[Any] = []
        self.closed = False
        self.payloads: list[ContainerInput] = []

    def allow(self, count: int) -> None:
        self.allowed = count
        self.changed.set()
        self.changed = anyio.Event()

    async def __call__(self, payload: ContainerInput) -> AsyncIterator[Any]:
        self.payloads.append(payload)
        try:
            for index, part in enumerate(self.parts):
                if index == self.fail_after:
                    raise RuntimeError("generator broke")
                while self.allowed <= index:
                    await self.changed.wait()
                self.produced.append(part)
                yield part
        finally:
            self.closed = True


class StreamClient:
    """One request to the app: sends ``body``, then disconnects only when told to; records
    every message the app sends, and lets a test wait for the n-th body message."""

    def __init__(self, body: Any) -> None:
        self._body = msgspec.json.encode(body)
        self._body_sent = False
        self.gone = anyio.Event()
        self.sent: list[dict[str, Any]] = []
        self._sent_changed = anyio.Event()

    async def receive(self) -> dict[str, Any]:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self._body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        self._sent_changed.set()
        self._sent_changed = anyio.Event()

    async def wait_bodies(self, count: int) -> None:
        with anyio.fail_after(5):
            while len(self.bodies()) < count:
                await self._sent_changed.wait()

    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]

    def more(self) -> list[bool]:
        return [m.get("more_body", False) for m in self.sent if m["type"] == "http.response.body"]


def scope(path: str = "/api/jobs/stream") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }


def stream_app(kit: Any, **containers: Parts) -> InfernetApp:
    node = kit.node(NodeConfig(shutdown_grace=0.2, stream_timeout=5.0))
    for name, function in containers.items():
        node.container(name)(function)
    return InfernetApp(node)


async def job_of(app: InfernetApp, job_id: str) -> dict[str, Any]:
    [result] = await app.node.results([job_id], "127.0.0.1")
    return msgspec.to_builtins(result)


async def test_each_chunk_is_sent_as_it_is_produced(kit: Any) -> None:
    parts = Parts(b"raw ", "text ", {"n": 1})
    app = stream_app(kit, parts=parts)
    client = StreamClient({"containers": ["parts"], "data": {"q": 1}})
    async with app.lifespan(), anyio.create_task_group() as tg:
        tg.start_soon(app, scope(), client.receive, client.send)
        await client.wait_bodies(1)
        [start] = [m for m in client.sent if m["type"] == "http.response.start"]
        assert start == {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream")],
        }
        job_id = client.bodies()[0].decode().removesuffix("\n")
        assert client.bodies() == [f"{job_id}\n".encode()]
        assert (await job_of(app, job_id))["status"] == "running"
        assert (await app.node.info()).pending.offchain == 1

        for produced in (1, 2):
            parts.allow(produced)
            await client.wait_bodies(1 + produced)
            # Sent before the next part even exists.
            assert len(parts.produced) == produced
        parts.allow(3)
        await client.wait_bodies(5)

    assert client.bodies() == [f"{job_id}\n".encode(), b"raw ", b"text ", b'{"n":1}', b""]
    assert client.more() == [True, True, True, True, False]
    assert await job_of(app, job_id) == {
        "id": job_id,
        "status": "success",
        "result": {"container": "parts", "output": 'raw text {"n":1}'},
    }
    [payload] = parts.payloads
    assert (payload.source, payload.destination, payload.data) == (1, 2, {"q": 1})


async def test_disconnect_stops_the_container_and_fails_the_job(kit: Any) -> None:
    parts = Parts("first", "never")
    parts.allow(1)
    app = stream_app(kit, parts=parts)
    client = StreamClient({"containers": ["parts"], "data": {}})
    async with app.lifespan():
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(app, scope(), client.receive, client.send)
                await client.wait_bodies(2)
                client.gone.set()
        job_id = client.bodies()[0].decode().strip()
        assert await job_of(app, job_id) == {
            "id": job_id,
            "status": "failed",
            "result": {"container": "parts", "error": "client disconnected"},
        }
    assert parts.closed
    assert parts.produced == ["first"]


async def test_send_failing_with_oserror_counts_as_a_disconnect(kit: Any) -> None:
    parts = Parts("first", "never")
    parts.allow(1)
    app = stream_app(kit, parts=parts)
    client = StreamClient({"containers": ["parts"], "data": {}})

    async def send(message: dict[str, Any]) -> None:
        if message.get("body") == b"first":
            raise OSError("connection reset")
        await client.send(message)

    async with app.lifespan():
        with anyio.fail_after(5):
            await app(scope(), client.receive, send)
        job_id = client.bodies()[0].decode().strip()
        assert (await job_of(app, job_id))["result"] == {"container": "parts", "error": "client disconnected"}
    assert parts.closed


async def test_container_failing_mid_stream_ends_the_stream_and_fails_the_job(kit: Any) -> None:
    parts = Parts("a", "b", fail_after=1)
    parts.allow(2)
    app = stream_app(kit, parts=parts)
    client = StreamClient({"containers": ["parts"], "data": {}})
    async with app.lifespan():
        await app(scope(), client.receive, client.send)
        job_id = client.bodies()[0].decode().strip()
        assert client.bodies()[1:] == [b"a", b""]
        assert client.more()[-1] is False
        assert (await job_of(app, job_id))["result"] == {"container": "parts", "error": "RuntimeError: generator broke"}


async def test_stream_timeout_fails_the_job(kit: Any) -> None:
    parts = Parts("a", "b")
    parts.allow(1)
    node = kit.node(NodeConfig(shutdown_grace=0.2, stream_timeout=0.1))
    node.container("parts")(parts)
    app = InfernetApp(node)
    client = StreamClient({"containers": ["parts"], "data": {}})
    async with app.lifespan():
        await app(scope(), client.receive, client.send)
        job_id = client.bodies()[0].decode().strip()
        assert client.bodies()[1:] == [b"a", b""]
        assert (await job_of(app, job_id))["result"] == {"container": "parts", "error": "timed out after 0.1s"}


async def test_only_the_first_container_runs(kit: Any, app: InfernetApp, client: httpx.AsyncClient) -> None:
    # A container that does not stream gives its output JSON-encoded, as one chunk.
    response = await client.post("/api/jobs/stream", json={"containers": ["upper", "suffix"], "data": {"text": "hi"}})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    job_id, body = response.text.split("\n", 1)
    assert body == '{"text":"HI"}'
    assert kit.called() == ["upper"]
    [result] = (await client.get("/api/jobs", params={"id": job_id})).json()
    assert result == {"id": job_id, "status": "success", "result": {"container": "upper", "output": {"text": "HI"}}}


async def test_failing_container_gives_just_the_id_line(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/jobs/stream", json={"containers": ["boom"], "data": {}})
    assert response.status_code == 200
    job_id = response.text.removesuffix("\n")
    assert "\n" not in job_id
    [result] = (await client.get("/api/jobs", params={"id": job_id})).json()
    assert result == {
        "id": job_id,
        "status": "failed",
        "result": {"container": "boom", "error": "RuntimeError: kaboom"},
    }


@pytest.mark.parametrize(
    ("containers", "error"),
    [
        (["missing"], "Container not supported"),
        (["internal"], "First container must be external"),
        ([], "No containers specified"),
    ],
)
async def test_guardian_rejections_are_400(
    kit: Any, client: httpx.AsyncClient, containers: list[str], error: str
) -> None:
    response = await client.post("/api/jobs/stream", json={"containers": containers, "data": {}})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == error
    assert kit.called() == []
    assert (await client.get("/api/jobs")).json() == []


async def test_delegated_subscription_is_refused(client: httpx.AsyncClient) -> None:
    body = {
        "subscription": {
            "owner": "0x" + "11" * 20,
            "container_id": "echo",
            "active_at": 0,
            "frequency": 1,
            "period": 0,
            "redundancy": 1,
            "max_gas_price": 1,
            "max_gas_limit": 100_000,
            "inputs": "",
        },
        "signature": {"nonce": 0, "expiry": 2**32 - 1, "v": 27, "r": 1, "s": 1},
        "data": {},
    }
    response = await client.post("/api/jobs/stream", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": "Streaming only supported for OffchainJob requests."}


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"containers": "echo", "data": {}}'])
async def test_malformed_bodies_are_400(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post("/api/jobs/stream", content=body)
    assert response.status_code == 400
    assert "error" in response.json()


async def test_only_post(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/jobs/stream")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
