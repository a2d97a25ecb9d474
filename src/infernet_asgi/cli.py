"""The ``infernet-node`` command: one Node served standalone by hypercorn.

With no ``--config`` (and no ``INFERNET_CONFIG_PATH``) the node runs an embedded default:
no services, an in-memory store, and the built-in in-process ``echo`` container, so it
answers requests at once. With a config, results go to the store it names, by default an
SQLite file (``store.path``, ``infernet-node.db`` in the working directory).

At start it raises its descriptor limit to the hard limit and serves at most
``server.max_connections`` connections, fewer if the descriptors left after a reserve for the
node's own use are fewer (:mod:`infernet_asgi.connections`, :mod:`infernet_asgi.serving`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec
from hypercorn.config import Config as HypercornConfig

from infernet_core import ConfigError, InfernetError, LocalContainer, Node, NodeConfig, echo, load_config
from infernet_core.backends import build_backend
from infernet_core.config_sources import ENV_PREFIX

from .app import InfernetApp
from .checkconfig import check_config
from .connections import connection_cap, raise_descriptor_limit
from .logformat import configure_logging
from .serving import serve

__all__ = ("build_node", "hypercorn_config", "listening_socket", "main", "stop_on_signals")

log = logging.getLogger("infernet_asgi.cli")


def build_node(config_path: str | None) -> Node:
    """The node a config file describes, or the embedded default when there is none.

    Raises:
        ConfigError: The config file is unreadable or invalid.
    """
    if config_path:
        config = _metrics_on_unless_off(load_config(config_path))
        # A configured node keeps its results on disk unless the config names another store.
        store, dispatcher = build_backend(config, default_kind="sqlite")
        return Node(config, store=store, dispatcher=dispatcher)
    return Node(
        _metrics_on_unless_off(NodeConfig()),
        containers=[LocalContainer("echo", echo, description="Returns its input data unchanged")],
    )


def _metrics_on_unless_off(config: NodeConfig) -> NodeConfig:
    """``infernet-node`` serves ``GET /metrics`` unless ``server.metrics`` is ``false``."""
    if config.server.metrics is not None:
        return config
    return msgspec.structs.replace(config, server=msgspec.structs.replace(config.server, metrics=True))


BACKLOG = 2048
"""Connections the kernel queues for the node to accept."""


def listening_socket(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A bound, listening TCP socket with TCP_NODELAY set.

    Linux copies TCP_NODELAY from a listening socket to the sockets it accepts. Without it,
    a response whose head and body leave in separate writes waits for the client's delayed
    ACK (~40 ms) on every keep-alive request.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(backlog)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def hypercorn_config(sock: socket.socket, graceful_timeout: float) -> HypercornConfig:
    """The hypercorn settings ``infernet-node`` serves with: no access log, and
    ``graceful_timeout`` for requests in flight at shutdown. ``bind`` names ``sock`` (see
    :func:`listening_socket`) as ``fd://`` for hypercorn's own ``serve()``;
    :func:`infernet_asgi.serving.serve` takes the socket itself."""
    config = HypercornConfig()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = graceful_timeout
    return config


def stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM or SIGINT sets (call it inside the running event loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _serve(node: Node, sock: socket.socket, max_connections: int) -> None:
    app = InfernetApp(node)
    stop = stop_on_signals()
    config = hypercorn_config(sock, node.config.shutdown_grace)
    # Start the node before serving, so a bad config fails before the port answers.
    async with node:
        host, port = sock.getsockname()[:2]
        log.info("infernet-node listening on %s:%s", host, port)
        # Serve from a task of its own: on Pythons without the fix for CPython gh-116720
        # (3.11 among them) an asyncio.TaskGroup (hypercorn's) can leave the task that ran
        # it with a cancellation request it never withdraws. In this task, anyio would then
        # take the node's own shutdown cancellation (jobs outliving the grace period) for a
        # foreign one and re-raise it.
        serving = serve(
            app,  # type: ignore[arg-type]
            config,
            sock,
            max_connections=max_connections,
            shutdown_trigger=stop.wait,
            backlog=BACKLOG,
        )
        await asyncio.ensure_future(serving)


def _connection_limit(max_connections: int) -> int:
    """Raise the descriptor limit, log it, and return how many connections to serve at once."""
    limit = raise_descriptor_limit()
    if limit.error is not None:
        log.warning("descriptor limit stays at %d (hard limit %d): %s", limit.soft, limit.hard, limit.error)
    else:
        log.info("descriptor limit %d (was %d; hard limit %d)", limit.soft, limit.before, limit.hard)
    cap = connection_cap(max_connections, limit.soft)
    if cap < max_connections:
        log.warning(
            "serving at most %d connections: server.max_connections is %d but only %d descriptors are allowed",
            cap,
            max_connections,
            limit.soft,
        )
    else:
        log.info("serving at most %d connections (server.max_connections)", cap)
    return cap


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infernet-node", description="Run an Infernet node.")
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "register", "activate", "check-config"],
        help="serve (the default) runs the node; register and activate make the config's wallet"
        " a node on the Coordinator (register, wait for the cooldown, then activate); check-config"
        " checks the config and everything it names (store, containers, RPC, Coordinator)",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get("INFERNET_CONFIG_PATH"),
        help="path to config.json (default: $INFERNET_CONFIG_PATH, else the embedded default)",
    )
    parser.add_argument("--host", help="address to listen on (default: server.host, 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (default: server.port, 4000)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="text (readable) or json (one object per line); default: log.format",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``infernet-node``; returns the process exit status."""
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        configure_logging("WARNING", args.log_format or "text")  # its lines are the report
        return asyncio.run(check_config(args.config, sys.stdout))
    # The format is known before the config is loaded, so its own lines come out in it too.
    configure_logging(args.log_level, args.log_format or _log_format_of(args.config))
    if args.command != "serve":
        return _identity(args.command, args.config)
    try:
        node = build_node(args.config)
    except ConfigError as exc:
        print(f"infernet-node: {exc.message}", file=sys.stderr)
        return 2
    server = node.config.server
    host = args.host or server.host
    port = args.port if args.port is not None else server.port
    try:
        sock = listening_socket(host, port)
    except OSError as exc:
        print(f"infernet-node: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(node, sock, _connection_limit(server.max_connections)))
    except InfernetError as exc:  # a bad config or an unusable store, found at start
        print(f"infernet-node: {exc.message}", file=sys.stderr)
        return 2
    finally:
        sock.close()  # serving closes it; not if the node failed to start
    return 0


def _log_format_of(config_path: str | None) -> str:
    """``log.format`` as the environment or the config file gives it, read ahead of the
    config (which is validated later, and may log as it loads); ``text`` if neither says."""
    fmt = os.environ.get(f"{ENV_PREFIX}LOG__FORMAT")
    if fmt is None and config_path:
        try:
            raw = msgspec.json.decode(Path(config_path).read_bytes())
        except (OSError, msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            return "text"  # loading it reports the problem
        log_section = raw.get("log") if isinstance(raw, dict) else None
        fmt = log_section.get("format") if isinstance(log_section, dict) else None
    return "json" if fmt == "json" else "text"


def _identity(command: str, config_path: str | None) -> int:
    """``register`` / ``activate``: one transaction from the config's wallet; 0 if done, 1 if
    the Coordinator refused, 2 if the config does not enable the chain or names something other
    than a v0.1 Coordinator."""
    try:
        if not config_path:
            raise ConfigError(f"{command} needs --config (or INFERNET_CONFIG_PATH) with the chain enabled")
        config = load_config(config_path)
        if not config.chain.enabled:
            raise ConfigError(f"{command} needs chain.enabled: true in {config_path}")
        from infernet_core.chain.registration import RegistrationError, activate_node, register_node
    except ConfigError as exc:
        print(f"infernet-node: {exc.message}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"infernet-node: the chain extra is missing ({exc.name}): pip install 'infernet-core[chain]'")
        return 2
    action = register_node if command == "register" else activate_node
    try:
        print(asyncio.run(action(config)))
    except ConfigError as exc:  # the address is not a v0.1 Coordinator
        print(f"infernet-node: {exc.message}", file=sys.stderr)
        return 2
    except RegistrationError as exc:
        print(f"infernet-node: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # RPC down, transaction failed: one line, not a traceback
        print(f"infernet-node: {command} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
