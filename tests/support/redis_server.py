"""Start and stop a throwaway ``redis-server`` on loopback, for tests that need a real Redis.

:func:`start_redis` runs ``redis-server --port P --bind 127.0.0.1 --save '' --appendonly no
--dir D`` (no persistence: a restart starts empty) on a free port (or the one given, to restart
a server where its clients expect it), and returns once it answers ``PING``. :func:`stop_redis`
stops it by PID. Nothing here needs the ``redis`` Python package: PING is spoken over a socket.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from functools import partial
from pathlib import Path

from support.processes import stop_process, wait_ready

__all__ = ("free_port", "redis_available", "start_redis", "stop_redis")

START_TIMEOUT = 10.0


def redis_available() -> bool:
    """True if a ``redis-server`` binary is on the PATH."""
    return shutil.which("redis-server") is not None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(tmp_dir: str | Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``redis-server`` on 127.0.0.1 and wait (bounded) until it answers PING.

    Args:
        tmp_dir: Its working directory (it writes nothing there but its log).
        port: The port; by default a free one (tried a few times, in case of a race).

    Returns:
        The process and its port.

    Raises:
        RuntimeError: It did not start; the message holds the end of its log.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
    tmp = Path(tmp_dir)
    tmp.mkdir(parents=True, exist_ok=True)
    attempts = 1 if port is not None else 3
    last_log = ""
    for _ in range(attempts):
        chosen = port if port is not None else free_port()
        log_path = tmp / f"redis-{chosen}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(chosen),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(tmp),
                    "--protected-mode",
                    "no",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp,
            )
        if wait_ready(proc, partial(_pings, chosen), START_TIMEOUT, 0.02):
            return proc, chosen
        stop_redis(proc)
        last_log = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"redis-server did not start:\n{last_log}")


def stop_redis(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Stop a server from :func:`start_redis` by its PID: SIGTERM, then SIGKILL if it lingers."""
    stop_process(proc, timeout)
