"""The node's chain side (needs the ``chain`` extra: ``pip install 'infernet-core[chain]'``).

* :mod:`.rpc` -- the web3 client, revert decoding, retry with backoff;
* :mod:`.coordinator` -- the Coordinator and consumer contracts, read and called;
* :mod:`.wallet` -- local signing, nonces, simulation before sending;
* :mod:`.processor` -- runs and delivers each subscription's intervals;
* :mod:`.listener` -- the start-up snapshot, then the Coordinator's events;
* :mod:`.runtime` -- all of it assembled for one node.
"""

from __future__ import annotations

import sys

_recursion_limit = sys.getrecursionlimit()

from .runtime import ChainRuntime  # noqa: E402

# py_ecc (imported by eth-account) raises the recursion limit to 100,000 when imported. At
# that depth msgspec's nesting guard overflows the C stack instead of raising RecursionError,
# so one deeply nested JSON body would crash the node. Put the limit back.
sys.setrecursionlimit(_recursion_limit)

__all__ = ("ChainRuntime",)
