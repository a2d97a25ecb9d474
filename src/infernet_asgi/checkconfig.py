"""``infernet-node check-config``: is this config one the node can run on, here and now?

One line per check, in this order: the config itself, the result store (Redis answers a
ping; an SQLite file can be read, even while a node holds it, or can be created), each
container (something accepts connections at its URL), and with the chain enabled the RPC
(its chain id, against ``chain.chain_id`` when set) and the Coordinator address. The exit
status names the first class that failed, so scripts can tell them apart.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

import anyio

from infernet_core import ConfigError, InfernetError, load_config
from infernet_core.backends import build_backend
from infernet_core.config import NodeConfig
from infernet_core.readiness import CHECK_TIMEOUT, port_answers
from infernet_core.stores.sqlite.errors import describe

__all__ = ("EXIT", "check_config")

EXIT: Final = {"config": 2, "store": 3, "containers": 4, "chain": 5}
"""The exit status of each class of check, for the first that fails (0: all passed)."""


@dataclass(frozen=True, slots=True)
class _Check:
    kind: str
    name: str
    run: Callable[[], Awaitable[str]]
    """Says what it found when it passes; raises :class:`_Failed` (or anything) when not."""


class _Failed(Exception):
    pass


async def check_config(path: str | None, out: TextIO, timeout: float = CHECK_TIMEOUT * 5) -> int:
    """Run every check of the config at ``path``, print one line each to ``out``; return
    the exit status (:data:`EXIT`)."""
    if not path:
        print("FAIL config: no config given (--config or INFERNET_CONFIG_PATH)", file=out)
        return EXIT["config"]
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"FAIL config: {exc.message.removeprefix('config: ')}", file=out)
        return EXIT["config"]
    print(f"ok   config: {path} is valid", file=out)
    failed: list[str] = []
    for check in _checks(config):
        try:
            with anyio.fail_after(timeout):
                found = await check.run()
        except TimeoutError:
            print(f"FAIL {check.kind} {check.name}: no answer within {timeout:g} s", file=out)
        except _Failed as exc:
            print(f"FAIL {check.kind} {check.name}: {exc}", file=out)
        except InfernetError as exc:
            print(f"FAIL {check.kind} {check.name}: {exc.message}", file=out)
        except Exception as exc:
            print(f"FAIL {check.kind} {check.name}: {_words(exc)}", file=out)
        else:
            print(f"ok   {check.kind} {check.name}: {found}", file=out)
            continue
        failed.append(check.kind)
    return min((EXIT[kind] for kind in failed), default=0)


def _checks(config: NodeConfig) -> list[_Check]:
    checks = [_Check("store", config.store_kind("sqlite"), lambda: _store(config))]
    for container in config.containers:
        url = container.base_url
        checks.append(_Check("containers", container.id, lambda url=url: _answers(url)))  # type: ignore[misc]
    if config.chain.enabled:
        checks.append(_Check("chain", "rpc", lambda: _rpc(config)))
        checks.append(_Check("chain", "coordinator", lambda: _coordinator(config)))
    return checks


async def _store(config: NodeConfig) -> str:
    if config.store_kind("sqlite") == "sqlite":
        return await anyio.to_thread.run_sync(_sqlite_file, config.store.path)
    store, dispatcher = build_backend(config, default_kind="sqlite")
    try:
        await store.open()
        pending = await store.pending_count()
    finally:
        await dispatcher.aclose()
        await store.aclose()
    return f"answers ({pending} jobs pending)"


def _sqlite_file(path: str) -> str:
    """Read-only, so that it also checks the file of a node that is running (and holds it)."""
    file = Path(path)
    if not file.exists():
        folder = next((p for p in (file.parent, *file.parent.parents) if p.exists()), Path("/"))
        if not os.access(folder, os.W_OK):
            raise _Failed(f"{path} does not exist and {folder} is not writable")
        return f"{path} will be created"
    try:
        with closing(sqlite3.connect(f"file:{file}?mode=ro", uri=True)) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            jobs = db.execute("SELECT count(*) FROM jobs").fetchone()[0] if "jobs" in tables else 0
    except sqlite3.Error as exc:
        raise _Failed(f"{path}: {describe(exc)}") from None
    return f"{path} is readable ({jobs} jobs)"


async def _answers(url: str) -> str:
    problem = await port_answers(url)
    if problem is not None:
        raise _Failed(problem)
    return f"{url} accepts connections"


async def _rpc(config: NodeConfig) -> str:
    from infernet_core.chain.rpc import connect

    w3 = connect(config.chain.rpc_url)
    try:
        chain_id = await w3.eth.chain_id
        block = await w3.eth.block_number
    finally:
        await w3.provider.disconnect()
    expected = config.chain.chain_id
    if expected is not None and chain_id != expected:
        raise _Failed(f"chain id {chain_id}, but chain.chain_id is {expected}")
    return f"chain id {chain_id}, block {block}"


async def _coordinator(config: NodeConfig) -> str:
    from infernet_core.chain.protocol import address_key, probe_protocol, protocol_problem
    from infernet_core.chain.rpc import connect

    w3 = connect(config.chain.rpc_url)
    address = config.coordinator
    try:
        protocol = await probe_protocol(w3, address, attempts=1)
    finally:
        await w3.provider.disconnect()
    problem = protocol_problem(protocol, address, address_key(config))
    if problem is not None:
        raise _Failed(problem)
    return f"{address} is a v0.1 Coordinator"


def _words(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
