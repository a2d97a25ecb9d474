"""Config from the environment and from secret files: any key can be set by an INFERNET_*
variable (typed by the key it sets), any ``<key>_file`` reads a secret, and no value ever
appears in a message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infernet_core import ConfigError
from infernet_core.config import load_config

KEY = "0x" + "ab" * 32
CHAIN = {
    "enabled": True,
    "rpc_url": "http://127.0.0.1:8545",
    "coordinator_address": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "wallet": {},
}


def write(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_environment_sets_any_key_typed_by_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, {"chain": CHAIN, "containers": [{"id": "a", "url": "http://127.0.0.1:1"}]})
    config = load_config(
        path,
        {
            "INFERNET_CHAIN__WALLET__PRIVATE_KEY": KEY,
            "INFERNET_SERVER__PORT": "4001",
            "INFERNET_MANAGE_CONTAINERS": "false",
            "INFERNET_CONTAINERS__0__BEARER": "12345",  # a text key: stays text
            "INFERNET_STORE__KIND": "redis",
            "INFERNET_STORE__URL": "redis://127.0.0.1:6379/0",
            "INFERNET_SERVER__RATE_LIMIT": '{"num_requests": 5, "period": 1}',
            "INFERNET_CONFIG_PATH": str(path),  # ours, not a key
            "HOME": "/root",
        },
    )
    assert config.chain.wallet is not None and config.chain.wallet.private_key == KEY
    assert config.server.port == 4001
    assert config.manage_containers is False
    assert config.containers[0].bearer == "12345"
    assert (config.store.kind, config.store.url) == ("redis", "redis://127.0.0.1:6379/0")
    assert config.server.rate_limit is not None and config.server.rate_limit.num_requests == 5


def test_secret_files_from_the_config_or_the_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    url_file = tmp_path / "url"
    url_file.write_text("http://127.0.0.1:9545\n")
    chain = {**CHAIN, "rpc_url": "", "rpc_url_file": str(url_file), "wallet": {"private_key_file": str(key_file)}}
    config = load_config(write(tmp_path, {"chain": chain}), {})
    assert config.chain.wallet is not None and config.chain.wallet.private_key == KEY
    assert config.chain.rpc_url == "http://127.0.0.1:9545"
    config = load_config(write(tmp_path, {"chain": CHAIN}), {"INFERNET_CHAIN__WALLET__PRIVATE_KEY_FILE": str(key_file)})
    assert config.chain.wallet is not None and config.chain.wallet.private_key == KEY


def test_a_secret_set_twice_or_unreadable_is_refused_by_key_not_value(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    both = {**CHAIN, "wallet": {"private_key": KEY, "private_key_file": str(key_file)}}
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, {"chain": both}), {})
    assert caught.value.message == (
        "config: chain.wallet.private_key_file and chain.wallet.private_key are both set: keep one"
    )
    missing = {**CHAIN, "wallet": {"private_key_file": str(tmp_path / "nope")}}
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, {"chain": missing}), {})
    assert caught.value.message == (
        f"config: chain.wallet.private_key_file: cannot read {tmp_path / 'nope'}: No such file or directory"
    )


@pytest.mark.parametrize("bad", ["0x1234", KEY + "00", "not a key " + KEY[2:]])
def test_a_bad_private_key_is_named_never_shown(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, {"chain": CHAIN}), {"INFERNET_CHAIN__WALLET__PRIVATE_KEY": bad})
    assert "private_key" in caught.value.message
    assert bad not in caught.value.message and KEY[2:10] not in caught.value.message


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "INFERNET_SERVER____PORT",
            "config: environment variable INFERNET_SERVER____PORT names no key (an empty segment)",
        ),
        (
            "INFERNET_CONTAINERS__3__BEARER",
            "config: environment variable INFERNET_CONTAINERS__3__BEARER: no entry 3 in that list",
        ),
        (
            "INFERNET_SERVER__PORT__X",
            "config: environment variable INFERNET_SERVER__PORT__X: server.port is not an object",
        ),
    ],
)
def test_a_variable_that_names_no_key_is_refused(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, {"server": {"port": 4000}, "containers": []}), {name: "1"})
    assert caught.value.message == message


def test_a_wrongly_typed_value_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, {}), {"INFERNET_SERVER__PORT": "four thousand"})
    assert caught.value.message.endswith("at server.port")
