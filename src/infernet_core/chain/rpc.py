"""Talking to the RPC: the web3 client, revert decoding, and retry with backoff.

Every chain failure the node can meet is sorted into one of two kinds here:

* :class:`Reverted` -- the chain answered, and the answer is "no" (a revert, named after the
  Coordinator's custom error when it is one). Retrying the same call will not help.
* anything else (connection refused, timeout, HTTP 429, a node's internal error) --
  transient: :func:`retrying` tries again with exponential backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

import anyio
from web3 import AsyncWeb3
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError

from ..backoff import RPC_CALL, Backoff
from .abi import ERROR_SELECTORS

__all__ = ("RPC_ERROR_HOOK", "ChainError", "Reverted", "connect", "reverted_from", "retrying")

RPC_ERROR_HOOK: ContextVar[Callable[[str], None] | None] = ContextVar("infernet_rpc_error_hook", default=None)
"""Told the kind (exception class name) of every failed RPC call that :func:`retrying` sees,
in the tasks started while it is set (the chain side sets it to count them in metrics)."""

log = logging.getLogger("infernet_core.chain")

T = TypeVar("T")


class ChainError(Exception):
    """A chain operation failed for good (after its retries)."""


class Reverted(ChainError):
    """A call or transaction reverted.

    Attributes:
        name: The custom error's name (``"IntervalMismatch"``), or the revert message.
        data: The raw revert data, ``b""`` when the RPC gave none.
    """

    def __init__(self, name: str, data: bytes = b"") -> None:
        super().__init__(name)
        self.name = name
        self.data = data


def reverted_from(exc: BaseException) -> Reverted | None:
    """The :class:`Reverted` that ``exc`` (raised by web3) stands for, or ``None`` if it is
    not a revert."""
    if isinstance(exc, Reverted):
        return exc
    if not isinstance(exc, ContractCustomError | ContractLogicError | ContractPanicError):
        return None
    raw = exc.data if isinstance(exc.data, str) else ""
    data = bytes.fromhex(raw.removeprefix("0x")) if raw.startswith("0x") else b""
    name = ERROR_SELECTORS.get(data[:4]) or (exc.message or str(exc)).removeprefix("execution reverted: ")
    return Reverted(name, data)


def connect(rpc_url: str, timeout: float = 10.0) -> AsyncWeb3[Any]:
    """An async web3 client for ``rpc_url``; each request gives up after ``timeout`` seconds.

    web3's own retrying is switched off: :func:`retrying` decides, with backoff, per call.
    """
    provider = AsyncWeb3.AsyncHTTPProvider(
        rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
    )
    return AsyncWeb3(provider)


async def retrying(
    call: Callable[[], Awaitable[T]],
    what: str,
    *,
    attempts: int | None = 5,
    backoff: Backoff = RPC_CALL,
) -> T:
    """Await ``call()`` until it succeeds, backing off between transient failures.

    A revert is not retried: it is raised as :class:`Reverted` at once.

    Args:
        call: Makes the awaitable afresh for each try.
        what: Named in log lines ("reading subscription 7").
        attempts: Tries before giving up; ``None`` retries for ever (for loops that must
            not stop, like the listener's).
        backoff: The delays between tries.

    Raises:
        Reverted: The call reverted.
        ChainError: It failed ``attempts`` times; the last cause is chained.
    """
    delays = backoff.delays()
    tries = 0
    while True:
        tries += 1
        try:
            return await call()
        except Exception as exc:
            revert = reverted_from(exc)
            if revert is not None:
                raise revert from None
            hook = RPC_ERROR_HOOK.get()
            if hook is not None:
                hook(type(exc).__name__)
            if attempts is not None and tries >= attempts:
                raise ChainError(f"{what} failed {tries} times: {_describe(exc)}") from exc
            delay = next(delays)
            log.warning("%s failed (try %d), retrying in %.1fs: %s", what, tries, delay, _describe(exc))
        await anyio.sleep(delay)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."
