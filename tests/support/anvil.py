"""Start and stop a throwaway ``anvil`` (Foundry's local chain) on loopback, for the chain tests.

:func:`start_anvil` runs ``anvil --host 127.0.0.1 --port P`` (default mnemonic accounts, chain id
31337, a block mined per transaction) on a free port, logging to a file in its work directory,
and returns once it answers ``eth_chainId``. :func:`stop_anvil` stops it by PID. The binary is
the npm package ``@foundry-rs/anvil-linux-amd64`` under ``<repo>/node_modules/.bin`` (installed
by ``scripts/test.sh``).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from functools import partial
from pathlib import Path

from support.processes import stop_process, wait_ready
from support.redis_server import free_port

__all__ = ("ANVIL_BINARY", "anvil_available", "start_anvil", "stop_anvil")

ANVIL_BINARY = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "anvil"
START_TIMEOUT = 15.0


def anvil_available() -> bool:
    """True if the anvil binary of the repository's npm packages is installed."""
    return ANVIL_BINARY.is_file()


def _answers(rpc_url: str) -> bool:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(rpc_url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=0.5) as response:
            return "result" in json.loads(response.read())
    except (OSError, ValueError):
        return False


def start_anvil(workdir: str | Path) -> tuple[subprocess.Popen[bytes], int, str]:
    """Start anvil on 127.0.0.1 and wait (bounded) until it answers ``eth_chainId``.

    Args:
        workdir: Its working directory; its log goes to ``anvil-<port>.log`` there.

    Returns:
        The process, its port and its JSON-RPC URL (``http://127.0.0.1:P``).

    Raises:
        RuntimeError: It is not installed or did not start; the message holds the end of its log.
    """
    if not anvil_available():
        raise RuntimeError(f"anvil is not installed at {ANVIL_BINARY} (run npm install, or scripts/test.sh)")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    last_log = ""
    for _ in range(3):  # a free port can be taken between free_port() and anvil's bind
        port = free_port()
        rpc_url = f"http://127.0.0.1:{port}"
        log_path = work / f"anvil-{port}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [str(ANVIL_BINARY), "--host", "127.0.0.1", "--port", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=work,
            )
        if wait_ready(proc, partial(_answers, rpc_url), START_TIMEOUT, 0.05):
            return proc, port, rpc_url
        stop_anvil(proc)
        last_log = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"anvil did not start:\n{last_log}")


def stop_anvil(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Stop a server from :func:`start_anvil` by its PID: SIGTERM, then SIGKILL if it lingers."""
    stop_process(proc, timeout)
