"""What the benchmarks share: a small asyncio HTTP/1.1 load generator and server processes.

* :class:`Connection`: one keep-alive HTTP/1.1 connection over raw asyncio streams, sending
  pre-built request bytes (:func:`post_bytes`, :func:`get_bytes`) and parsing responses only
  as far as the status, ``content-length`` and ``connection: close``.
* :class:`Server`, :func:`start_server`, :func:`stop_servers`: subprocesses on loopback,
  started here and stopped by PID (SIGTERM, then SIGKILL), with their CPU time and memory
  read from ``/proc``.
* The load phases: :func:`closed_loop` (requests/s over N connections, spread over one or
  more servers), :func:`job_latency` (one job at a time, submit then poll until success),
  :func:`round_trip`, and :func:`wait_idle` (until ``/info`` shows no pending job).

Only loopback (``127.0.0.1``) is ever used, and every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = (
    "HOST",
    "Connection",
    "Latency",
    "Server",
    "Throughput",
    "closed_loop",
    "free_port",
    "get_bytes",
    "job_body",
    "job_latency",
    "latency_dict",
    "node_command",
    "pending_offchain",
    "post_bytes",
    "round_trip",
    "start_server",
    "stop_servers",
    "submit_one",
    "throughput_dict",
    "wait_idle",
)

HOST = "127.0.0.1"  # loopback only, always


def job_body(container: str) -> bytes:
    """The body of ``POST /api/jobs`` for one job on ``container``."""
    return json.dumps({"containers": [container], "data": {"input": "hello"}}, separators=(",", ":")).encode()


# -- HTTP/1.1 on raw asyncio streams ------------------------------------------------------


def post_bytes(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode("ascii") + body


def get_bytes(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode("ascii")


class Connection:
    """One keep-alive HTTP/1.1 connection; reopens itself when the server closes it.

    hypercorn closes a keep-alive connection after ``keep_alive_max_requests`` (1000 by
    default) requests, announcing it with ``connection: close``; ``reconnects`` counts those.
    """

    __slots__ = ("port", "reader", "writer", "reconnects")

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reconnects = 0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
            self.writer = self.reader = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one pre-built request; return (status, body)."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        start = lower.find(b"\r\ncontent-length:")
        if start < 0:
            raise RuntimeError(f"response without content-length: {head!r}")
        start += 17
        length = int(head[start : head.index(b"\r\n", start)])
        body = await self.reader.readexactly(length) if length else b""
        if b"\r\nconnection: close" in lower:
            await self.close()
            self.reconnects += 1
        return status, body


# -- the servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A subprocess listening on ``HOST:port``."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        return _status_field(self.pid, "VmRSS")

    def hwm_kib(self) -> int:
        return _status_field(self.pid, "VmHWM")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def _status_field(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])  # kB
    raise RuntimeError(f"{name} not in /proc/{pid}/status")


def node_command() -> list[str]:
    """The installed ``infernet-node`` script next to this interpreter."""
    script = Path(sys.executable).parent / "infernet-node"
    if not script.exists():
        raise SystemExit(f"infernet-node not found next to {sys.executable}; install the package first")
    return [str(script)]


async def start_server(
    name: str,
    argv: list[str],
    port: int,
    log_dir: Path,
    started: list[Server],
    *,
    ready_path: str = "/health",
    timeout: float = 30.0,
) -> Server:
    """Run ``argv`` (which must listen on ``HOST:port``); return once ``GET ready_path`` is 200.

    The server is appended to ``started`` at once, so the caller stops it even if it never
    becomes ready.
    """
    log_path = log_dir / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if k != "INFERNET_CONFIG_PATH" and not k.lower().endswith("_proxy")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=log_dir
        )
    server = Server(name, port, proc, log_path)
    started.append(server)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
        conn = Connection(port)
        try:
            status, _ = await conn.request(get_bytes(ready_path))
            if status == 200:
                return server
        except OSError:
            pass
        finally:
            await conn.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer on {HOST}:{port} within {timeout:g} s")
        await asyncio.sleep(0.05)


def stop_servers(servers: Sequence[Server]) -> None:
    """SIGTERM each server by its PID, then SIGKILL any that outstays 15 seconds."""
    for server in servers:
        if server.proc.poll() is None:
            os.kill(server.pid, signal.SIGTERM)
    for server in servers:
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(server.pid, signal.SIGKILL)
            server.proc.wait(timeout=5)


def run_with_servers(run: Any, args: Any, log_dir: Path) -> Any:
    """``asyncio.run(run(args, log_dir, servers))``; on an error print the servers' log tails.
    Every server ``run`` started (appended to ``servers``) is stopped by PID in the end."""
    servers: list[Server] = []
    try:
        return asyncio.run(run(args, log_dir, servers))
    except BaseException:
        for server in servers:
            print(f"--- {server.name} log ({server.log_path}) ---", file=sys.stderr)
            with contextlib.suppress(OSError):
                print(server.log_path.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        stop_servers(servers)


# -- load phases ------------------------------------------------------------------------------


@dataclass
class Throughput:
    requests: int
    seconds: float
    errors: int
    reconnects: int
    server_cpu: float  # the servers' CPU seconds / wall seconds (summed over the servers)
    client_cpu: float  # this process's CPU seconds / wall seconds
    statuses: dict[int, int] = field(default_factory=dict)
    other_cpu: dict[str, float] = field(default_factory=dict)  # watched processes, by name

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def closed_loop(
    servers: Server | Sequence[Server],
    raw: bytes,
    connections: int,
    *,
    duration: float,
    max_requests: int,
    warmup: float = 0.0,
    watch: Sequence[Server] = (),
) -> Throughput:
    """``connections`` clients, each sending ``raw`` sequentially on its own keep-alive connection.

    With several servers the connections are dealt round-robin among them (the load split
    evenly). Counts requests completed after ``warmup`` seconds until ``duration`` more
    seconds have passed or ``max_requests`` were counted, whichever comes first. ``watch``:
    other processes whose CPU use over the counted period is reported in ``other_cpu``.
    """
    targets = [servers] if isinstance(servers, Server) else list(servers)
    conns = [Connection(targets[i % len(targets)].port) for i in range(connections)]
    await asyncio.gather(*(c.open() for c in conns))
    state = {"counting": False, "stop": False, "count": 0, "errors": 0}
    statuses: dict[int, int] = {}

    async def client(conn: Connection) -> None:
        request = conn.request
        while not state["stop"]:
            status, _ = await request(raw)
            if state["counting"]:
                state["count"] += 1
                statuses[status] = statuses.get(status, 0) + 1
                if status != 200:
                    state["errors"] += 1
                if state["count"] >= max_requests:
                    state["stop"] = True

    def cpu() -> tuple[float, list[float]]:
        return sum(s.cpu_seconds() for s in targets), [w.cpu_seconds() for w in watch]

    tasks = [asyncio.create_task(client(c)) for c in conns]
    try:
        if warmup > 0:
            await asyncio.wait(tasks, timeout=warmup)
        _check_tasks(tasks)
        (cpu0, watched0), proc0, t0 = cpu(), time.process_time(), time.perf_counter()
        state["counting"] = True
        await asyncio.wait(tasks, timeout=duration)
        state["counting"] = False
        t1, (cpu1, watched1), proc1 = time.perf_counter(), cpu(), time.process_time()
        count = state["count"]
        state["stop"] = True
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    wall = t1 - t0
    return Throughput(
        requests=count,
        seconds=wall,
        errors=state["errors"],
        reconnects=sum(c.reconnects for c in conns),
        server_cpu=(cpu1 - cpu0) / wall,
        client_cpu=(proc1 - proc0) / wall,
        statuses=statuses,
        other_cpu={w.name: (b - a) / wall for w, a, b in zip(watch, watched0, watched1, strict=True)},
    )


def _check_tasks(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def submit_one(port: int, body: bytes, timeout: float = 10.0) -> tuple[str, Any]:
    """Submit one job and poll until it succeeds; its id and its result's ``output``."""
    conn = Connection(port)
    try:
        status, raw = await conn.request(post_bytes("/api/jobs", body))
        if status != 200:
            raise RuntimeError(f"POST /api/jobs -> {status} {raw!r}")
        job_id: str = json.loads(raw)["id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, raw = await conn.request(get_bytes(f"/api/jobs?id={job_id}"))
            if status == 200:
                [result] = json.loads(raw)
                if result["status"] == "success":
                    return job_id, result["result"]["output"]
                if result["status"] != "running":
                    raise RuntimeError(f"job {job_id} ended {result['status']}: {raw!r}")
            await asyncio.sleep(0.01)
        raise RuntimeError(f"job {job_id} did not succeed within {timeout:g} s")
    finally:
        await conn.close()


@dataclass
class Latency:
    samples_ms: list[float]
    polls: int
    reconnects: int

    def percentile(self, p: float) -> float:
        ordered = sorted(self.samples_ms)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
        return ordered[index]


async def job_latency(
    servers: Server | Sequence[Server], body: bytes, samples: int, warmup: int, timeout: float
) -> Latency:
    """One job at a time: POST ``body``, poll GET ?id= on the same keep-alive connection until
    success; time it. With several servers, one connection each, used in turn (job *i* goes
    to server *i* mod n, and is polled there)."""
    targets = [servers] if isinstance(servers, Server) else list(servers)
    conns = [Connection(server.port) for server in targets]
    await asyncio.gather(*(c.open() for c in conns))
    submit = post_bytes("/api/jobs", body)
    results: list[float] = []
    polls = 0
    deadline = time.monotonic() + timeout
    try:
        for index in range(warmup + samples):
            if time.monotonic() > deadline:
                raise RuntimeError(f"latency phase exceeded {timeout:g} s after {index} samples")
            conn = conns[index % len(conns)]
            t0 = time.perf_counter()
            status, raw = await conn.request(submit)
            if status != 200:
                raise RuntimeError(f"POST /api/jobs -> {status} {raw!r}")
            poll = get_bytes(f"/api/jobs?id={json.loads(raw)['id']}")
            n = 0
            while True:
                n += 1
                status, raw = await conn.request(poll)
                if status != 200:
                    raise RuntimeError(f"GET /api/jobs -> {status} {raw!r}")
                job_status = json.loads(raw)[0]["status"]
                if job_status == "success":
                    break
                if job_status != "running" or n > 100_000:
                    raise RuntimeError(f"job ended as {job_status!r} after {n} polls: {raw!r}")
            t1 = time.perf_counter()
            if index >= warmup:
                results.append((t1 - t0) * 1000)
                polls += n
    finally:
        reconnects = sum(c.reconnects for c in conns)
        await asyncio.gather(*(c.close() for c in conns))
    return Latency(results, polls, reconnects)


async def round_trip(server: Server, raw: bytes, samples: int) -> list[float]:
    """Single-request round trips (ms) on one keep-alive connection, for reference."""
    conn = Connection(server.port)
    await conn.open()
    times: list[float] = []
    try:
        for _ in range(samples):
            t0 = time.perf_counter()
            await conn.request(raw)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        await conn.close()
    return times


async def pending_offchain(port: int) -> int:
    conn = Connection(port)
    try:
        status, body = await conn.request(get_bytes("/info"))
        if status != 200:
            raise RuntimeError(f"GET /info -> {status} {body!r}")
        return int(json.loads(body)["pending"]["offchain"])
    finally:
        await conn.close()


async def wait_idle(port: int, timeout: float) -> float:
    """Poll ``GET /info`` until no job is pending; the seconds it took (bounded by ``timeout``)."""
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while (pending := await pending_offchain(port)) != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{pending} jobs still pending {timeout:g} s later")
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


def throughput_dict(t: Throughput) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "rps": round(t.rps, 1),
        "requests": t.requests,
        "seconds": round(t.seconds, 3),
        "errors": t.errors,
        "reconnects": t.reconnects,
        "server_cpu": round(t.server_cpu, 3),
        "client_cpu": round(t.client_cpu, 3),
    }
    if t.other_cpu:
        figures["other_cpu"] = {name: round(value, 3) for name, value in t.other_cpu.items()}
    return figures


def latency_dict(lat: Latency) -> dict[str, Any]:
    return {
        "samples": len(lat.samples_ms),
        "p50_ms": round(lat.percentile(50), 3),
        "p90_ms": round(lat.percentile(90), 3),
        "p99_ms": round(lat.percentile(99), 3),
        "max_ms": round(max(lat.samples_ms), 3),
        "mean_ms": round(statistics.fmean(lat.samples_ms), 3),
        "mean_polls": round(lat.polls / len(lat.samples_ms), 3),
        "reconnects": lat.reconnects,
    }
