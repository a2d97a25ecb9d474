"""Readiness: can the node do its job right now (``GET /ready``)?

Liveness is ``/health`` (the process answers); readiness asks what the node depends on, all
at once and each within :data:`CHECK_TIMEOUT` seconds: the result store, every container
(managed ones running, the others accepting connections), and with the chain enabled the
RPC, the listener's snapshot and the wallet's balance against ``chain.wallet.min_balance``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlsplit

import anyio

from .errors import InfernetError

__all__ = ("CHECK_TIMEOUT", "Check", "port_answers", "run_checks")

CHECK_TIMEOUT = 2.0
"""Seconds each readiness check may take."""

Check = Callable[[], Awaitable[str | None]]
"""A readiness check: ``None`` when ready, else why not (one short sentence)."""


async def run_checks(checks: Mapping[str, Check], timeout: float = CHECK_TIMEOUT) -> dict[str, str]:
    """Run ``checks`` concurrently; return the name and reason of each one that is not ready
    (a check that raises or takes longer than ``timeout`` is not ready)."""
    problems: dict[str, str] = {}

    async def run(name: str, check: Check) -> None:
        try:
            with anyio.fail_after(timeout):
                reason = await check()
        except TimeoutError:
            reason = f"no answer within {timeout:g} s"
        except InfernetError as exc:
            reason = exc.message
        except Exception as exc:
            reason = f"failed ({type(exc).__name__})"
        if reason is not None:
            problems[name] = reason

    async with anyio.create_task_group() as tg:
        for name, check in checks.items():
            tg.start_soon(run, name, check)
    return dict(sorted(problems.items()))


async def port_answers(url: str) -> str | None:
    """``None`` if something accepts TCP connections where ``url`` points, else why not."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        stream = await anyio.connect_tcp(host, port)
    except OSError as exc:
        return f"{host}:{port} refuses connections ({exc.strerror or type(exc).__name__})"
    await stream.aclose()
    return None
