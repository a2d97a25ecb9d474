"""infernet_asgi.clientaddr.client_address: who the caller is, from the scope alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from infernet_asgi.clientaddr import client_address
from infernet_core.errors import BadRequest
from infernet_core.guardian import parse_networks

PROXIES = parse_networks(["127.0.0.1/32", "::1/128", "10.0.0.0/8"])


def scope(client: Any, forwarded: Sequence[bytes] = ()) -> dict[str, Any]:
    headers = [(b"host", b"testserver"), *((b"x-forwarded-for", value) for value in forwarded)]
    return {"type": "http", "client": client, "headers": headers}


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::ffff:198.51.100.4", "198.51.100.4"),
        ("::FFFF:C633:6404", "198.51.100.4"),
        ("::1", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("2001:DB8::0001", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        # Not an IP address (a unix socket path, say): kept as given.
        ("/run/infernet.sock", "/run/infernet.sock"),
    ],
)
def test_peer_address_is_normalised(peer: str, expected: str) -> None:
    assert client_address(scope((peer, 1))) == expected


@pytest.mark.parametrize("bad", [{"type": "http"}, scope(None), scope(("", 0)), scope(())])
def test_missing_client_is_bad_request(bad: dict[str, Any]) -> None:
    with pytest.raises(BadRequest) as info:
        client_address(bad)
    assert info.value.message == "Could not get client IP address"
    assert info.value.params is None
    assert info.value.status_hint == 400


def test_forwarded_for_ignored_without_trusted_proxies() -> None:
    assert client_address(scope(("127.0.0.1", 1), [b"198.51.100.7"])) == "127.0.0.1"


def test_forwarded_for_ignored_from_an_untrusted_peer() -> None:
    assert client_address(scope(("198.51.100.9", 1), [b"203.0.113.1"]), PROXIES) == "198.51.100.9"


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ([b"198.51.100.7"], "198.51.100.7"),
        ([b" 198.51.100.7 "], "198.51.100.7"),
        ([b"203.0.113.1, 198.51.100.7"], "198.51.100.7"),
        # Trusted hops on the right are skipped.
        ([b"203.0.113.1, 198.51.100.7, 10.1.1.1, 127.0.0.1"], "198.51.100.7"),
        ([b"::ffff:198.51.100.7"], "198.51.100.7"),
        ([b"2001:db8::5, ::1"], "2001:db8::5"),
        # All hops trusted, no header, or garbage: the peer is the client.
        ([b"10.0.0.2, 127.0.0.1"], "127.0.0.1"),
        ([], "127.0.0.1"),
        ([b"unknown"], "127.0.0.1"),
        ([b"198.51.100.7, unknown"], "127.0.0.1"),
        ([b""], "127.0.0.1"),
        # Repeated header lines are one list, in order: the proxy's last line wins.
        ([b"198.51.100.7", b"203.0.113.50"], "203.0.113.50"),
        ([b"198.51.100.7", b"203.0.113.50, 10.0.0.1"], "203.0.113.50"),
        ([b"198.51.100.7", b"10.0.0.1"], "198.51.100.7"),
    ],
)
def test_forwarded_for_from_a_trusted_peer(forwarded: list[bytes], expected: str) -> None:
    assert client_address(scope(("127.0.0.1", 1), forwarded), PROXIES) == expected


def test_trusted_peer_given_as_ipv4_mapped() -> None:
    assert client_address(scope(("::ffff:127.0.0.1", 1), [b"198.51.100.7"]), PROXIES) == "198.51.100.7"
