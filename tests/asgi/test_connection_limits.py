"""The pieces that keep a crowd of connections from starving the node, without sockets:
the connection cap's arithmetic, the descriptor limit, throttled logging, and the bodies of
the errors hypercorn answers by itself. (``tests/e2e/test_e2e_connections.py`` drives them
all through the real ``infernet-node``.)"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource

import msgspec
import pytest

from infernet_asgi.connections import RESERVED_DESCRIPTORS, connection_cap, raise_descriptor_limit
from infernet_asgi.logthrottle import LogThrottle
from infernet_asgi.protocol import HYPERCORN_SUPPORTED, protocol_error_body
from infernet_asgi.serving import refusal, throttled_exception_handler


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logger(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.INFO, logger="test.throttle")
    return logging.getLogger("test.throttle")


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "test.throttle"]


# -- the cap ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_connections", "descriptors", "cap"),
    [
        (4096, 1 << 20, 4096),  # plenty of descriptors: the configured cap
        (4096, 1024, 1024 - RESERVED_DESCRIPTORS),  # the reserve comes off the limit
        (100, 1024, 100),
        (4096, 256, 128),  # a small limit: half of it is kept
        (4096, 10, 5),
        (4096, 1, 1),  # never 0
        (4096, resource.RLIM_INFINITY, 4096),
    ],
)
def test_connection_cap(max_connections: int, descriptors: int, cap: int) -> None:
    assert connection_cap(max_connections, descriptors) == cap


def test_descriptor_limit_is_raised_to_the_hard_limit() -> None:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = before
    if hard != resource.RLIM_INFINITY and hard < 64:
        pytest.skip("hard descriptor limit too low to lower the soft one")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (32, hard))
        limit = raise_descriptor_limit()
        assert limit.before == 32
        assert limit.error is None
        assert limit.soft > 32
        if hard != resource.RLIM_INFINITY:
            assert limit.soft == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == limit.soft
        assert raise_descriptor_limit().before == limit.soft  # nothing more to raise
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


# -- throttled logging ----------------------------------------------------------------------


def test_repeats_are_counted_and_reported_once_per_interval(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    throttle = LogThrottle(logger, 10.0, clock=clock)
    for _ in range(1000):
        throttle.log(logging.WARNING, "emfile", "accept() failed: %s", "Too many open files")
    assert messages(caplog) == ["accept() failed: Too many open files"]

    clock.now += 10.0  # the interval is over: the next repeat reports the count
    throttle.log(logging.WARNING, "emfile", "accept() failed: %s", "Too many open files")
    assert messages(caplog)[1:] == [
        "accept() failed: Too many open files (and 999 more like it in the last 10 s)",
    ]

    clock.now += 10.0
    throttle.flush()
    assert messages(caplog)[2:] == ["accept() failed: Too many open files (and 1 more like it in the last 10 s)"]

    clock.now += 100.0  # a new episode is logged at once
    throttle.log(logging.WARNING, "emfile", "accept() failed: %s", "Too many open files")
    assert len(messages(caplog)) == 4


def test_kinds_are_throttled_apart(logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    throttle = LogThrottle(logger, 10.0, clock=Clock())
    for _ in range(10):
        throttle.log(logging.INFO, "a", "first kind")
        throttle.log(logging.INFO, "b", "second kind")
    throttle.flush()
    assert messages(caplog) == [
        "first kind",
        "second kind",
        "first kind (and 9 more like it in the last 10 s)",
        "second kind (and 9 more like it in the last 10 s)",
    ]


@pytest.mark.anyio
async def test_the_count_is_written_when_the_interval_ends(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    throttle = LogThrottle(logger, 0.05)
    for _ in range(5):
        throttle.log(logging.INFO, "k", "again")
    await asyncio.sleep(0.2)  # no further record: a timer reports the count
    assert messages(caplog) == ["again", "again (and 4 more like it in the last 0.05 s)"]


@pytest.mark.anyio
async def test_accept_failures_reported_by_the_loop_are_throttled(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    handler = throttled_exception_handler(LogThrottle(logger, 60.0))
    loop = asyncio.get_running_loop()
    failure = OSError(errno.EMFILE, "Too many open files")
    for _ in range(500):
        handler(loop, {"message": "socket.accept() out of system resource", "exception": failure})
    handler(loop, {"message": "something else"})
    assert messages(caplog) == [
        "socket.accept() out of system resource: [Errno 24] Too many open files",
        "something else",
    ]


# -- the node's own answers ------------------------------------------------------------------


def test_refusal_is_a_whole_json_503() -> None:
    head, _, body = refusal(16).partition(b"\r\n\r\n")
    lines = head.decode("ascii").split("\r\n")
    assert lines[0] == "HTTP/1.1 503 Service Unavailable"
    assert {"retry-after: 1", "connection: close", f"content-length: {len(body)}"} <= set(lines)
    assert msgspec.json.decode(body) == {"error": "Too many connections", "params": {"limit": 16}}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": "Malformed HTTP request"}),
        (431, {"error": "Request header fields too large", "params": {"limit": 16384}}),
        (501, {"error": "Transfer-Encoding not supported", "params": {"supported": ["chunked"]}}),
        (505, {"error": "HTTP protocol error", "params": {"status": 505}}),
    ],
)
def test_protocol_error_bodies(status: int, body: dict[str, object]) -> None:
    assert protocol_error_body(status, 16384) == body


def test_the_locked_hypercorn_is_supported() -> None:
    # The lock pins a hypercorn release infernet_asgi.protocol supports; a new pin must
    # recheck the overridden internals (TCPServer.run, _read_data, _send_error_response).
    assert HYPERCORN_SUPPORTED
