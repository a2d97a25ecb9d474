"""Where config values come from besides config.json: environment variables and secret files.

* ``INFERNET_<KEY>__<KEY>...=value`` sets any key (segments joined by ``__``, case does not
  matter; a number selects a list entry): ``INFERNET_CHAIN__WALLET__PRIVATE_KEY=0x...``,
  ``INFERNET_SERVER__PORT=4001``, ``INFERNET_CONTAINERS__0__BEARER=token``. A value is taken
  as text where the key holds text, else read as JSON (``4001``, ``true``, ``{"a": 1}``).
* ``<key>_file`` (in config.json or from the environment: ``..._FILE``) names a file whose
  contents (less a trailing newline) become ``<key>``: the way Docker and Kubernetes hand
  out secrets (``chain.wallet.private_key_file``, ``chain.rpc_url_file``,
  ``store.url_file``, ``docker.password_file``, ...).

Neither ever puts a value in a message: errors name keys and files, not what they hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from .errors import ConfigError

__all__ = ("ENV_PREFIX", "apply_environment", "read_secret_files")

ENV_PREFIX = "INFERNET_"
_NOT_KEYS = frozenset({"INFERNET_CONFIG_PATH"})  # variables of ours that are not config keys
_FILE_SUFFIX = "_file"


def apply_environment(raw: dict[str, Any], environ: Mapping[str, str], schema: Any) -> list[str]:
    """Set the keys that ``INFERNET_*`` variables name, in ``raw`` (changed in place).

    Args:
        raw: The decoded config.
        environ: The environment.
        schema: The config's type (``NodeConfig``), to tell text keys from the others.

    Returns:
        The key paths that were set (for a log line; values are never returned).

    Raises:
        ConfigError: A variable names no key (an empty segment, a list entry that is not there).
    """
    applied: list[str] = []
    root = msgspec.inspect.type_info(schema)
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in _NOT_KEYS:
            continue
        path = [segment.lower() for segment in name[len(ENV_PREFIX) :].split("__")]
        if not all(path):
            raise ConfigError(f"config: environment variable {name} names no key (an empty segment)")
        value = _typed(environ[name], _type_at(root, path))
        _set(raw, path, value, name)
        applied.append(".".join(path))
    return applied


def read_secret_files(raw: Any, where: str = "") -> None:
    """Replace every ``<key>_file`` in ``raw`` (in place, at any depth) by ``<key>`` holding
    that file's contents, less a trailing newline.

    Raises:
        ConfigError: The file cannot be read, or ``<key>`` is set too.
    """
    if isinstance(raw, list):
        for index, item in enumerate(raw):
            read_secret_files(item, f"{where}[{index}]")
        return
    if not isinstance(raw, dict):
        return
    for key in list(raw):
        value = raw[key]
        path = f"{where}.{key}" if where else key
        if not (key.endswith(_FILE_SUFFIX) and isinstance(value, str)):
            read_secret_files(value, path)
            continue
        target = key[: -len(_FILE_SUFFIX)]
        if raw.get(target):
            raise ConfigError(f"config: {path} and {path[: -len(_FILE_SUFFIX)]} are both set: keep one")
        try:
            text = Path(value).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not readable text"
            raise ConfigError(f"config: {path}: cannot read {value}: {reason}") from None
        del raw[key]
        raw[target] = text.rstrip("\r\n")


def _type_at(info: Any, path: list[str]) -> Any:
    """The msgspec type info of the key at ``path`` (``None`` if the schema has no such key)."""
    for segment in path:
        info = _unwrap(info)
        if isinstance(info, msgspec.inspect.ListType) and segment.isdigit():
            info = info.item_type
        elif isinstance(info, msgspec.inspect.StructType):
            info = next((f.type for f in info.fields if f.encode_name == segment), None)
        else:
            return None
        if info is None:
            return None
    return _unwrap(info)


def _unwrap(info: Any) -> Any:
    """An optional type (``X | None``) as its ``X``."""
    if isinstance(info, msgspec.inspect.UnionType):
        others = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        if len(others) == 1:
            return others[0]
    return info


def _typed(text: str, info: Any) -> Any:
    if info is None or isinstance(info, msgspec.inspect.StrType):
        return text  # a text key, or one the schema does not know (it is reported as unknown)
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text  # validation then names the key and the type it wants


def _set(raw: dict[str, Any], path: list[str], value: Any, name: str) -> None:
    node: Any = raw
    for depth, segment in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(node, list):
            if not segment.isdigit() or int(segment) >= len(node):
                raise ConfigError(f"config: environment variable {name}: no entry {segment} in that list")
            if last:
                node[int(segment)] = value
            else:
                node = node[int(segment)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"config: environment variable {name}: {'.'.join(path[:depth])} is not an object")
        if last:
            node[segment] = value
        else:
            node = node.setdefault(segment, {})
