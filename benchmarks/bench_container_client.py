"""Container calls per second, and CPU per call, of the HTTP clients the node could use.

Run from the repository root::

    .venv/bin/python benchmarks/bench_container_client.py            # about 45 s
    .venv/bin/python benchmarks/bench_container_client.py --duration 1 --rounds 2

It starts ``echo_container.py`` (a raw asyncio echo server, so the server is not the
bottleneck) on 127.0.0.1 as a subprocess, then, in this process, makes container calls with
each client -- ``POST /service_output`` with the node's JSON body, a Bearer header and a
per-call timeout, the whole response read and its JSON decoded -- from 1 and from 32
concurrent tasks over keep-alive connections. Phases are interleaved (round 1: every client at
c=1 and c=32, round 2: the same, ...) so that load from elsewhere on the machine hits them all
alike; the medians over rounds are printed: calls/s, and CPU microseconds per call of this
process (the client's whole cost: event loop, HTTP, JSON), and the echo server's CPU per call.

The clients:

* ``httpx``: ``httpx.AsyncClient`` configured as ``Node`` did before the pool
  (``Limits(max_connections=None, max_keepalive_connections=64)``, ``trust_env=False``);
* ``aiohttp``: ``aiohttp.ClientSession`` over ``TCPConnector(limit=0)``;
* ``h11``: a minimal keep-alive pool of h11 connections on asyncio streams (written here);
* ``pool``: ``infernet_core.containers.http_pool.HttpPool`` (raw asyncio streams);
* ``container/httpx`` and ``container/pool``: the node's ``HttpContainer.run`` over either,
  i.e. the whole container call as the node makes it (``max_concurrency`` 32).

Only loopback is used; the server is stopped by its PID at the end, also on an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
BODY = msgspec.json.encode({"source": 1, "destination": 1, "data": {"input": "hello"}, "requires_proof": False})
TIMEOUT = 30.0
HEADERS = {"content-type": "application/json", "authorization": "Bearer secret"}

Call = Callable[[], Awaitable[Any]]


# -- the clients ------------------------------------------------------------------------------


class Client:
    """A client under test: ``call()`` makes one container call; ``aclose()`` ends it."""

    name = ""

    async def call(self) -> Any:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


class HttpxClient(Client):
    name = "httpx"

    def __init__(self, url: str) -> None:
        import httpx

        self.url = url
        self.timeout = httpx.Timeout(TIMEOUT)
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64), trust_env=False
        )

    async def call(self) -> Any:
        response = await self.client.post(self.url, content=BODY, headers=HEADERS, timeout=self.timeout)
        assert response.status_code == 200
        return msgspec.json.decode(response.content)

    async def aclose(self) -> None:
        await self.client.aclose()


class AiohttpClient(Client):
    name = "aiohttp"

    def __init__(self, url: str) -> None:
        import aiohttp

        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def call(self) -> Any:
        async with self.session.post(self.url, data=BODY, headers=HEADERS, timeout=self.timeout) as response:
            assert response.status == 200
            return msgspec.json.decode(await response.read())

    async def aclose(self) -> None:
        await self.session.close()


class H11Client(Client):
    """A keep-alive pool of h11 connections on asyncio streams (idle ones in a list)."""

    name = "h11"

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit

        import h11

        self.h11 = h11
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or HOST, parts.port or 80, parts.path
        self.headers = [("host", f"{self.host}:{self.port}"), *HEADERS.items(), ("content-length", str(len(BODY)))]
        self.idle: list[tuple[Any, asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def call(self) -> Any:
        h11 = self.h11
        if self.idle:
            conn, reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            conn = h11.Connection(h11.CLIENT)
        async with asyncio.timeout(TIMEOUT):
            writer.write(
                conn.send(h11.Request(method="POST", target=self.path, headers=self.headers))
                + conn.send(h11.Data(data=BODY))
                + conn.send(h11.EndOfMessage())
            )
            body = b""
            status = 0
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
        assert status == 200
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self.idle.append((conn, reader, writer))
        else:
            writer.close()
        return msgspec.json.decode(body)

    async def aclose(self) -> None:
        for _, _, writer in self.idle:
            writer.close()


class PoolClient(Client):
    name = "pool"

    def __init__(self, url: str) -> None:
        from infernet_core.containers.http_pool import HttpPool, Target

        self.target = Target(url)
        self.headers = tuple(HEADERS.items())
        self.pool = HttpPool()

    async def call(self) -> Any:
        response = await self.pool.request("POST", self.target, body=BODY, headers=self.headers, timeout=TIMEOUT)
        assert response.status == 200
        return msgspec.json.decode(response.body)

    async def aclose(self) -> None:
        await self.pool.aclose()


class ViaContainer(Client):
    """``HttpContainer.run`` as the node calls it, over httpx or over the pool."""

    def __init__(self, base: str, kind: str) -> None:
        import httpx

        from infernet_core import ContainerConfig, ContainerInput, HttpContainer, Source
        from infernet_core.containers.http_pool import HttpPool

        self.name = f"container/{kind}"
        self.http: httpx.AsyncClient | HttpPool
        if kind == "httpx":
            self.http = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64), trust_env=False
            )
        else:
            self.http = HttpPool()
        config = ContainerConfig(id="echo", url=base, bearer="secret", max_concurrency=32, timeout=TIMEOUT)
        self.container = HttpContainer(config, self.http)
        self.payload = ContainerInput(source=Source.OFFCHAIN, destination=Source.OFFCHAIN, data={"input": "hello"})

    async def call(self) -> Any:
        return await self.container.run(self.payload)

    async def aclose(self) -> None:
        await self.http.aclose()


# -- measuring --------------------------------------------------------------------------------


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def phase(client: Client, concurrency: int, duration: float, server_pid: int) -> tuple[float, float, float]:
    """(calls/s, client CPU us per call, server CPU us per call) over ``duration`` seconds."""
    calls = 0
    stop = False

    async def worker() -> None:
        nonlocal calls
        while not stop:
            await client.call()
            calls += 1

    gc.collect()
    server0, cpu0, wall0 = server_cpu(server_pid), time.process_time(), time.perf_counter()
    tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    await asyncio.sleep(duration)
    stop = True
    await asyncio.gather(*tasks)
    wall, cpu, server = time.perf_counter() - wall0, time.process_time() - cpu0, server_cpu(server_pid) - server0
    return calls / wall, cpu / calls * 1e6, server / calls * 1e6


async def run(args: argparse.Namespace, port: int, server_pid: int) -> None:
    base = f"http://{HOST}:{port}"
    url = f"{base}/service_output"
    factories: dict[str, Callable[[], Client]] = {
        "httpx": lambda: HttpxClient(url),
        "aiohttp": lambda: AiohttpClient(url),
        "h11": lambda: H11Client(url),
        "pool": lambda: PoolClient(url),
        "container/httpx": lambda: ViaContainer(base, "httpx"),
        "container/pool": lambda: ViaContainer(base, "pool"),
    }
    names = [name for name in factories if name in args.clients]
    clients = {name: factories[name]() for name in names}
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    try:
        for client in clients.values():  # warm-up: connections opened, code paths hot
            await phase(client, 32, args.warmup, server_pid)
            assert (await client.call())["echo"] == {"input": "hello"}
        for index in range(args.rounds):
            print(f"round {index + 1}/{args.rounds}", file=sys.stderr, flush=True)
            for name, client in clients.items():
                for concurrency in args.concurrency:
                    results.setdefault((name, concurrency), []).append(
                        await phase(client, concurrency, args.duration, server_pid)
                    )
    finally:
        for client in clients.values():
            await client.aclose()
    print(f"\n{'client':<17}{'c':>4}{'calls/s':>11}{'client CPU us/call':>21}{'server CPU us/call':>21}")
    for (name, concurrency), samples in results.items():
        rate = statistics.median(s[0] for s in samples)
        cpu = statistics.median(s[1] for s in samples)
        srv = statistics.median(s[2] for s in samples)
        print(f"{name:<17}{concurrency:>4}{rate:>11,.0f}{cpu:>21.1f}{srv:>21.1f}")
    print(
        f"\n(medians of {args.rounds} rounds of {args.duration:g} s per phase; python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Container calls/s and CPU per call of HTTP clients.")
    parser.add_argument("--duration", type=float, default=1.5, help="seconds per phase (default 1.5)")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of warm-up per client (default 0.5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all phases; medians reported (default 3)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--clients",
        nargs="+",
        default=["httpx", "aiohttp", "h11", "pool", "container/httpx", "container/pool"],
    )
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "echo_container.py"), "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("LISTENING "):
            raise SystemExit(f"echo server did not start: {line!r}")
        asyncio.run(run(args, int(line.split()[1]), server.pid))
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(5)
        if server.poll() is None:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
