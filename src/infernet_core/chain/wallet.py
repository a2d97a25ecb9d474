"""The node's wallet: signs locally, owns the nonce, simulates before it spends gas.

Sending is serialised under one lock, so two deliveries never race for a nonce (the
reference node once put several transactions on one nonce). Each transaction is:

1. priced: the RPC's gas price, refused outright when above the subscription's
   ``maxGasPrice`` (the Coordinator would revert with ``GasPriceExceeded``);
2. simulated with ``eth_call`` from the wallet at that price and gas limit; a revert is
   raised as :class:`~infernet_core.chain.rpc.Reverted` and nothing is sent, unless its
   text contains one of ``allowed_sim_errors`` (then it is sent with the full gas limit);
3. signed locally and sent raw; a nonce complaint reloads the nonce and re-signs, other
   transient errors back off; a bounded number of tries in all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

import anyio
from eth_account import Account
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from web3 import AsyncWeb3
from web3.types import TxParams, TxReceipt

from .rpc import ChainError, Reverted, retrying, reverted_from

__all__ = ("GasPriceTooHigh", "Wallet")

log = logging.getLogger("infernet_core.chain.wallet")


class GasPriceTooHigh(ChainError):
    """The network's gas price is above what the subscription pays; nothing was sent."""


class Wallet:
    """Signs and sends the node's transactions.

    Args:
        w3: The async web3 client.
        private_key: The node's key (``0x``-prefixed hex).
        max_gas_limit: The most gas any one transaction may use (config
            ``wallet.max_gas_limit``).
        allowed_sim_errors: Substrings (case-insensitive) of simulation errors to ignore.
        attempts: Tries at sending one transaction.
    """

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        private_key: str,
        *,
        max_gas_limit: int,
        allowed_sim_errors: Sequence[str] = (),
        attempts: int = 4,
    ) -> None:
        self._w3 = w3
        self._account = Account.from_key(private_key)
        self.address: ChecksumAddress = self._account.address
        self.max_gas_limit = max_gas_limit
        self._allowed = tuple(text.lower() for text in allowed_sim_errors)
        self._attempts = attempts
        self._lock = anyio.Lock()
        self._nonce: int | None = None
        self._chain_id: int | None = None

    async def chain_id(self) -> int:
        """The chain's id (read once)."""
        if self._chain_id is None:
            self._chain_id = await retrying(lambda: self._w3.eth.chain_id, "reading the chain id")
        return self._chain_id

    async def transact(self, to: str, data: bytes, *, gas_limit: int, max_gas_price: int | None = None) -> bytes:
        """Simulate, sign and send one transaction; return its hash (not waiting for it).

        Args:
            to: The contract called.
            data: The calldata.
            gas_limit: Wanted gas limit; capped at ``max_gas_limit``.
            max_gas_price: The highest gas price (wei) allowed, if any.

        Raises:
            GasPriceTooHigh: The gas price is above ``max_gas_price``.
            Reverted: The simulation reverted (with an error not allowed).
            ChainError: The transaction could not be sent.
        """
        gas = min(gas_limit, self.max_gas_limit)
        async with self._lock:
            gas_price = await retrying(lambda: self._w3.eth.gas_price, "reading the gas price")
            if max_gas_price is not None and gas_price > max_gas_price:
                raise GasPriceTooHigh(f"gas price {gas_price} wei is above the subscription's {max_gas_price}")
            tx: dict[str, Any] = {"from": self.address, "to": to, "data": data, "gas": gas, "gasPrice": gas_price}
            if not await self._simulate(tx):
                tx["gas"] = self.max_gas_limit
            return await self._send(tx)

    async def wait(self, tx_hash: bytes, timeout: float = 120.0) -> TxReceipt:
        """Wait for ``tx_hash`` to be mined and return its receipt.

        Raises:
            ChainError: It was not mined within ``timeout`` seconds (or the RPC kept failing).
        """
        try:
            return await self._w3.eth.wait_for_transaction_receipt(
                HexBytes(tx_hash), timeout=timeout, poll_latency=0.05
            )
        except Exception as exc:
            raise ChainError(f"no receipt for 0x{tx_hash.hex()}: {exc}") from exc

    async def _simulate(self, tx: dict[str, Any]) -> bool:
        """``eth_call`` the transaction. True if it passed; False if it failed with an allowed
        error (send anyway, with the full gas limit).

        Raises:
            Reverted: It reverted with an error not allowed.
        """
        try:
            await retrying(lambda: self._w3.eth.call(cast(TxParams, tx)), "simulating a transaction", attempts=3)
            return True
        except Reverted as revert:
            if any(allowed in revert.name.lower() for allowed in self._allowed):
                log.info("simulation failed with an allowed error (%s); sending anyway", revert.name)
                return False
            raise

    async def _send(self, tx: dict[str, Any]) -> bytes:
        chain_id = await self.chain_id()
        last_error: Exception | None = None
        for attempt in range(1, self._attempts + 1):
            if self._nonce is None:
                self._nonce = await retrying(
                    lambda: self._w3.eth.get_transaction_count(self.address, "pending"), "reading the nonce"
                )
            nonce = self._nonce
            signed = self._account.sign_transaction({**tx, "nonce": nonce, "chainId": chain_id})
            try:
                tx_hash = bytes(await self._w3.eth.send_raw_transaction(signed.raw_transaction))
            except Exception as exc:
                revert = reverted_from(exc)
                if revert is not None:
                    raise revert from None
                last_error = exc
                if "nonce" in str(exc).lower():
                    log.warning("nonce %d refused (%s); reloading it", self._nonce, exc)
                    self._nonce = None
                else:
                    log.warning("sending a transaction failed (try %d): %s", attempt, exc)
                    await anyio.sleep(0.2 * attempt)
                continue
            self._nonce = nonce + 1
            return tx_hash
        raise ChainError(f"failed sending a transaction after {self._attempts} tries: {last_error}")
