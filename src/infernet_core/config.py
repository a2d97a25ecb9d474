"""Node configuration: the reference node's ``config.json``, validated once at start.

The keys and defaults follow the reference node's validated config (v1.3+), and the v0.2
layout is accepted too (``chain.coordinator_address``, top-level ``log_path`` and
``snapshot_sync``, container ports written as strings). Anything wrong fails with one
:class:`~infernet_core.errors.ConfigError` whose message names the key path
(``config: expected `int`, got `str` at server.port``). Keys we do not know are reported by
:func:`load_config` as warnings, so a typo does not go unnoticed.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec

from .errors import ConfigError

__all__ = (
    "ChainConfig",
    "ContainerConfig",
    "DockerConfig",
    "LogConfig",
    "NodeConfig",
    "RateLimitConfig",
    "RedisConfig",
    "ServerConfig",
    "SnapshotSyncConfig",
    "StoreConfig",
    "StoreKind",
    "WalletConfig",
    "load_config",
    "parse_config",
    "unknown_keys",
)

log = logging.getLogger(__name__)

_PRIVATE_KEY: Final = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{40}")

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]

# Networks allowed to call PUT /api/status by default: loopback plus the Docker bridge and
# home-LAN ranges the reference node admits, so containers it manages can report status.
DEFAULT_LOCAL_NETWORKS: Final = (
    "127.0.0.0/8",
    "::1/128",
    "172.17.0.0/16",
    "172.18.0.0/16",
    "172.19.0.0/16",
    "192.168.0.0/16",
)


class _Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """Base of config sections: immutable; unknown keys are warned about, not fatal."""


class ContainerConfig(_Config):
    """One container the node can run jobs on."""

    id: Annotated[str, msgspec.Meta(min_length=1)]
    image: str = ""
    url: str = ""
    bearer: str = ""
    port: Port = 3000
    external: bool = True
    description: str = ""
    allowed_ips: list[str] = []
    allowed_addresses: list[str] = []
    allowed_delegate_addresses: list[str] = []
    generates_proofs: bool = False
    command: str = ""
    env: dict[str, str] = {}
    volumes: list[str] = []
    gpu: bool = False
    network_mode: str = ""
    """Managed containers: Docker's network mode (``"host"``: share the host's network, no
    port publishing); empty for the default bridge, with ``port`` published to 3000 inside."""
    accepted_payments: dict[str, int] = {}
    timeout: PositiveFloat = 180.0
    """Seconds one call to this container may take, connection and response included."""
    max_concurrency: Annotated[int, msgspec.Meta(gt=0)] = 32
    """Calls in flight to this container at once; more wait their turn."""

    def __post_init__(self) -> None:
        for network in self.allowed_ips:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"allowed_ips entry {network!r} is not an IP network") from None

    @property
    def base_url(self) -> str:
        """Where the container's HTTP service lives: ``url`` if set, else its local port."""
        return self.url.rstrip("/") if self.url else f"http://localhost:{self.port}"


class RateLimitConfig(_Config):
    """Accepted for compatibility with the reference config."""

    num_requests: int = 60
    period: float = 60.0


class ServerConfig(_Config):
    """The REST server."""

    port: Port = 4000
    host: str = "0.0.0.0"
    rate_limit: RateLimitConfig | None = None
    max_body_bytes: Annotated[int, msgspec.Meta(gt=0)] = 1 << 20
    trusted_proxies: list[str] = []
    """Peers (CIDR) whose ``X-Forwarded-For`` header names the real client."""
    local_networks: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_LOCAL_NETWORKS))
    """Networks (CIDR) allowed to call ``PUT /api/status``."""

    def __post_init__(self) -> None:
        for name in ("trusted_proxies", "local_networks"):
            for network in getattr(self, name):
                try:
                    ipaddress.ip_network(network, strict=False)
                except ValueError:
                    raise ValueError(f"{name} entry {network!r} is not an IP network") from None


class SnapshotSyncConfig(_Config):
    """How the chain listener reads existing subscriptions at start."""

    sleep: float = 1.0
    batch_size: Annotated[int, msgspec.Meta(gt=0)] = 500
    starting_sub_id: Annotated[int, msgspec.Meta(ge=0)] = 0
    sync_period: PositiveFloat = 0.5


