"""Stopping the services the tests start, by PID."""

from __future__ import annotations

import subprocess

__all__ = ("stop_process",)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM ``proc``, then SIGKILL if it lingers past ``timeout`` seconds; reap it either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
