"""Fuzz the HTTP layer of the real ``infernet-node``: junk methods, request targets, versions,
header lines, Content-Length / Transfer-Encoding framing and bodies, over raw sockets.

For every request: a response arrives within the timeout (or, for a request left incomplete
on purpose, the connection is closed), it is not a 5xx (503 only with Retry-After), error
responses are JSON, and the server lets the connection go once the client is done (see
``fuzz_support.send_checked``). After the run the node still serves and runs echo jobs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fuzz_settings import FRAMING_EXAMPLES, PROTOCOL_EXAMPLES, fuzz_settings
from fuzz_strategies import Wire, framing_requests, protocol_requests
from fuzz_support import Target, check_node_healthy, send_wire
from hypothesis import given
from hypothesis.strategies import SearchStrategy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.mark.parametrize(
    ("examples", "requests"),
    [(PROTOCOL_EXAMPLES, protocol_requests), (FRAMING_EXAMPLES, framing_requests)],
    ids=["protocol", "framing"],
)
def test_fuzz_http(target: Target, examples: int, requests: Callable[[], SearchStrategy[Wire]]) -> None:
    @fuzz_settings(examples)
    @given(wire=requests())
    def run(wire: Wire) -> None:
        send_wire(target, wire)

    run()
    check_node_healthy(target)
