"""Helpers for the end-to-end tests: the real ``infernet-node`` command and real container
services, each a subprocess on loopback, started here and stopped by PID.

* :func:`start_node` runs ``infernet-node [--config FILE] --host H --port P`` on a free port,
  waits (bounded) until ``GET /health`` answers, and :meth:`NodeProcess.stop` sends SIGTERM
  and returns the exit status.
* :func:`start_services` runs ``container_service.py --mode MODE`` (see that file) for each
  service, side by side; each listens on 127.0.0.1 and reports its port.
* :func:`submit`, :func:`wait_done`: the REST calls most tests make.

Only loopback addresses are used: the node listens on 127.0.0.1 and clients connect from
127.0.0.1 or 127.0.0.2 (both loopback on Linux).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import httpx

HERE = Path(__file__).resolve().parent
SERVICE_SCRIPT = HERE / "container_service.py"
CLIENT_A = "127.0.0.1"
CLIENT_B = "127.0.0.2"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
JOB_TIMEOUT = 5.0
SLOW_DELAY = 1.0
"""Seconds the ``slow`` container service sleeps before answering."""


def node_command() -> list[str]:
    """The installed ``infernet-node`` script next to this interpreter, else ``-m``."""
    script = Path(sys.executable).parent / "infernet-node"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "infernet_asgi.cli"]


def subprocess_env() -> dict[str, str]:
    """The environment for child processes: no config path, no proxies."""
    env = {k: v for k, v in os.environ.items() if k != "INFERNET_CONFIG_PATH" and not k.lower().endswith("_proxy")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def client(source: str = CLIENT_A, **kwargs: Any) -> httpx.Client:
    """An HTTP client whose connections leave from ``source`` (a loopback address)."""
    # Plain HTTP only: verify=False just spares building a TLS context (~tens of ms) per client.
    transport = httpx.HTTPTransport(local_address=source, verify=False)
    return httpx.Client(transport=transport, trust_env=False, timeout=5.0, **kwargs)


class NodeProcess:
    """A running ``infernet-node`` subprocess."""

    def __init__(self, proc: subprocess.Popen[bytes], host: str, port: int, log: Path, log_file: BinaryIO) -> None:
        self.proc = proc
        self.host = host
        self.port = port
        self.base_url = f"http://{host}:{port}"
        self.log = log
        self._log_file = log_file

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        """Everything the node wrote to stdout and stderr so far."""
        return self.log.read_text(errors="replace")

    def client(self, source: str = CLIENT_A) -> httpx.Client:
        return client(source, base_url=self.base_url)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM by PID; return the exit status (killing it if it overstays ``timeout``)."""
        try:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                try:
                    return self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.kill(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
                    raise AssertionError(
                        f"infernet-node (pid {self.pid}) did not exit within {timeout}s of SIGTERM:\n{self.output()}"
                    ) from None
            return self.proc.returncode
        finally:
            self._log_file.close()


def write_config(directory: Path, config: dict[str, Any], name: str = "config.json") -> Path:
    path = directory / name
    path.write_text(json.dumps(config))
    return path


def start_node(
    directory: Path,
    config: dict[str, Any] | None = None,
    *,
    host: str = "127.0.0.1",
    env: dict[str, str] | None = None,
    attempts: int = 3,
) -> NodeProcess:
    """Start ``infernet-node`` (with ``config`` written to ``directory``, or the embedded default).

    Waits until ``GET /health`` answers 200; retries on another port if the chosen one was
    taken in the meantime. ``env`` replaces the default child environment.
    """
    args = node_command()
    if config is not None:
        # Each node gets its own result file (the sqlite default) unless the test names a store.
        config = {"store": {"path": str(directory / f"store-{uuid.uuid4().hex[:8]}.db")}, **config}
        args += ["--config", str(write_config(directory, config, f"config-{uuid.uuid4().hex[:8]}.json"))]
    for attempt in range(attempts):
        port = free_port(host)
        log = directory / f"node-{port}.log"
        log_file = log.open("wb")
        proc = subprocess.Popen(
            [*args, "--host", host, "--port", str(port), "--log-level", "INFO"],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env if env is not None else subprocess_env(),
            cwd=directory,
        )
        node = NodeProcess(proc, host, port, log, log_file)
        if _wait_healthy(node):
            return node
        status = node.stop()
        if "cannot listen" in node.output() and attempt + 1 < attempts:
            continue
        raise AssertionError(f"infernet-node did not become healthy (exit status {status}):\n{node.output()}")
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def running_node(directory: Path, config: dict[str, Any] | None = None, **kwargs: Any) -> Iterator[NodeProcess]:
    """A node for the duration of the block; on leaving, SIGTERM it and assert it exits 0."""
    node = start_node(directory, config, **kwargs)
    try:
        yield node
    finally:
        status = node.stop()
    assert status == 0, f"infernet-node exited with {status}:\n{node.output()}"


def _wait_healthy(node: NodeProcess) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    with client() as http:
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                return False
            try:
                response = http.get(f"{node.base_url}/health", timeout=1.0)
            except httpx.TransportError:
                time.sleep(0.02)
                continue
            if response.status_code == 200 and response.json() == {"status": "healthy"}:
                return True
            time.sleep(0.02)
    return False


class ServiceProcess:
    """A running ``container_service.py`` subprocess."""

    def __init__(self, proc: subprocess.Popen[bytes], mode: str, port: int) -> None:
        self.proc = proc
        self.mode = mode
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._http = client(base_url=self.url)

    def calls(self) -> list[dict[str, Any]]:
        """Every POST /service_output the service has received."""
        response = self._http.get("/calls")
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def calls_tagged(self, tag: str) -> list[dict[str, Any]]:
        """The calls whose ``data`` (at any chain depth) carries ``tag``."""
        return [call for call in self.calls() if tag in json.dumps(call["body"])]

    def kill(self) -> None:
        self._http.close()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_services(modes: dict[str, str], delay: float = SLOW_DELAY) -> dict[str, ServiceProcess]:
    """Start container services (name -> mode) side by side; wait until each accepts connections.

    If any fails to start, those already started are killed before the error propagates.
    """
    procs: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    started: dict[str, ServiceProcess] = {}
    try:
        for name, mode in modes.items():
            procs[name] = (
                mode,
                subprocess.Popen(
                    [sys.executable, str(SERVICE_SCRIPT), "--mode", mode, "--delay", str(delay)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    env=subprocess_env(),
                ),
            )
        for name, (mode, proc) in list(procs.items()):
            assert proc.stdout is not None
            line = proc.stdout.readline().decode()  # bounded by the per-test timeout
            if not line.startswith("LISTENING "):
                raise AssertionError(f"container service {name} ({mode}) did not start: {line!r}")
            started[name] = ServiceProcess(proc, mode, int(line.split()[1]))
            del procs[name]
            _wait_listening(started[name].port)
        return started
    except BaseException:
        for service in started.values():
            service.kill()
        for _, proc in procs.values():
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        raise


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def submit(http: httpx.Client, containers: list[str], data: dict[str, Any], **extra: Any) -> str:
    """POST /api/jobs and return the new job's id (asserting the response's shape)."""
    response = http.post("/api/jobs", json={"containers": containers, "data": data, **extra})
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["id"]
    assert isinstance(body["id"], str)
    assert uuid.UUID(body["id"]).version == 4
    return str(body["id"])


def get_result(http: httpx.Client, job_id: str, *, intermediate: bool = False) -> dict[str, Any]:
    params = {"id": job_id, **({"intermediate": "true"} if intermediate else {})}
    response = http.get("/api/jobs", params=params)
    assert response.status_code == 200, response.text
    results = response.json()
    assert isinstance(results, list) and len(results) == 1, results
    result: dict[str, Any] = results[0]
    assert result["id"] == job_id
    return result


def wait_done(
    http: httpx.Client, job_id: str, *, intermediate: bool = False, timeout: float = JOB_TIMEOUT
) -> dict[str, Any]:
    """Poll GET /api/jobs?id= until the job is no longer running (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        result = get_result(http, job_id, intermediate=intermediate)
        if result["status"] != "running":
            return result
        assert time.monotonic() < deadline, f"job {job_id} still running after {timeout}s"
        time.sleep(0.01)


def tag() -> str:
    """A unique marker to put in a job's data, to find that job's calls in a service's log."""
    return uuid.uuid4().hex