class WalletConfig(_Config):
    """The node's signing wallet."""

    max_gas_limit: Annotated[int, msgspec.Meta(gt=0)] = 5_000_000
    private_key: str = ""
    payment_address: str = ""
    allowed_sim_errors: list[str] = []


class ChainConfig(_Config):
    """The on-chain side."""

    enabled: bool = False
    rpc_url: str = ""
    trail_head_blocks: Annotated[int, msgspec.Meta(ge=0)] = 1
    registry_address: str = ""
    coordinator_address: str = ""
    wallet: WalletConfig | None = None
    snapshot_sync: SnapshotSyncConfig = SnapshotSyncConfig()

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        if not self.rpc_url:
            raise ValueError("rpc_url is required when the chain is enabled")
        if not (self.coordinator_address or self.registry_address):
            raise ValueError("coordinator_address is required when the chain is enabled")
        if self.wallet is None or not self.wallet.private_key:
            raise ValueError("wallet.private_key is required when the chain is enabled")
        if not _PRIVATE_KEY.fullmatch(self.wallet.private_key):
            raise ValueError("wallet.private_key must be 0x and 64 hex digits")
        for name in ("coordinator_address", "registry_address"):
            address = getattr(self, name)
            if address and not _ADDRESS.fullmatch(address):
                raise ValueError(f"{name} must be 0x and 40 hex digits, got {address!r}")


class DockerConfig(_Config):
    """Registry credentials for pulling container images."""

    username: str
    password: str


class LogConfig(_Config):
    """Log file settings (accepted for compatibility; the node logs to stderr)."""

    path: str = "infernet_node.log"
    max_file_size: int = 2**30
    backup_count: int = 2


class RedisConfig(_Config):
    """The reference node's Redis result store."""

    host: str = "redis"
    port: Port = 6379


StoreKind = Literal["memory", "sqlite", "redis"]


class StoreConfig(_Config):
    """Where job results live, and for how long."""

    kind: StoreKind | None = None
    """``None``: Redis when the config has a ``redis`` block, else the entry point's default
    (memory for an embedded ``Node``, sqlite for ``infernet-node --config``)."""
    path: str = "infernet-node.db"
    """The sqlite file."""
    url: str = ""
    """Redis URL (``redis://host:port/db``); default: the ``redis`` block's host and port."""
    prefix: str = "infernet"
    """Prefix of every Redis key, so several clusters can share one server."""
    pending_ttl: PositiveFloat = 15 * 60.0
    """Seconds a job may stay running before the store forgets it."""
    finished_ttl: PositiveFloat | None = None
    """Seconds a finished result is kept; ``None`` keeps it (subject to ``max_finished``)."""
    max_finished: Annotated[int, msgspec.Meta(gt=0)] | None = None
    """Finished results kept, oldest dropped first; ``None`` is unbounded (the memory store
    caps itself at 100,000)."""
    claim_idle: PositiveFloat = 30.0
    """Redis: seconds without a heartbeat after which another replica takes over a job."""


class NodeConfig(_Config):
    """The whole node configuration; ``NodeConfig()`` is a valid, empty node."""

    containers: list[ContainerConfig] = []
    chain: ChainConfig = ChainConfig()
    server: ServerConfig = ServerConfig()
    manage_containers: bool = True
    startup_wait: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    docker: DockerConfig | None = None
    remove_containers_on_stop: bool = False
    """Managed containers: remove (not just stop) the containers this node started when it stops."""
    redis: RedisConfig | None = None
    forward_stats: bool = True
    log: LogConfig | None = None
    log_path: str | None = None
    snapshot_sync: SnapshotSyncConfig | None = None
    store: StoreConfig = StoreConfig()
    rerun_interrupted: bool = False
    """Run a job again when its node died before finishing it (else it is failed)."""
    shutdown_grace: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    """Seconds a stopping node waits for running jobs before failing them."""
    stream_timeout: PositiveFloat = 60.0
    """Seconds a stream job (``POST /api/jobs/stream``) may take, reading included."""
    resources_timeout: PositiveFloat = 5.0
    """Seconds each container has to answer ``GET /resources``'s question."""

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for container in self.containers:
            if container.id in seen:
                raise ValueError(f"container id {container.id!r} is used twice")
            seen.add(container.id)

    def store_kind(self, default: StoreKind) -> StoreKind:
        """The store to use: the one named, else Redis if a ``redis`` block is given, else ``default``."""
        if self.store.kind is not None:
            return self.store.kind
        return "redis" if self.redis is not None else default

    def redis_url(self) -> str:
        """The Redis URL from ``store.url``, else from the ``redis`` block."""
        if self.store.url:
            return self.store.url
        redis = self.redis or RedisConfig()
        return f"redis://{redis.host}:{redis.port}/0"

    @property
    def coordinator(self) -> str:
        """The Coordinator address, whichever key the config used."""
        return self.chain.coordinator_address or self.chain.registry_address


