"""Wire types: everything that crosses the REST API or the container protocol.

Two bases, chosen per direction:

* :class:`Inbound` -- request payloads. Frozen and keyword-only. Unknown keys are *ignored*
  rather than forbidden, because the seed API lets clients send extra keys (the reference's
  own client sends ``id``); a server-made id always wins.
* :class:`Record` -- things we produce or store. Frozen, keyword-only, and tolerant of
  unknown fields so that records written by a newer node still decode (new fields get
  defaults).

Decoders are built once, at import time, and shared.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

import msgspec

__all__ = (
    "ContainerError",
    "ContainerInfo",
    "ContainerInput",
    "ContainerOutput",
    "ContainerResult",
    "DelegatedSubscriptionRequest",
    "Destination",
    "ChainInfo",
    "Inbound",
    "JobRequest",
    "JobResult",
    "JobStatus",
    "NodeInfo",
    "PendingCounts",
    "Record",
    "Signature",
    "Source",
    "StatusUpdate",
    "SubscriptionRequest",
)

Uint16 = Annotated[int, msgspec.Meta(ge=0, le=2**16 - 1)]
Uint32 = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
Uint48 = Annotated[int, msgspec.Meta(ge=0, le=2**48 - 1)]
# msgspec only supports bounds that fit in an int64, so the upper bound of a uint256 is
# checked in Signature.__post_init__ instead.
Uint256 = Annotated[int, msgspec.Meta(ge=0)]
_UINT256_MAX = 2**256 - 1


class Inbound(msgspec.Struct, frozen=True, kw_only=True):
    """Base of request payloads: immutable, keyword-only, unknown keys ignored."""


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """Base of produced and stored values: immutable, keyword-only, schema-evolvable."""


class Source(enum.IntEnum):
    """Where a container's input comes from (the container protocol's ``source``)."""

    ONCHAIN = 0
    OFFCHAIN = 1
    STREAM = 2


Destination = Source
"""Where a container's output goes; same numbering as :class:`Source`."""

JobStatus = Literal["running", "success", "failed"]


class JobRequest(Inbound, frozen=True):
    """An off-chain compute request: run ``containers`` in order on ``data``."""

    containers: list[str]
    data: dict[str, Any]
    requires_proof: bool = False


class SubscriptionRequest(Inbound, frozen=True):
    """The subscription part of a delegated subscription (seed-era Coordinator fields)."""

    owner: str
    container_id: str
    active_at: Uint32
    frequency: Uint32
    period: Uint32
    redundancy: Uint16
    max_gas_price: Uint48
    max_gas_limit: Uint32
    inputs: str = ""


class Signature(Inbound, frozen=True):
    """The EIP-712 signature over a delegated subscription."""

    nonce: Uint32
    expiry: Uint32
    v: Annotated[int, msgspec.Meta(ge=0, le=255)]
    r: Uint256
    s: Uint256

    def __post_init__(self) -> None:
        for name in ("r", "s"):
            if getattr(self, name) > _UINT256_MAX:
                raise ValueError(f"Expected `{name}` <= 2**256 - 1")


class DelegatedSubscriptionRequest(Inbound, frozen=True):
    """A subscription signed off-chain, to be created and answered on-chain by this node."""

    subscription: SubscriptionRequest
    signature: Signature
    data: dict[str, Any]


class StatusUpdate(Inbound, frozen=True):
    """Body of ``PUT /api/status``: a non-Infernet container reporting a job's status."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    status: JobStatus
    containers: list[str]


class ContainerInput(Record, frozen=True):
    """What a container receives at ``POST /service_output``."""

    source: Source
    destination: Destination
    data: Any
    requires_proof: bool = False


class ContainerOutput(Record, frozen=True):
    """A container's successful output."""

    container: str
    output: Any


class ContainerError(Record, frozen=True):
    """A container's failure, with a message naming the cause."""

    container: str
    error: str


ContainerResult = ContainerOutput | ContainerError


class JobResult(Record, frozen=True, omit_defaults=True):
    """One job as ``GET /api/jobs?id=`` returns it.

    ``intermediate`` is present only when the caller asked for intermediate results.
    """

    id: str
    status: JobStatus
    result: ContainerOutput | ContainerError | None
    intermediate: list[ContainerOutput] | msgspec.UnsetType = msgspec.UNSET


class ContainerInfo(Record, frozen=True):
    """A container as ``GET /info`` lists it."""

    id: str
    image: str
    description: str
    external: bool


class PendingCounts(Record, frozen=True):
    """Jobs accepted but not finished, off-chain and on-chain."""

    offchain: int
    onchain: int


class ChainInfo(Record, frozen=True):
    """Whether the chain is enabled, and the node's wallet address when it is."""

    enabled: bool
    address: str


class NodeInfo(Record, frozen=True):
    """Body of ``GET /info``."""

    version: str
    containers: list[ContainerInfo]
    pending: PendingCounts
    chain: ChainInfo
