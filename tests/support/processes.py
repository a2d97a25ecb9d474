"""Waiting for the services the tests start, and stopping them by PID."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

__all__ = ("stop_process", "wait_ready")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM ``proc``, then SIGKILL if it lingers past ``timeout`` seconds; reap it either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def wait_ready(proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float, interval: float) -> bool:
    """Poll ``ready()`` every ``interval`` seconds: True once it holds, False if ``proc`` exits
    or ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            return True
        time.sleep(interval)
    return False
