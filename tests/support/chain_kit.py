"""The real-chain test kit: compile and deploy the test contracts on anvil, drive its clock, sign.

* :func:`compile_contracts` compiles ``tests/contracts/*.sol`` with solc-js (``node
  tests/contracts/compile.js``), optionally caching the result in a directory, keyed on the
  sources, the script and the solc version.
* :func:`deploy_contracts` deploys a fresh ``EIP712Coordinator`` and a ``Consumer`` bound to it;
  :func:`deploy_v1_registry` deploys a ``Registry`` (the Infernet v1 address book) naming a
  ``V1CoordinatorStub`` (what the protocol probe reads of a v1 Coordinator);
  :func:`send` signs a contract call locally with one of anvil's default keys and mines it.
* :func:`register_and_activate`, :func:`increase_time`, :func:`mine`,
  :func:`set_next_block_timestamp` drive the node manager and the chain's clock.
* :func:`sign_delegated` signs a delegated subscription with eth-account's EIP-712 encoder
  (independently of ``infernet_core.eip712``, so the tests cross-check it; its digest is
  :func:`typed_data_digest`), and
  :func:`delegated_request_body` builds the REST body of a DelegatedSubscriptionRequest.
* :func:`revert_data` and :func:`selector` read and name reverts; :func:`interval_key`,
  :func:`responded_key` and :func:`delegate_key` are the Coordinator's mapping keys.

Roles of anvil's default accounts (mnemonic "test test ... junk"): ``DEPLOYER_KEY`` (account 0)
deploys and owns nothing in particular, ``NODE_KEYS`` (accounts 1-3) are node wallets,
``SIGNER_KEY`` (account 4) is the Consumer's delegated signer, ``STRANGER_KEY`` (account 5) is
anyone else (a wrong signer, an inactive node, a non-owner).
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError
from web3.types import RPCEndpoint, TxReceipt

__all__ = (
    "ANVIL_KEYS",
    "DEFAULT_MAX_GAS_LIMIT",
    "DEFAULT_MAX_GAS_PRICE",
    "DEPLOYER_KEY",
    "NODE_KEYS",
    "SIGNER_KEY",
    "STRANGER_KEY",
    "SUBSCRIPTION_FIELDS",
    "CompiledContract",
    "Deployment",
    "V1Deployment",
    "address_of",
    "block_timestamp",
    "compile_contracts",
    "connect",
    "delegate_key",
    "delegated_request_body",
    "delegated_sub",
    "unchecked_delegated_body",
    "deploy_contracts",
    "deploy_v1_registry",
    "increase_time",
    "interval_key",
    "mine",
    "register_and_activate",
    "responded_key",
    "revert_data",
    "rpc",
    "selector",
    "send",
    "set_next_block_timestamp",
    "sign_delegated",
    "solc_available",
    "sub_tuple",
    "typed_data_digest",
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = REPO_ROOT / "tests" / "contracts"
COMPILE_SCRIPT = CONTRACTS_DIR / "compile.js"
SOLC_PACKAGE = REPO_ROOT / "node_modules" / "solc" / "package.json"

# Private keys of anvil's first ten default accounts (mnemonic "test test ... test junk").
ANVIL_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)
DEPLOYER_KEY = ANVIL_KEYS[0]
NODE_KEYS: tuple[str, ...] = ANVIL_KEYS[1:4]
SIGNER_KEY = ANVIL_KEYS[4]
STRANGER_KEY = ANVIL_KEYS[5]

# Subscription limits generous enough for any test delivery (anvil's gas price is ~1-2 gwei).
DEFAULT_MAX_GAS_PRICE = 100 * 10**9
DEFAULT_MAX_GAS_LIMIT = 1_000_000

# The on-chain Subscription struct's fields, in order (also the EIP-712 type's).
SUBSCRIPTION_FIELDS: tuple[tuple[str, str], ...] = (
    ("owner", "address"),
    ("activeAt", "uint32"),
    ("period", "uint32"),
    ("frequency", "uint32"),
    ("redundancy", "uint16"),
    ("maxGasPrice", "uint48"),
    ("maxGasLimit", "uint32"),
    ("containerId", "string"),
    ("inputs", "bytes"),
)


@dataclass(frozen=True)
class CompiledContract:
    """A compiled contract: its ABI and creation bytecode (``0x``-hex)."""

    abi: list[dict[str, Any]]
    bytecode: str


@dataclass(frozen=True)
class V1Deployment:
    """A ``Registry`` (the Infernet v1 address book) and the ``V1CoordinatorStub`` it names."""

    registry: Contract
    coordinator: Contract
    other: Contract
    """A second ``V1CoordinatorStub``: the code-bearing stand-in for the Inbox, Reader, Fee and
    WalletFactory (the probe only checks that READER and WALLET_FACTORY have code)."""


@dataclass(frozen=True)
class Deployment:
    """A fresh Coordinator (the EIP712Coordinator) and a Consumer bound to it."""

    w3: Web3
    coordinator: Contract
    consumer: Contract


def solc_available() -> bool:
    """True if ``node`` is on the PATH and the ``solc`` npm package is installed."""
    return shutil.which("node") is not None and SOLC_PACKAGE.is_file()


def _sources_digest() -> str:
    digest = hashlib.sha256(SOLC_PACKAGE.read_bytes())
    for path in sorted(CONTRACTS_DIR.glob("*.sol")) + [COMPILE_SCRIPT]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:24]


def compile_contracts(cache_dir: Path | None = None) -> dict[str, CompiledContract]:
    """Compile ``tests/contracts`` with solc-js (a few seconds); the result by contract name.

    Args:
        cache_dir: If given, the output is kept there as ``contracts-<digest>.json`` (replacing
            older ones) and reused while the sources, compile.js and the solc package are unchanged.

    Raises:
        RuntimeError: node or solc is missing, or the compilation failed (the message has solc's errors).
    """
    if not solc_available():
        raise RuntimeError("node or the solc npm package is missing (run npm install, or scripts/test.sh)")
    cached = cache_dir / f"contracts-{_sources_digest()}.json" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        raw = cached.read_text()
    else:
        raw = _node(str(COMPILE_SCRIPT))
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            for stale in cached.parent.glob("contracts-*.json"):
                stale.unlink()
            cached.write_text(raw)
    contracts = json.loads(raw)["contracts"]
    return {name: CompiledContract(abi=c["abi"], bytecode=c["bytecode"]) for name, c in contracts.items()}


def _node(*args: str) -> str:
    done = subprocess.run(["node", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"solc-js failed:\n{done.stderr}")
    return done.stdout


def connect(rpc_url: str) -> Web3:
    """A synchronous Web3 on ``rpc_url`` (it caches ``eth_chainId`` only)."""
    provider = Web3.HTTPProvider(
        rpc_url,
        request_kwargs={"timeout": 30},
        cache_allowed_requests=True,
        cacheable_requests={RPCEndpoint("eth_chainId")},
    )
    return Web3(provider)


@functools.cache
def address_of(key: str) -> str:
    """The checksummed address of a private key."""
    return Account.from_key(key).address


def rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    """Call a raw JSON-RPC method (e.g. anvil's ``evm_*``); its result.

    Raises:
        RuntimeError: The node answered with an error.
    """
    response = w3.provider.make_request(RPCEndpoint(method), params)
    if "error" in response:
        raise RuntimeError(f"{method} failed: {response['error']}")
    return response.get("result")


def _send_raw(w3: Web3, tx: dict[str, Any], key: str) -> TxReceipt:
    signed = Account.sign_transaction(tx, key)
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction), timeout=30)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction {receipt['transactionHash'].hex()} reverted")
    return receipt


def send(w3: Web3, fn: ContractFunction, key: str, **tx: Any) -> TxReceipt:
    """Sign ``fn`` with ``key`` locally, send it and wait for its receipt (anvil mines at once).

    ``tx`` overrides transaction fields (``gas``, ``gasPrice``, ``value``...). Without ``gas`` the
    call is estimated first, so a reverting call raises web3's ContractLogicError (or one of its
    subclasses such as ContractCustomError) before anything is sent.

    Raises:
        RuntimeError: The transaction was mined but reverted.
    """
    sender = address_of(key)
    fields = {"from": sender, "nonce": w3.eth.get_transaction_count(sender, "pending"), **tx}
    return _send_raw(w3, fn.build_transaction(fields), key)  # type: ignore[arg-type]


def _deploy(w3: Web3, compiled: CompiledContract, *args: Any, key: str = DEPLOYER_KEY) -> Contract:
    factory = w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    sender = address_of(key)
    tx = factory.constructor(*args).build_transaction(
        {"from": sender, "nonce": w3.eth.get_transaction_count(sender, "pending")}
    )
    receipt = _send_raw(w3, tx, key)
    return w3.eth.contract(address=receipt["contractAddress"], abi=compiled.abi)


def deploy_contracts(
    w3: Web3, contracts: dict[str, CompiledContract], signer: str | None = None, *, key: str = DEPLOYER_KEY
) -> Deployment:
    """Deploy a fresh EIP712Coordinator and a Consumer on it whose delegated signer is ``signer``.

    Args:
        contracts: From :func:`compile_contracts`.
        signer: The Consumer's ``signer()``; by default ``SIGNER_KEY``'s address.
        key: The deployer's key.
    """
    coordinator = _deploy(w3, contracts["EIP712Coordinator"], key=key)
    consumer = _deploy(w3, contracts["Consumer"], coordinator.address, signer or address_of(SIGNER_KEY), key=key)
    return Deployment(w3=w3, coordinator=coordinator, consumer=consumer)


def deploy_v1_registry(
    w3: Web3, contracts: dict[str, CompiledContract], *, key: str = DEPLOYER_KEY, **addresses: str
) -> V1Deployment:
    """Deploy a ``V1CoordinatorStub`` as the Coordinator, another as everything else, and a
    ``Registry`` naming them.

    Args:
        contracts: From :func:`compile_contracts`.
        key: The deployer's key.
        addresses: Replace a constructor argument of the Registry: ``coordinator``, ``inbox``,
            ``reader``, ``fee`` or ``walletFactory`` (e.g. an address without code).
    """
    coordinator = _deploy(w3, contracts["V1CoordinatorStub"], key=key)
    other = _deploy(w3, contracts["V1CoordinatorStub"], key=key)
    names = ("coordinator", "inbox", "reader", "fee", "walletFactory")
    unknown = set(addresses) - set(names)
    if unknown:
        raise TypeError(f"unknown Registry constructor arguments: {sorted(unknown)}")
    defaults = {"coordinator": coordinator.address} | dict.fromkeys(names[1:], other.address)
    args = [addresses.get(name, defaults[name]) for name in names]
    registry = _deploy(w3, contracts["Registry"], *args, key=key)
    return V1Deployment(registry=registry, coordinator=coordinator, other=other)


def mine(w3: Web3) -> None:
    """Mine one (empty) block."""
    rpc(w3, "evm_mine", [])


def increase_time(w3: Web3, seconds: int) -> None:
    """Move the chain's clock forward by ``seconds`` and mine a block carrying the new time."""
    rpc(w3, "evm_increaseTime", [seconds])
    mine(w3)


def set_next_block_timestamp(w3: Web3, timestamp: int) -> None:
    """Make the next mined block (e.g. the next transaction's) carry exactly ``timestamp``."""
    rpc(w3, "evm_setNextBlockTimestamp", [timestamp])


def block_timestamp(w3: Web3) -> int:
    """The timestamp of the latest block."""
    return int(w3.eth.get_block("latest")["timestamp"])


def register_and_activate(w3: Web3, coordinator: Contract, *node_keys: str) -> None:
    """Register each node (itself the registerer), wait out the cooldown once, activate each."""
    for key in node_keys:
        send(w3, coordinator.functions.registerNode(address_of(key)), key)
    increase_time(w3, int(coordinator.functions.cooldown().call()))
    for key in node_keys:
        send(w3, coordinator.functions.activateNode(), key)


def selector(signature: str) -> bytes:
    """The 4-byte selector of a function or error signature, e.g. ``"NodeNotActive()"``."""
    return keccak(text=signature)[:4]


def revert_data(fn: ContractFunction, tx: dict[str, Any] | None = None) -> bytes:
    """``eth_call`` ``fn`` (with ``tx``: ``from``, ``gasPrice``...) and return its revert data.

    Raises:
        AssertionError: The call did not revert.
    """
    try:
        fn.call(tx or {})  # type: ignore[arg-type]
    except ContractLogicError as exc:
        data = exc.data if isinstance(exc.data, str) else "0x"  # None for a revert without data
        return bytes.fromhex(data.removeprefix("0x"))
    raise AssertionError(f"{fn.fn_name} did not revert")


def interval_key(subscription_id: int, interval: int) -> bytes:
    """The ``redundancyCount`` key: ``keccak256(abi.encode(uint32 id, uint32 interval))``."""
    return keccak(subscription_id.to_bytes(32, "big") + interval.to_bytes(32, "big"))


def responded_key(subscription_id: int, interval: int, node: str) -> bytes:
    """The ``nodeResponded`` key: ``keccak256(abi.encode(uint32 id, uint32 interval, address node))``."""
    return keccak(
        subscription_id.to_bytes(32, "big") + interval.to_bytes(32, "big") + bytes.fromhex(node[2:]).rjust(32, b"\0")
    )


def delegate_key(owner: str, nonce: int) -> bytes:
    """The ``delegateCreatedIds`` key: ``keccak256(abi.encode(address owner, uint32 nonce))``."""
    return keccak(bytes.fromhex(owner[2:]).rjust(32, b"\0") + nonce.to_bytes(32, "big"))


def delegated_sub(
    owner: str,
    *,
    active_at: int,
    container_id: str = "echo",
    period: int = 0,
    frequency: int = 1,
    redundancy: int = 1,
    max_gas_price: int = DEFAULT_MAX_GAS_PRICE,
    max_gas_limit: int = DEFAULT_MAX_GAS_LIMIT,
    inputs: bytes = b"",
) -> dict[str, Any]:
    """A Subscription as the EIP-712 message's ``sub``: on-chain field names, ``inputs`` as bytes."""
    return {
        "owner": Web3.to_checksum_address(owner),
        "activeAt": active_at,
        "period": period,
        "frequency": frequency,
        "redundancy": redundancy,
        "maxGasPrice": max_gas_price,
        "maxGasLimit": max_gas_limit,
        "containerId": container_id,
        "inputs": inputs,
    }


def sub_tuple(sub_fields: dict[str, Any]) -> tuple[Any, ...]:
    """The Subscription struct as an ABI tuple (fields in on-chain order), from a :func:`delegated_sub` dict."""
    return tuple(sub_fields[name] for name, _ in SUBSCRIPTION_FIELDS)


def _typed_message(
    chain_id: int, coordinator_address: str, sub_fields: dict[str, Any], nonce: int, expiry: int
) -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "DelegateSubscription": [
                {"name": "nonce", "type": "uint32"},
                {"name": "expiry", "type": "uint32"},
                {"name": "sub", "type": "Subscription"},
            ],
            "Subscription": [{"name": name, "type": kind} for name, kind in SUBSCRIPTION_FIELDS],
        },
        "primaryType": "DelegateSubscription",
        "domain": {
            "name": "InfernetCoordinator",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": coordinator_address,
        },
        "message": {"nonce": nonce, "expiry": expiry, "sub": sub_fields},
    }


