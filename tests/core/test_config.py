"""Config: the reference node's config.json, validated once, errors naming the key path."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from infernet_core import ConfigError, ContainerConfig, NodeConfig, load_config, parse_config
from infernet_core.config import DEFAULT_LOCAL_NETWORKS, SnapshotSyncConfig, unknown_keys

CHAIN_OK: dict[str, Any] = {
    "enabled": True,
    "rpc_url": "http://127.0.0.1:8545",
    "coordinator_address": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "wallet": {"private_key": "0x" + "1" * 64},
}

# The reference v0.2.0 sample config, as a user would have it.
V02_SAMPLE: dict[str, Any] = {
    "log_path": "infernet_node.log",
    "server": {"port": 4000},
    "chain": {
        "enabled": False,
        "trail_head_blocks": 0,
        "rpc_url": "http://127.0.0.1:8545",
        "coordinator_address": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "wallet": {"max_gas_limit": 4000000, "private_key": "0x" + "ab" * 32},
    },
    "startup_wait": 1.0,
    "docker": {"username": "user", "password": "pass"},
    "redis": {"host": "redis", "port": 6379},
    "forward_stats": True,
    "snapshot_sync": {"sleep": 3, "batch_size": 100},
    "containers": [
        {
            "id": "hello-world",
            "image": "ritualnetwork/hello-world-infernet:latest",
            "external": True,
            "port": "3000",
            "allowed_delegate_addresses": [],
            "allowed_addresses": [],
            "allowed_ips": [],
            "command": "--bind=0.0.0.0:3000 --workers=2",
            "env": {},
        }
    ],
}


def config_error(raw: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.code == "config.invalid"
    assert info.value.message.startswith("config: ")
    return info.value.message


# -- defaults -------------------------------------------------------------------------------------


def test_empty_config_defaults() -> None:
    config = parse_config({})
    assert config == NodeConfig()
    assert config.containers == []
    assert config.manage_containers is True
    assert config.startup_wait == 5.0
    assert config.forward_stats is False  # the reference's default is true; we forward none
    assert config.docker is None and config.redis is None and config.log is None
    assert config.store.pending_ttl == 900.0
    assert config.store.max_finished is None and config.store.finished_ttl is None
    assert config.store_kind("memory") == "memory" and config.rerun_interrupted is False
    assert config.shutdown_grace == 5.0
    assert config.server.port == 4000
    assert config.server.host == "0.0.0.0"
    assert config.server.max_body_bytes == 1 << 20
    assert config.server.trusted_proxies == []
    assert config.server.local_networks == list(DEFAULT_LOCAL_NETWORKS)
    assert config.chain.enabled is False
    assert config.chain.trail_head_blocks == 1
    assert config.chain.wallet is None
    assert config.chain.snapshot_sync.batch_size == 500
    assert config.coordinator == ""


def test_container_defaults() -> None:
    container = parse_config({"containers": [{"id": "a"}]}).containers[0]
    assert container == ContainerConfig(id="a")
    assert (container.image, container.url, container.bearer, container.port) == ("", "", "", 3000)
    assert container.external is True
    assert container.generates_proofs is False
    assert (
        container.allowed_ips == [] and container.allowed_addresses == [] and container.allowed_delegate_addresses == []
    )
    assert container.timeout == 180.0
    assert container.base_url == "http://localhost:3000"


@pytest.mark.parametrize(
    ("entry", "base"),
    [
        ({"id": "a", "port": 5005}, "http://localhost:5005"),
        ({"id": "a", "url": "http://10.1.1.1:9000/"}, "http://10.1.1.1:9000"),
        ({"id": "a", "url": "https://svc.example/api", "port": 1}, "https://svc.example/api"),
    ],
)
def test_container_base_url(entry: dict[str, Any], base: str) -> None:
    assert parse_config({"containers": [entry]}).containers[0].base_url == base


def test_v02_sample_is_accepted() -> None:
    config = parse_config(json.loads(json.dumps(V02_SAMPLE)))
    container = config.containers[0]
    assert container.port == 3000  # the sample writes it as the string "3000"
    assert container.command == "--bind=0.0.0.0:3000 --workers=2"
    assert config.coordinator == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert config.chain.wallet is not None and config.chain.wallet.max_gas_limit == 4_000_000
    assert config.log_path == "infernet_node.log"
    # v0.2's top-level snapshot_sync is the chain's (its other keys keep their defaults)
    assert config.chain.snapshot_sync == SnapshotSyncConfig(sleep=3, batch_size=100)
    assert config.docker is not None and config.docker.username == "user"
    assert config.redis is not None and config.redis.port == 6379
    assert config.startup_wait == 1.0


def test_v02_sample_has_no_unknown_keys() -> None:
    assert unknown_keys(json.loads(json.dumps(V02_SAMPLE))) == []


def test_registry_address_is_the_coordinator_too() -> None:
    config = parse_config({"chain": {"registry_address": "0xreg"}})
    assert config.coordinator == "0xreg"
    both = parse_config({"chain": {"registry_address": "0xreg", "coordinator_address": "0xcoord"}})
    assert both.coordinator == "0xcoord"


def test_chain_enabled_with_everything_is_valid() -> None:
    config = parse_config({"chain": CHAIN_OK})
    assert config.chain.enabled is True
    assert config.chain.wallet is not None and config.chain.wallet.private_key == "0x" + "1" * 64


# -- errors name the key path -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"server": {"port": "4000"}}, "config: expected `int`, got `str` at server.port"),
        ({"server": {"port": 70000}}, "config: expected `int` <= 65535 at server.port"),
        ({"server": {"port": -1}}, "config: expected `int` >= 0 at server.port"),
        ({"server": {"max_body_bytes": 0}}, "config: expected `int` >= 1 at server.max_body_bytes"),
        ({"server": "4000"}, "config: expected `object`, got `str` at server"),
        ({"containers": [{"id": 1}]}, "config: expected `str`, got `int` at containers[0].id"),
        ({"containers": [{"id": ""}]}, "config: expected `str` of length >= 1 at containers[0].id"),
        ({"containers": [{"image": "x"}]}, "config: object missing required field `id` at containers[0]"),
        (
            {"containers": [{"id": "a"}, {"id": "b", "external": "yes"}]},
            "config: expected `bool`, got `str` at containers[1].external",
        ),
        ({"containers": [{"id": "a", "port": "abc"}]}, "config: expected `int`, got `str` at containers[0].port"),
        ({"containers": [{"id": "a", "port": "70000"}]}, "config: expected `int` <= 65535 at containers[0].port"),
        ({"containers": [{"id": "a", "env": {"K": 1}}]}, "config: expected `str`, got `int` at containers[0].env[...]"),
        (
            {"containers": [{"id": "a", "allowed_ips": "10.0.0.0/8"}]},
            "config: expected `array`, got `str` at containers[0].allowed_ips",
        ),
        ({"containers": [{"id": "a", "timeout": 0}]}, "config: expected `float` > 0.0 at containers[0].timeout"),
        ({"containers": {"id": "a"}}, "config: expected `array`, got `object` at containers"),
        (
            {"chain": {"wallet": {"max_gas_limit": "5"}}},
            "config: expected `int`, got `str` at chain.wallet.max_gas_limit",
        ),
        (
            {"chain": {"snapshot_sync": {"batch_size": 0}}},
            "config: expected `int` >= 1 at chain.snapshot_sync.batch_size",
        ),
        ({"chain": {"enabled": "true"}}, "config: expected `bool`, got `str` at chain.enabled"),
        ({"manage_containers": 0}, "config: expected `bool`, got `int` at manage_containers"),
        ({"startup_wait": -1}, "config: expected `float` >= 0.0 at startup_wait"),
        ({"docker": {"username": "u"}}, "config: object missing required field `password` at docker"),
    ],
)
def test_wrong_types_name_the_key_path(raw: dict[str, Any], expected: str) -> None:
    assert config_error(raw) == expected


@pytest.mark.parametrize("raw", [[], "config", 1, None])
def test_top_level_not_an_object(raw: Any) -> None:
    assert "expected a JSON object at the top level" in config_error(raw)


def test_duplicate_container_ids() -> None:
    message = config_error({"containers": [{"id": "a"}, {"id": "b"}, {"id": "a"}]})
    assert message == "config: container id 'a' is used twice"


@pytest.mark.parametrize(
    ("raw", "entry", "path"),
    [
        ({"containers": [{"id": "a", "allowed_ips": ["10.0.0.0/8", "10.0.0.300/8"]}]}, "10.0.0.300/8", "containers[0]"),
        ({"containers": [{"id": "a"}, {"id": "b", "allowed_ips": ["nope"]}]}, "nope", "containers[1]"),
        ({"server": {"trusted_proxies": ["1.2.3.4/33"]}}, "1.2.3.4/33", "server"),
        ({"server": {"local_networks": ["::1/129"]}}, "::1/129", "server"),
    ],
)
def test_bad_cidr(raw: dict[str, Any], entry: str, path: str) -> None:
    message = config_error(raw)
    assert repr(entry) in message
    assert "is not an IP network" in message
    assert message.endswith(f" at {path}")


def test_non_strict_cidr_is_fine() -> None:
    config = parse_config({"containers": [{"id": "a", "allowed_ips": ["10.0.0.5/24", "::1", "192.168.1.1"]}]})
    assert config.containers[0].allowed_ips == ["10.0.0.5/24", "::1", "192.168.1.1"]


@pytest.mark.parametrize(
    ("remove", "needed"),
    [
        ("rpc_url", "rpc_url is required when the chain is enabled"),
        ("coordinator_address", "coordinator_address is required when the chain is enabled"),
        ("wallet", "wallet.private_key is required when the chain is enabled"),
    ],
)
def test_chain_enabled_requirements(remove: str, needed: str) -> None:
    chain = {k: v for k, v in CHAIN_OK.items() if k != remove}
    assert config_error({"chain": chain}) == f"config: {needed} at chain"


def test_chain_enabled_needs_private_key_in_wallet() -> None:
    chain = {**CHAIN_OK, "wallet": {"max_gas_limit": 1}}
    assert config_error({"chain": chain}) == "config: wallet.private_key is required when the chain is enabled at chain"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"wallet": {"private_key": "0x02"}}, "wallet.private_key must be 0x and 64 hex digits"),
        ({"wallet": {"private_key": "ab" * 32}}, "wallet.private_key must be 0x and 64 hex digits"),
        ({"coordinator_address": "0x1"}, "coordinator_address must be 0x and 40 hex digits, got '0x1'"),
        ({"registry_address": "0x" + "g" * 40}, "registry_address must be 0x and 40 hex digits"),
    ],
)
def test_chain_enabled_checks_key_and_address_shapes(override: dict[str, Any], message: str) -> None:
    assert config_error({"chain": {**CHAIN_OK, **override}}).startswith(f"config: {message}")


def test_chain_disabled_needs_nothing() -> None:
    assert parse_config({"chain": {"enabled": False}}).chain.rpc_url == ""


# -- unknown keys ---------------------------------------------------------------------------------


def test_unknown_keys_lists_nested_paths() -> None:
    raw = {
        "bogus": 1,
        "server": {"port": 4000, "prot": 1, "rate_limit": {"num_requests": 1, "burst": 2}},
        "containers": [{"id": "a"}, {"id": "b", "imgae": "x", "env": {"ANY": "fine"}}],
        "chain": {"wallet": {"privat_key": ""}, "snapshot_sync": {"sleeep": 1}},
        "redis": {"host": "h", "db": 0},
        "snapshot_sync": {"x": 1},
    }
    assert unknown_keys(raw) == [
        "bogus",
        "server.prot",
        "server.rate_limit.burst",
        "containers[1].imgae",
        "chain.wallet.privat_key",
        "chain.snapshot_sync.sleeep",
        "redis.db",
    ]
    # unknown keys do not stop the config from loading
    assert parse_config(raw).containers[1].id == "b"


def test_unknown_keys_tolerates_wrong_shapes() -> None:
    assert unknown_keys({"containers": "x", "server": 1, "chain": None}) == []
    assert unknown_keys([1, 2]) == []
    assert unknown_keys({}) == []


# -- load_config -----------------------------------------------------------------------------------


def test_load_config_reads_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps({"server": {"port": 4321}, "manage_containers": False, "containers": [{"id": "a", "port": "3001"}]})
    )
    config = load_config(path)
    assert config.server.port == 4321
    assert config.manage_containers is False
    assert config.containers[0].port == 3001
    assert load_config(str(path)) == config


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.message.startswith(f"config: cannot read {path}")


def test_load_config_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


@pytest.mark.parametrize("text", [b"", b"{", b"{'a': 1}", b"[1,]", b"\xff", b"[" * 100_000])
def test_load_config_invalid_json(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.message.startswith(f"config: {path} is not valid JSON: ")


def test_load_config_wrong_type_names_key(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"containers": [{"id": "a", "external": 1}]}))
    with pytest.raises(ConfigError, match=r"at containers\[0\]\.external$"):
        load_config(path)


def test_load_config_warns_about_unknown_keys(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"servre": {}, "server": {"prot": 1}, "containers": [{"id": "a", "urll": "x"}]}))
    with caplog.at_level(logging.WARNING, logger="infernet_core.config"):
        config = load_config(path)
    assert config.server.port == 4000
    warnings = [r.getMessage() for r in caplog.records if r.name == "infernet_core.config"]
    assert warnings == [
        "config: unknown key servre is ignored",
        "config: unknown key server.prot is ignored",
        "config: unknown key containers[0].urll is ignored",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "infernet_core.config")


def test_load_config_no_warnings_for_clean_config(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(V02_SAMPLE))
    with caplog.at_level(logging.WARNING, logger="infernet_core.config"):
        load_config(path)
    assert [r for r in caplog.records if r.name == "infernet_core.config"] == []


# -- the v0.2 layout, without touching the caller's dict --------------------------------------------


def test_parse_config_leaves_its_argument_as_it_was() -> None:
    raw = json.loads(json.dumps(V02_SAMPLE))
    before = json.loads(json.dumps(raw))
    config = parse_config(raw)
    assert raw == before  # ports still strings, snapshot_sync still at the top
    assert config.containers[0].port == 3000


def test_top_level_snapshot_sync_is_the_chain_s() -> None:
    config = parse_config({"snapshot_sync": {"sleep": 0.5, "batch_size": 7}, "chain": {"trail_head_blocks": 3}})
    assert config.chain.snapshot_sync == SnapshotSyncConfig(sleep=0.5, batch_size=7)
    assert config.chain.trail_head_blocks == 3
    bad = config_error({"snapshot_sync": {"batch_size": 0}})
    assert bad == "config: expected `int` >= 1 at chain.snapshot_sync.batch_size"


def test_chain_snapshot_sync_wins_over_the_top_level_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"snapshot_sync": {"batch_size": 7}, "chain": {"snapshot_sync": {"batch_size": 9}}}))
    with caplog.at_level(logging.WARNING, logger="infernet_core.config"):
        config = load_config(path)
    assert config.chain.snapshot_sync.batch_size == 9
    assert [r.getMessage() for r in caplog.records if r.name == "infernet_core.config"] == [
        "config: snapshot_sync at the top level (v0.2) is ignored: chain.snapshot_sync is set"
    ]


# -- settings read but not acted on, and v1 payments ----------------------------------------------


def test_ignored_settings_name_each_key() -> None:
    config = parse_config(
        {
            "server": {"rate_limit": {"num_requests": 10, "period": 1}},
            "forward_stats": True,
            "log": {"path": "x.log"},
            "chain": {"wallet": {"payment_address": "0x" + "ab" * 20}},
            "containers": [{"id": "a", "accepted_payments": {"0x" + "00" * 20: 5}}, {"id": "b"}],
        }
    )
    assert config.ignored_settings() == [
        "forward_stats is not supported: no stats are forwarded",
        "log is not acted on: the node logs to stderr",
        "chain.wallet.payment_address is an Infernet v1 payment setting: no payments are taken",
        "containers[a].accepted_payments is an Infernet v1 payment setting: no payments are taken",
    ]
    assert parse_config({"log_path": "a.log"}).ignored_settings() == [
        "log_path is not acted on: the node logs to stderr"
    ]


def test_a_clean_config_ignores_nothing() -> None:
    assert parse_config({}).ignored_settings() == []
    assert (
        parse_config({"forward_stats": False, "containers": [{"id": "a", "accepted_payments": {}}]}).ignored_settings()
        == []
    )


@pytest.mark.parametrize(
    ("override", "keys"),
    [
        ({"wallet": {**CHAIN_OK["wallet"], "payment_address": "0x" + "ab" * 20}}, "chain.wallet.payment_address"),
        ({"containers": [{"id": "a", "accepted_payments": {"0x" + "00" * 20: 1}}]}, "containers[a].accepted_payments"),
    ],
)
def test_v1_payment_settings_refused_with_the_chain_enabled(override: dict[str, Any], keys: str) -> None:
    containers = override.pop("containers", [])
    message = config_error({"chain": {**CHAIN_OK, **override}, "containers": containers})
    assert message == (
        f"config: {keys}: Infernet v1 payments are not served; this node serves the seed-era (SDK v0.1)"
        " Coordinator, which takes no payments: remove the key to run on it"
    )


@pytest.mark.anyio
async def test_node_start_warns_once_per_ignored_setting(caplog: pytest.LogCaptureFixture) -> None:
    from infernet_core import Node

    config = parse_config({"forward_stats": True, "log_path": "node.log"})
    with caplog.at_level(logging.WARNING, logger="infernet_core.node"):
        async with Node(config):
            pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "config: forward_stats is not supported: no stats are forwarded",
        "config: log_path is not acted on: the node logs to stderr",
    ]


@pytest.mark.parametrize(
    ("bad", "key"),
    [({"num_requests": 0}, "num_requests"), ({"period": 0}, "period"), ({"num_requests": -1}, "num_requests")],
)
def test_a_rate_limit_must_allow_something(bad: dict[str, Any], key: str) -> None:
    assert config_error({"server": {"rate_limit": bad}}).endswith(f" at server.rate_limit.{key}")


@pytest.mark.anyio
async def test_a_node_builds_the_rate_limiter_its_config_asks_for() -> None:
    from infernet_core import Node
    from infernet_core.ratelimit import MemoryRateLimiter

    assert Node(parse_config({})).rate_limiter is None
    limiter = Node(parse_config({"server": {"rate_limit": {"num_requests": 3, "period": 6}}})).rate_limiter
    assert isinstance(limiter, MemoryRateLimiter)
    assert (limiter.limit.num_requests, limiter.limit.period) == (3, 6.0)
