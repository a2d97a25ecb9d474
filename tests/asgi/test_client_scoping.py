"""Jobs belong to the client address that made them; trusted proxies may name that client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from infernet_asgi import InfernetApp
from infernet_core import NodeConfig
from infernet_core.config import ServerConfig

pytestmark = pytest.mark.anyio


async def job_ids(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> list[str]:
    response = await client.get("/api/jobs", headers=headers)
    assert response.status_code == 200
    ids: list[str] = response.json()
    return ids


async def test_jobs_are_invisible_to_other_clients(kit: Any, app: InfernetApp) -> None:
    async with (
        kit.client(app, client=("127.0.0.1", 1000)) as a,
        kit.client(app, client=("127.0.0.2", 1000)) as b,
        kit.client(app, client=("::1", 1000)) as c,
    ):
        job_a = await kit.submit(a, ["echo"], {"who": "a"})
        job_c = await kit.submit(c, ["echo"], {"who": "c"})
        result_a = await kit.wait_done(a, job_a)
        await kit.wait_done(c, job_c)

        assert await job_ids(a) == [job_a]
        assert await job_ids(b) == []
        assert await job_ids(c) == [job_c]
        for other, job_id in ((b, job_a), (c, job_a), (a, job_c), (b, job_c)):
            response = await other.get("/api/jobs", params={"id": job_id})
            assert response.status_code == 200
            assert response.json() == []
        # Asking for a mix returns only one's own jobs.
        response = await a.get("/api/jobs", params=[("id", job_c), ("id", job_a)])
        assert response.json() == [result_a]
        for pending in ("true", "false"):
            assert (await b.get("/api/jobs", params={"pending": pending})).json() == []


async def test_the_port_does_not_matter(kit: Any, app: InfernetApp) -> None:
    async with kit.client(app, client=("127.0.0.1", 1)) as one, kit.client(app, client=("127.0.0.1", 2)) as two:
        job_id = await kit.submit(one, ["echo"], {})
        assert (await kit.wait_done(two, job_id))["status"] == "success"


@pytest.mark.parametrize(
    ("made_by", "read_by"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("127.0.0.1", "::ffff:127.0.0.1"),
        ("0:0:0:0:0:0:0:1", "::1"),
    ],
)
async def test_address_spellings_are_normalised(kit: Any, app: InfernetApp, made_by: str, read_by: str) -> None:
    async with kit.client(app, client=(made_by, 1)) as maker, kit.client(app, client=(read_by, 1)) as reader:
        job_id = await kit.submit(maker, ["echo"], {})
        assert await job_ids(reader) == [job_id]


async def test_put_status_jobs_are_scoped_too(kit: Any, app: InfernetApp) -> None:
    async with kit.client(app, client=("127.0.0.1", 1)) as a, kit.client(app, client=("127.0.0.2", 1)) as b:
        response = await a.put("/api/status", json={"id": "same", "status": "success", "containers": []})
        assert response.status_code == 200
        # The same id from another client is another job: it starts fresh, no 409.
        response = await b.put("/api/status", json={"id": "same", "status": "running", "containers": []})
        assert response.status_code == 200
        assert (await a.get("/api/jobs", params={"id": "same"})).json()[0]["status"] == "success"
        assert (await b.get("/api/jobs", params={"id": "same"})).json()[0]["status"] == "running"


# -- trusted proxies ----------------------------------------------------------------------------


@pytest.fixture
async def proxied(kit: Any) -> AsyncIterator[InfernetApp]:
    app = kit.app(NodeConfig(server=ServerConfig(trusted_proxies=["127.0.0.1/32"])))
    async with app.lifespan():
        yield app


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(kit: Any, proxied: InfernetApp) -> None:
    alice = {"X-Forwarded-For": "198.51.100.7"}
    bob = {"X-Forwarded-For": "198.51.100.8"}
    async with kit.client(proxied) as proxy:
        response = await proxy.post("/api/jobs", json={"containers": ["echo"], "data": {}}, headers=alice)
        assert response.status_code == 200
        job_id = response.json()["id"]
        assert await job_ids(proxy, alice) == [job_id]
        assert await job_ids(proxy, bob) == []
        assert await job_ids(proxy) == []  # the proxy itself is another client
        response = await proxy.get("/api/jobs", params={"id": job_id}, headers=bob)
        assert (response.status_code, response.json()) == (200, [])
        # Walked from the right: the last hop that is not a trusted proxy is the client.
        chained = {"X-Forwarded-For": "203.0.113.99, 198.51.100.7, 127.0.0.1"}
        assert await job_ids(proxy, chained) == [job_id]
        # Garbage in the header: fall back to the peer.
        assert await job_ids(proxy, {"X-Forwarded-For": "unknown"}) == []


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(kit: Any, proxied: InfernetApp) -> None:
    spoof = {"X-Forwarded-For": "198.51.100.7"}
    async with kit.client(proxied) as proxy, kit.client(proxied, client=("127.0.0.2", 1)) as direct:
        response = await direct.post("/api/jobs", json={"containers": ["echo"], "data": {}}, headers=spoof)
        job_id = response.json()["id"]
        assert await job_ids(direct) == [job_id]
        assert await job_ids(proxy, spoof) == []


async def test_forwarded_for_is_ignored_without_trusted_proxies(kit: Any, app: InfernetApp) -> None:
    async with kit.client(app) as client:
        headers = {"X-Forwarded-For": "198.51.100.7"}
        response = await client.post("/api/jobs", json={"containers": ["echo"], "data": {}}, headers=headers)
        job_id = response.json()["id"]
        assert await job_ids(client) == [job_id]


async def test_put_status_behind_a_proxy_uses_the_forwarded_client(kit: Any, proxied: InfernetApp) -> None:
    body = {"id": "x", "status": "running", "containers": []}
    async with kit.client(proxied) as proxy:
        response = await proxy.put("/api/status", json=body, headers={"X-Forwarded-For": "203.0.113.5"})
        assert response.status_code == 403
        assert response.json() == {"error": "Unauthorized", "params": {"address": "203.0.113.5"}}
        response = await proxy.put("/api/status", json=body, headers={"X-Forwarded-For": "127.0.0.9"})
        assert response.status_code == 200


async def test_client_supplied_forwarded_for_line_cannot_spoof(kit: Any, proxied: InfernetApp) -> None:
    # A client sends its own X-Forwarded-For line and the proxy appends another one with the
    # real address. Repeated header lines form one list, in order (RFC 9110 5.3), so the
    # proxy's (right-most) entry must win over the client's forged one.
    async with kit.client(proxied) as proxy:
        headers = [("X-Forwarded-For", "198.51.100.7"), ("X-Forwarded-For", "203.0.113.50")]
        response = await proxy.post("/api/jobs", json={"containers": ["echo"], "data": {}}, headers=headers)
        job_id = response.json()["id"]
        assert await job_ids(proxy, {"X-Forwarded-For": "203.0.113.50"}) == [job_id]
        assert await job_ids(proxy, {"X-Forwarded-For": "198.51.100.7"}) == []
