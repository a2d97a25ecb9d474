"""Real-chain fixtures, shared by every test package (imported by ``tests/conftest.py``): one
anvil per session, the compiled test contracts, and a fresh Coordinator + Consumer per test
(so tests never share chain state).

They skip only when anvil, node or solc-js is not installed (``scripts/test.sh`` installs them).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from web3 import Web3

from support.anvil import anvil_available, start_anvil, stop_anvil
from support.chain_kit import (
    NODE_KEYS,
    CompiledContract,
    Deployment,
    compile_contracts,
    connect,
    deploy_contracts,
    register_and_activate,
    solc_available,
)


@pytest.fixture(scope="session")
def anvil_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The JSON-RPC URL of an anvil started for this session (chain id 31337, automine)."""
    if not anvil_available():
        pytest.skip("anvil is not installed (node_modules/.bin/anvil): run scripts/test.sh or npm install")
    proc, _port, rpc_url = start_anvil(tmp_path_factory.mktemp("anvil"))
    try:
        yield rpc_url
    finally:
        stop_anvil(proc)


@pytest.fixture(scope="session")
def chain_contracts(request: pytest.FixtureRequest) -> dict[str, CompiledContract]:
    """The compiled test contracts by name (kept in pytest's cache dir between sessions, when it is on)."""
    if not solc_available():
        pytest.skip("node or the solc npm package is not installed: run scripts/test.sh or npm install")
    cache = getattr(request.config, "cache", None)
    return compile_contracts(cache.mkdir("infernet-contracts") if cache is not None else None)


@pytest.fixture(scope="session")
def w3(anvil_url: str) -> Web3:
    """A synchronous Web3 on the session's anvil."""
    return connect(anvil_url)


@pytest.fixture
def deployment(w3: Web3, chain_contracts: dict[str, CompiledContract]) -> Deployment:
    """A fresh EIP712Coordinator and a Consumer on it (signer: ``SIGNER_KEY``); no node registered."""
    return deploy_contracts(w3, chain_contracts)


@pytest.fixture
def active_deployment(deployment: Deployment) -> Deployment:
    """``deployment`` with every key of ``NODE_KEYS`` registered and activated."""
    register_and_activate(deployment.w3, deployment.coordinator, *NODE_KEYS)
    return deployment


__all__ = ("active_deployment", "anvil_url", "chain_contracts", "deployment", "w3")