def typed_data_digest(
    chain_id: int, coordinator_address: str, sub_fields: dict[str, Any], nonce: int, expiry: int
) -> bytes:
    """The EIP-712 digest of ``DelegateSubscription(nonce, expiry, sub)``, by eth-account's encoder."""
    signable = encode_typed_data(full_message=_typed_message(chain_id, coordinator_address, sub_fields, nonce, expiry))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def sign_delegated(
    chain_id: int, coordinator_address: str, sub_fields: dict[str, Any], nonce: int, expiry: int, signer_key: str
) -> tuple[int, int, int]:
    """Sign ``DelegateSubscription(nonce, expiry, sub)`` for the Coordinator's EIP-712 domain.

    Uses eth-account's full-message EIP-712 encoder. Returns ``(v, r, s)`` with ``v`` 27 or 28.
    """
    message = _typed_message(chain_id, coordinator_address, sub_fields, nonce, expiry)
    signed = Account.sign_typed_data(signer_key, full_message=message)
    return signed.v, signed.r, signed.s


def unchecked_delegated_body() -> dict[str, Any]:
    """A well-formed DelegatedSubscriptionRequest body that no check past parsing would pass
    (a made-up owner, a signature that recovers nobody): for paths that must answer before
    any signature is checked, such as a chain side that is down or not checked yet."""
    return {
        "subscription": {
            "owner": "0x" + "34" * 20,
            "container_id": "echo",
            "active_at": 0,
            "frequency": 1,
            "period": 0,
            "redundancy": 1,
            "max_gas_price": 1,
            "max_gas_limit": 1,
        },
        "signature": {"nonce": 1, "expiry": 2**32 - 1, "v": 27, "r": 1, "s": 1},
        "data": {},
    }


def delegated_request_body(
    sub_fields: dict[str, Any],
    nonce: int,
    expiry: int,
    signature: tuple[int, int, int],
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The REST JSON of a DelegatedSubscriptionRequest for a signed :func:`delegated_sub`.

    ``inputs`` becomes the string whose UTF-8 bytes are the on-chain ``inputs``; ``r`` and ``s``
    stay integers.
    """
    v, r, s = signature
    return {
        "subscription": {
            "owner": sub_fields["owner"],
            "container_id": sub_fields["containerId"],
            "active_at": sub_fields["activeAt"],
            "frequency": sub_fields["frequency"],
            "period": sub_fields["period"],
            "redundancy": sub_fields["redundancy"],
            "max_gas_price": sub_fields["maxGasPrice"],
            "max_gas_limit": sub_fields["maxGasLimit"],
            "inputs": sub_fields["inputs"].decode("utf-8"),
        },
        "signature": {"nonce": nonce, "expiry": expiry, "v": v, "r": r, "s": s},
        "data": data if data is not None else {},
    }
