"""Fuzz the HTTP layer of the real ``infernet-node``: junk methods, request targets, versions,
header lines, Content-Length / Transfer-Encoding framing and bodies, over raw sockets.

For every request: a response arrives within the timeout (or, for a request left incomplete
on purpose, the connection is closed), it is not a 5xx (503 only with Retry-After), error
responses are JSON, and the server lets the connection go once the client is done (see
``fuzz_support.send_checked``). After the run the node still serves and runs echo jobs."""

from __future__ import annotations

import pytest
from fuzz_settings import FRAMING_EXAMPLES, PROTOCOL_EXAMPLES, fuzz_settings
from fuzz_strategies import Wire, framing_requests, protocol_requests
from fuzz_support import Target, check_node_healthy, send_checked
from hypothesis import given

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_fuzz_http_protocol(target: Target) -> None:
    @fuzz_settings(PROTOCOL_EXAMPLES)
    @given(wire=protocol_requests())
    def run(wire: Wire) -> None:
        send_checked(
            target,
            list(wire.parts),
            complete=wire.complete,
            follow_up=wire.follow_up,
            head_request=wire.head,
            context=repr(wire),
        )

    run()
    check_node_healthy(target)


def test_fuzz_http_framing(target: Target) -> None:
    @fuzz_settings(FRAMING_EXAMPLES)
    @given(wire=framing_requests())
    def run(wire: Wire) -> None:
        send_checked(
            target,
            list(wire.parts),
            complete=wire.complete,
            follow_up=wire.follow_up,
            head_request=wire.head,
            context=repr(wire),
        )

    run()
    check_node_healthy(target)
