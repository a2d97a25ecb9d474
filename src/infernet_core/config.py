"""Node configuration: the reference node's ``config.json``, validated once at start.

The keys and defaults follow the reference node's validated config (v1.3+), and the v0.2
layout is accepted too (``chain.coordinator_address``, top-level ``log_path``, top-level
``snapshot_sync`` read as ``chain.snapshot_sync``, container ports written as strings).
Anything wrong fails with one :class:`~infernet_core.errors.ConfigError` whose message names
the key path (``config: expected `int`, got `str` at server.port``). Keys we do not know are
reported by :func:`load_config` as warnings, so a typo does not go unnoticed, and keys we
know but do not act on are listed by :meth:`NodeConfig.ignored_settings`, which the node
logs at start.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec

from .config_sources import apply_environment, read_secret_files
from .decode_errors import describe_decode_error, describe_validation_error
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


class ContainerConfig(_Config, frozen=True):
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


class RateLimitConfig(_Config, frozen=True):
    """The reference's request rate limit (GCRA): ``num_requests`` per ``period`` seconds per
    endpoint and client address, in bursts of up to ``num_requests``."""

    num_requests: Annotated[int, msgspec.Meta(gt=0)] = 60
    period: Annotated[float, msgspec.Meta(gt=0)] = 60.0


class ServerConfig(_Config, frozen=True):
    """The REST server."""

    port: Port = 4000
    host: str = "0.0.0.0"
    rate_limit: RateLimitConfig | None = None
    max_body_bytes: Annotated[int, msgspec.Meta(gt=0)] = 1 << 20
    max_pending: Annotated[int, msgspec.Meta(gt=0)] = 10_000
    """Off-chain jobs this node holds at once (running, queued for a container, or waiting
    to be admitted); more are answered 503 with ``Retry-After`` at once. A pending job costs
    about 10 KiB."""
    max_queued: Annotated[int, msgspec.Meta(gt=0)] = 1024
    """Jobs running or queued for a container beyond which a new request waits for one to
    end (up to ``admission_wait``) before it is admitted: admission keeps pace with the
    containers instead of piling up a backlog."""
    admission_wait: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    """Seconds a request may wait for room (``max_queued``) before it is answered 503."""
    max_depth: Annotated[int, msgspec.Meta(ge=2, le=256)] = 64
    """Nesting levels of arrays and objects allowed in a request's JSON (the envelope counts
    one); deeper data is answered 400 naming the limit. A container output nested deeper
    fails its job."""
    max_batch: Annotated[int, msgspec.Meta(gt=0)] = 1000
    """Requests in one ``POST /api/jobs/batch``; more are answered 413 naming the limit."""
    body_timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """Seconds a request's body may take to arrive; a slower one is answered 408 and its
    connection closed."""
    metrics: bool | None = None
    """Count Prometheus metrics and serve them at ``GET /metrics``. Unset: on in
    ``infernet-node``, off for an embedded ``Node`` (which then pays nothing for them)."""
    max_connections: Annotated[int, msgspec.Meta(gt=0)] = 4096
    """Open client connections this node serves at once; beyond it a new connection is closed
    at once, so that the node keeps answering those it has (``/health`` among them)."""
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


class SnapshotSyncConfig(_Config, frozen=True):
    """How the chain listener reads existing subscriptions at start."""

    sleep: float = 1.0
    batch_size: Annotated[int, msgspec.Meta(gt=0)] = 500
    starting_sub_id: Annotated[int, msgspec.Meta(ge=0)] = 0
    sync_period: PositiveFloat = 0.5


class WalletConfig(_Config, frozen=True):
    """The node's signing wallet."""

    max_gas_limit: Annotated[int, msgspec.Meta(gt=0)] = 5_000_000
    private_key: str = ""
    payment_address: str = ""
    allowed_sim_errors: list[str] = []
    min_balance: Annotated[int, msgspec.Meta(ge=0)] = 0
    """Wei the wallet must hold for ``GET /ready`` to say the node is ready."""


class ChainConfig(_Config, frozen=True):
    """The on-chain side."""

    enabled: bool = False
    rpc_url: str = ""
    chain_id: int | None = None
    """The chain the RPC must serve (``infernet-node check-config`` compares it); unset: any."""
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


class DockerConfig(_Config, frozen=True):
    """Registry credentials for pulling container images."""

    username: str
    password: str


class LogConfig(_Config, frozen=True):
    """How the node logs. The reference's file settings (``path``, ``max_file_size``,
    ``backup_count``) are read, not acted on: the node logs to stderr."""

    format: Literal["text", "json"] = "text"
    """``json``: one JSON object per line (``--log-format`` overrides it)."""
    access: bool = False
    """One INFO line per HTTP request (method, path, status, duration, client)."""
    path: str | None = None
    max_file_size: int | None = None
    backup_count: int | None = None

    @property
    def names_a_file(self) -> bool:
        """Whether any of the reference's file settings is given."""
        return self.path is not None or self.max_file_size is not None or self.backup_count is not None


class RedisConfig(_Config, frozen=True):
    """The reference node's Redis result store."""

    host: str = "redis"
    port: Port = 6379