def _key_path(msgspec_path: str) -> str:
    """Turn msgspec's ``$.a.b[0].c`` into ``a.b[0].c`` (or ``<root>``)."""
    path = msgspec_path.removeprefix("$").removeprefix(".")
    return path or "<root>"


def _describe(error: msgspec.ValidationError) -> str:
    text = str(error)
    message, sep, path = text.rpartition(" - at `")
    if not sep:
        return f"config: {text}"
    return f"config: {message[0].lower()}{message[1:]} at {_key_path(path.rstrip('`'))}"


def _normalise_v02(raw: dict[str, Any]) -> None:
    """Accept the v0.2 sample's container ports written as strings (``"3000"``)."""
    containers = raw.get("containers")
    if not isinstance(containers, list):
        return
    for entry in containers:
        if isinstance(entry, dict) and isinstance(entry.get("port"), str) and entry["port"].isdigit():
            entry["port"] = int(entry["port"])


def unknown_keys(raw: Any, struct_type: type[Any] = NodeConfig, prefix: str = "") -> list[str]:
    """List the key paths in ``raw`` that ``struct_type`` does not define (for warnings)."""
    found: list[str] = []
    if not isinstance(raw, Mapping):
        return found
    info = msgspec.inspect.type_info(struct_type)
    if not isinstance(info, msgspec.inspect.StructType):
        return found
    fields = {field.encode_name: field for field in info.fields}
    for key, value in raw.items():
        path = f"{prefix}{key}"
        field = fields.get(key)
        if field is None:
            found.append(path)
            continue
        found.extend(_unknown_in_value(value, field.type, path))
    return found


def _unknown_in_value(value: Any, field_type: msgspec.inspect.Type, path: str) -> list[str]:
    if isinstance(field_type, msgspec.inspect.UnionType):
        for member in field_type.types:
            if isinstance(member, msgspec.inspect.StructType):
                return unknown_keys(value, member.cls, f"{path}.")
        return []
    if isinstance(field_type, msgspec.inspect.StructType):
        return unknown_keys(value, field_type.cls, f"{path}.")
    if isinstance(field_type, msgspec.inspect.ListType) and isinstance(value, list):
        found: list[str] = []
        for index, item in enumerate(value):
            found.extend(_unknown_in_value(item, field_type.item_type, f"{path}[{index}]"))
        return found
    return []


def parse_config(raw: Any) -> NodeConfig:
    """Validate an already-decoded config object.

    Args:
        raw: The decoded JSON (normally a dict).

    Returns:
        The validated config.

    Raises:
        ConfigError: A key is missing, has the wrong type or a bad value; the message names
            its path.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a JSON object at the top level, got {type(raw).__name__}")
    _normalise_v02(raw)
    try:
        return msgspec.convert(raw, NodeConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def load_config(path: str | Path) -> NodeConfig:
    """Read, validate and return the config file at ``path``, warning about unknown keys.

    Raises:
        ConfigError: The file cannot be read, is not JSON, or is not a valid config.
    """
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror or exc}") from None
    try:
        raw = msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config: {path} is not valid JSON: {exc}") from None
    config = parse_config(raw)
    for key in unknown_keys(raw):
        log.warning("config: unknown key %s is ignored", key)
    return config