StoreKind = Literal["memory", "sqlite", "redis"]


class StoreConfig(_Config, frozen=True):
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
    claim_idle: PositiveFloat = 15.0
    """Redis: seconds a replica's lease lasts; a thread of its own renews it every fifth of
    that, and once it has expired (the replica died) a survivor takes over its jobs."""


class NodeConfig(_Config, frozen=True):
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
    forward_stats: bool = False
    """The reference forwards stats to fluent-bit (its default: true); this node does not,
    and warns at start when it is asked to."""
    log: LogConfig | None = None
    log_path: str | None = None
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
        if self.chain.enabled:
            payment_keys = [f"containers[{c.id}].accepted_payments" for c in self.containers if c.accepted_payments]
            if self.chain.wallet is not None and self.chain.wallet.payment_address:
                payment_keys.insert(0, "chain.wallet.payment_address")
            if payment_keys:
                raise ValueError(
                    f"{', '.join(payment_keys)}: Infernet v1 payments are not served; this node serves the"
                    " seed-era (SDK v0.1) Coordinator, which takes no payments: remove the key to run on it"
                )

    def ignored_settings(self) -> list[str]:
        """One sentence for each setting this config gives that the node reads but does not
        act on; the node logs each as a warning at start."""
        ignored: list[str] = []
        if self.forward_stats:
            ignored.append("forward_stats is not supported: no stats are forwarded")
        if (self.log is not None and self.log.names_a_file) or self.log_path is not None:
            key = "log" if self.log is not None and self.log.names_a_file else "log_path"
            ignored.append(f"{key} is not acted on: the node logs to stderr")
        wallet = self.chain.wallet
        if wallet is not None and wallet.payment_address:
            ignored.append("chain.wallet.payment_address is an Infernet v1 payment setting: no payments are taken")
        for container in self.containers:
            if container.accepted_payments:
                ignored.append(
                    f"containers[{container.id}].accepted_payments is an Infernet v1 payment setting:"
                    " no payments are taken"
                )
        return ignored

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
    message, path = describe_validation_error(error)
    where = _key_path(path)
    message = f"{message[0].lower()}{message[1:]}"
    return f"config: {message}" if where == "<root>" else f"config: {message} at {where}"


def _normalised(raw: Any) -> dict[str, Any]:
    """The v0.2 layout read as today's, in a new dict (``raw`` is left as it was).

    * container ports written as strings (``"3000"``) become numbers;
    * a top-level ``snapshot_sync`` (v0.2) becomes ``chain.snapshot_sync``, unless the chain
      section has its own, which then wins.

    Raises:
        ConfigError: ``raw`` is not a JSON object.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a JSON object at the top level, got {type(raw).__name__}")
    result = dict(raw)
    containers = raw.get("containers")
    if isinstance(containers, list):
        result["containers"] = [_port_as_number(entry) for entry in containers]
    if "snapshot_sync" in raw:
        snapshot = result.pop("snapshot_sync")
        chain = raw.get("chain", {})
        if isinstance(chain, dict) and "snapshot_sync" not in chain:
            result["chain"] = {**chain, "snapshot_sync": snapshot}
    return result


def _validated(raw: dict[str, Any]) -> NodeConfig:
    try:
        return msgspec.convert(raw, NodeConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _port_as_number(entry: Any) -> Any:
    if isinstance(entry, dict) and isinstance(entry.get("port"), str) and entry["port"].isdigit():
        return {**entry, "port": int(entry["port"])}
    return entry


def unknown_keys(raw: Any, struct_type: type[Any] = NodeConfig, prefix: str = "") -> list[str]:
    """List the key paths in ``raw`` that ``struct_type`` does not define (for warnings).

    A whole config (``struct_type`` NodeConfig) is read in today's layout first, as
    :func:`parse_config` reads it (a v0.2 top-level ``snapshot_sync`` is ``chain``'s).
    """
    found: list[str] = []
    if not isinstance(raw, Mapping):
        return found
    if struct_type is NodeConfig and not prefix and isinstance(raw, dict):
        raw = _normalised(raw)
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
    return _validated(_normalised(raw))


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Read, validate and return the config file at ``path``, warning about unknown keys.

    ``INFERNET_*`` environment variables override its keys, and ``<key>_file`` keys read
    secrets from files (see :mod:`infernet_core.config_sources`).

    Args:
        path: The config file.
        environ: The environment to read overrides from (default: ``os.environ``).

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
        raise ConfigError(f"config: {path} is not valid JSON: {describe_decode_error(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a JSON object at the top level, got {type(raw).__name__}")
    for key in apply_environment(raw, os.environ if environ is None else environ, NodeConfig):
        log.info("config: %s is set by the environment", key)
    read_secret_files(raw)
    config = parse_config(raw)
    for key in unknown_keys(raw):
        log.warning("config: unknown key %s is ignored", key)
    chain = raw.get("chain")
    if "snapshot_sync" in raw and isinstance(chain, dict) and "snapshot_sync" in chain:
        log.warning("config: snapshot_sync at the top level (v0.2) is ignored: chain.snapshot_sync is set")
    return config
