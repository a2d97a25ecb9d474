"""Admission rules: every rule, its message and params, in the reference node's order."""

from __future__ import annotations

import ipaddress
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_core import AdmissionError
from infernet_core.guardian import ContainerRules, Guardian, in_networks, parse_ip, parse_networks
from infernet_core.models import DelegatedSubscriptionRequest, JobRequest, Signature, SubscriptionRequest
from infernet_core.subscriptions import Subscription

OWNER = "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01"


def guardian(*rules: ContainerRules) -> Guardian:
    return Guardian({rule.id: rule for rule in rules})


DEFAULT = guardian(
    ContainerRules.build("ext"),
    ContainerRules.build("ext2"),
    ContainerRules.build("internal", external=False),
    ContainerRules.build("prover", generates_proofs=True),
    ContainerRules.build("lan", allowed_ips=["10.0.0.5/24", "2001:db8::/32"]),
    ContainerRules.build("single", allowed_ips=["192.0.2.7"]),
)


def job(*containers: str, requires_proof: bool = False) -> JobRequest:
    return JobRequest(containers=list(containers), data={}, requires_proof=requires_proof)


def rejection(g: Guardian, request: JobRequest, client: str = "127.0.0.1") -> tuple[str, Any]:
    with pytest.raises(AdmissionError) as info:
        g.check_job(request, client)
    assert info.value.code == "job.rejected"
    assert info.value.status_hint == 400
    return info.value.message, info.value.params


# -- off-chain jobs ------------------------------------------------------------------------------


def test_accepts_supported_chain() -> None:
    assert DEFAULT.check_job(job("ext", "internal", "ext2"), "203.0.113.9") is None


def test_no_containers() -> None:
    assert rejection(DEFAULT, job()) == ("No containers specified", None)


@pytest.mark.parametrize(
    ("containers", "unsupported"),
    [
        (["nope"], "nope"),
        (["ext", "nope", "other"], "nope"),
        (["ext", "ext2", "other"], "other"),
        (["EXT"], "EXT"),  # ids are case-sensitive
        ([""], ""),
    ],
)
def test_container_not_supported_names_first_unknown(containers: list[str], unsupported: str) -> None:
    assert rejection(DEFAULT, job(*containers)) == ("Container not supported", {"container": unsupported})


def test_first_container_must_be_external() -> None:
    assert rejection(DEFAULT, job("internal", "ext")) == (
        "First container must be external",
        {"first_container": "internal"},
    )


def test_internal_container_later_in_chain_is_fine() -> None:
    DEFAULT.check_job(job("ext", "internal"), "1.2.3.4")


def test_unsupported_beats_first_not_external() -> None:
    # rule 2 (every container supported) is checked before rule 3
    assert rejection(DEFAULT, job("internal", "nope")) == ("Container not supported", {"container": "nope"})


@pytest.mark.parametrize(
    ("containers", "ok"),
    [(["prover"], True), (["ext", "prover"], True), (["prover", "ext"], False), (["ext"], False)],
)
def test_proof_check_looks_at_last_container(containers: list[str], ok: bool) -> None:
    request = job(*containers, requires_proof=True)
    if ok:
        DEFAULT.check_job(request, "1.2.3.4")
    else:
        assert rejection(DEFAULT, request) == ("Container does not generate proof", {"container": containers[-1]})
    # without requires_proof, the same chain is always accepted
    DEFAULT.check_job(job(*containers), "1.2.3.4")


def test_first_not_external_beats_proof_check() -> None:
    assert rejection(DEFAULT, job("internal", requires_proof=True)) == (
        "First container must be external",
        {"first_container": "internal"},
    )


def test_proof_check_beats_address_check() -> None:
    g = guardian(ContainerRules.build("a", allowed_ips=["10.0.0.0/8"]))
    assert rejection(g, job("a", requires_proof=True), "8.8.8.8") == (
        "Container does not generate proof",
        {"container": "a"},
    )


@pytest.mark.parametrize(
    ("client", "allowed"),
    [
        ("10.0.0.1", True),
        ("10.0.0.255", True),  # 10.0.0.5/24 parsed non-strictly -> 10.0.0.0/24
        ("10.0.1.1", False),
        ("::ffff:10.0.0.9", True),  # IPv4-mapped IPv6 counts as its IPv4 address
        ("::ffff:10.0.1.9", False),
        ("2001:db8::1", True),
        ("2001:db8:ffff:ffff::1", True),
        ("2001:db9::1", False),
        ("::1", False),
        ("127.0.0.1", False),
        ("not-an-ip", False),
        ("/run/infernet.sock", False),
        ("", False),
    ],
)
def test_cidr_allow_list(client: str, allowed: bool) -> None:
    request = job("lan")
    if allowed:
        DEFAULT.check_job(request, client)
    else:
        assert rejection(DEFAULT, request, client) == (
            "Container not allowed for address",
            {"container": "lan", "address": client},
        )


@pytest.mark.parametrize(("client", "allowed"), [("192.0.2.7", True), ("192.0.2.8", False), ("::ffff:192.0.2.7", True)])
def test_bare_address_is_single_host(client: str, allowed: bool) -> None:
    if allowed:
        DEFAULT.check_job(job("single"), client)
    else:
        assert rejection(DEFAULT, job("single"), client)[0] == "Container not allowed for address"


def test_ipv6_scope_is_ignored() -> None:
    g = guardian(ContainerRules.build("a", allowed_ips=["fe80::/10"]))
    g.check_job(job("a"), "fe80::1%eth0")


def test_ipv4_mapped_network_entry() -> None:
    # clients are normalised to IPv4; an IPv4 entry matches the mapped form and vice versa
    g = guardian(ContainerRules.build("a", allowed_ips=["1.2.3.0/24"]))
    g.check_job(job("a"), "::ffff:1.2.3.4")
    g.check_job(job("a"), "1.2.3.4")


@pytest.mark.parametrize("client", ["1.2.3.4", "::1", "not-an-ip", "", "fe80::1%lo"])
def test_empty_allow_list_allows_everyone(client: str) -> None:
    DEFAULT.check_job(job("ext", "ext2"), client)


def test_address_check_names_first_disallowed_container() -> None:
    g = guardian(
        ContainerRules.build("open"),
        ContainerRules.build("a", allowed_ips=["10.0.0.0/8"]),
        ContainerRules.build("b", allowed_ips=["192.168.0.0/16"]),
    )
    assert rejection(g, job("open", "a", "b"), "192.168.1.1") == (
        "Container not allowed for address",
        {"container": "a", "address": "192.168.1.1"},
    )
    assert rejection(g, job("open", "b", "a"), "10.1.1.1") == (
        "Container not allowed for address",
        {"container": "b", "address": "10.1.1.1"},
    )


def test_rules_build_normalises() -> None:
    rules = ContainerRules.build(
        "a",
        allowed_ips=["10.0.0.5/24"],
        allowed_addresses=["0xABC"],
        allowed_delegate_addresses=["0xDeF", "0xdef"],
    )
    assert rules.allowed_ips == (ipaddress.ip_network("10.0.0.0/24"),)
    assert rules.allowed_addresses == frozenset({"0xabc"})
    assert rules.allowed_delegate_addresses == frozenset({"0xdef"})
    assert rules.external is True and rules.generates_proofs is False


def test_rules_build_rejects_bad_cidr() -> None:
    with pytest.raises(ValueError, match="not-a-net"):
        ContainerRules.build("a", allowed_ips=["not-a-net"])


# -- helpers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3.4", ipaddress.IPv4Address("1.2.3.4")),
        ("::ffff:1.2.3.4", ipaddress.IPv4Address("1.2.3.4")),
        ("::FFFF:102:304", ipaddress.IPv4Address("1.2.3.4")),
        ("::1", ipaddress.IPv6Address("::1")),
        ("fe80::1%eth0", ipaddress.IPv6Address("fe80::1")),
        ("localhost", None),
        ("", None),
        ("1.2.3.4:80", None),
    ],
)
def test_parse_ip(text: str, expected: Any) -> None:
    assert parse_ip(text) == expected


def test_parse_networks_and_in_networks() -> None:
    networks = parse_networks(["10.0.0.5/24", "::1", "192.168.0.0/16"])
    assert networks == (
        ipaddress.ip_network("10.0.0.0/24"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("192.168.0.0/16"),
    )
    assert in_networks("10.0.0.200", networks)
    assert in_networks("::1", networks)
    assert in_networks("::ffff:192.168.3.4", networks)
    assert not in_networks("10.0.1.0", networks)
    assert not in_networks("garbage", networks)
    assert not in_networks("10.0.0.1", ())


# -- delegated subscriptions -----------------------------------------------------------------------


def delegated(
    container_id: str = "ext", *, owner: str = OWNER, expiry: int = 2_000_000_000
) -> DelegatedSubscriptionRequest:
    return DelegatedSubscriptionRequest(
        subscription=SubscriptionRequest(
            owner=owner,
            container_id=container_id,
            active_at=0,
            frequency=1,
            period=0,
            redundancy=1,
            max_gas_price=10**9,
            max_gas_limit=100_000,
            inputs="",
        ),
        signature=Signature(nonce=0, expiry=expiry, v=27, r=2**255, s=1),
        data={"secret": "not echoed"},
    )


def delegated_rejection(g: Guardian, request: DelegatedSubscriptionRequest, **kwargs: Any) -> tuple[str, Any]:
    kwargs.setdefault("chain_enabled", True)
    kwargs.setdefault("now", 1_000_000_000.0)
    with pytest.raises(AdmissionError) as info:
        g.check_delegated(request, **kwargs)
    return info.value.message, info.value.params


def test_delegated_accepted() -> None:
    assert DEFAULT.check_delegated(delegated("ext,internal,prover"), chain_enabled=True, now=1e9) is None


def test_delegated_chain_not_enabled_params_are_the_submission() -> None:
    request = delegated("nope", expiry=1)  # later rules would fail too; this one wins
    message, params = delegated_rejection(DEFAULT, request, chain_enabled=False)
    assert message == "Chain not enabled"
    expected = {
        "subscription": {
            "owner": OWNER,
            "container_id": "nope",
            "active_at": 0,
            "frequency": 1,
            "period": 0,
            "redundancy": 1,
            "max_gas_price": 10**9,
            "max_gas_limit": 100_000,
            "inputs": "",
        },
        "signature": {"nonce": 0, "expiry": 1, "v": 27, "r": 2**255, "s": 1},
    }
    assert params == {"delegated_subscription": expected}
    # the params must be JSON-serialisable (the reference's were not) and leave out the data
    assert msgspec.json.decode(msgspec.json.encode(params)) == {"delegated_subscription": expected}


@pytest.mark.parametrize(
    ("expiry", "now", "expired"), [(99, 100.0, True), (100, 100.0, True), (101, 100.99, False), (101, 101.0, True)]
)
def test_delegated_signature_expired(expiry: int, now: float, expired: bool) -> None:
    request = delegated(expiry=expiry)
    if expired:
        message, params = delegated_rejection(DEFAULT, request, now=now)
        assert message == "Signature expired"
        assert params["delegated_subscription"]["signature"]["expiry"] == expiry
        assert params["delegated_subscription"]["subscription"]["owner"] == OWNER
    else:
        DEFAULT.check_delegated(request, chain_enabled=True, now=now)


def test_expired_beats_container_rules() -> None:
    assert delegated_rejection(DEFAULT, delegated("nope", expiry=1))[0] == "Signature expired"


@pytest.mark.parametrize(
    ("container_id", "expected"),
    [
        ("ext,nope", ("Container not supported", {"container": "nope"})),
        ("", ("Container not supported", {"container": ""})),
        ("ext, ext2", ("Container not supported", {"container": " ext2"})),  # no trimming
        ("ext,", ("Container not supported", {"container": ""})),
        ("internal,ext", ("First container must be external", {"first_container": "internal"})),
    ],
)
def test_delegated_containers_split_on_commas(container_id: str, expected: tuple[str, Any]) -> None:
    assert delegated_rejection(DEFAULT, delegated(container_id)) == expected


def test_delegated_does_not_check_proofs() -> None:
    DEFAULT.check_delegated(delegated("ext"), chain_enabled=True, now=0)


def test_delegated_allowed_delegate_addresses_case_insensitive() -> None:
    g = guardian(
        ContainerRules.build("a", allowed_delegate_addresses=[OWNER.upper().replace("0X", "0x")]),
        ContainerRules.build("b", allowed_delegate_addresses=["0x" + "1" * 40]),
        ContainerRules.build("open"),
    )
    g.check_delegated(delegated("a,open", owner=OWNER.lower()), chain_enabled=True, now=0)
    g.check_delegated(delegated("a", owner=OWNER), chain_enabled=True, now=0)
    # the error names the owner exactly as submitted
    assert delegated_rejection(g, delegated("open,a,b", owner=OWNER), now=0) == (
        "Container not allowed for address",
        {"container": "b", "address": OWNER},
    )


def test_delegated_ignores_ip_and_onchain_allow_lists() -> None:
    g = guardian(ContainerRules.build("a", allowed_ips=["10.0.0.0/8"], allowed_addresses=["0x" + "2" * 40]))
    g.check_delegated(delegated("a"), chain_enabled=True, now=0)


# -- properties ----------------------------------------------------------------------------------


@st.composite
def networks(draw: st.DrawFn) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if draw(st.booleans()):
        address: Any = ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1)))
        prefix = draw(st.integers(0, 32))
    else:
        address = ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1)))
        prefix = draw(st.integers(0, 128))
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


@st.composite
def client_for(draw: st.DrawFn, nets: list[Any]) -> tuple[str, Any]:
    """A client address string plus the address it means; often inside one of ``nets``."""
    if nets and draw(st.booleans()):
        net = draw(st.sampled_from(nets))
        address = net.network_address + draw(st.integers(0, net.num_addresses - 1))
    elif draw(st.booleans()):
        address = ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1)))
    else:
        address = ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1)))
    text = str(address)
    if isinstance(address, ipaddress.IPv4Address) and draw(st.booleans()):
        text = f"::ffff:{address}"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return text, address


@settings(max_examples=150, deadline=None)
@given(data=st.data(), nets=st.lists(networks(), max_size=4))
def test_allows_ip_matches_ipaddress_membership(data: st.DataObject, nets: list[Any]) -> None:
    text, address = data.draw(client_for(nets))
    rules = ContainerRules.build("c", allowed_ips=[str(n) for n in nets])
    expected = not nets or any(address in n for n in nets)
    assert rules.allows_ip(text) is expected
    g = guardian(rules)
    if expected:
        g.check_job(job("c"), text)
    else:
        assert rejection(g, job("c"), text) == (
            "Container not allowed for address",
            {"container": "c", "address": text},
        )


POOL = ["a", "b", "c", "d", "ghost"]


@st.composite
def configured(draw: st.DrawFn) -> dict[str, ContainerRules]:
    rules: dict[str, ContainerRules] = {}
    for cid in POOL[:-1]:
        if draw(st.booleans()) or cid == "a":
            rules[cid] = ContainerRules.build(
                cid,
                external=draw(st.booleans()),
                generates_proofs=draw(st.booleans()),
                allowed_ips=draw(st.sampled_from([[], ["10.0.0.0/8"], ["10.1.0.0/16", "::1"]])),
            )
    return rules


def reference_rejection(
    rules: dict[str, ContainerRules], containers: list[str], requires_proof: bool, client: str
) -> tuple[str, Any] | None:
    """The spec's rule list, written out independently as an oracle."""
    if not containers:
        return ("No containers specified", None)
    for cid in containers:
        if cid not in rules:
            return ("Container not supported", {"container": cid})
    if not rules[containers[0]].external:
        return ("First container must be external", {"first_container": containers[0]})
    if requires_proof and not rules[containers[-1]].generates_proofs:
        return ("Container does not generate proof", {"container": containers[-1]})
    address = ipaddress.ip_address(client)
    for cid in containers:
        nets = rules[cid].allowed_ips
        if nets and not any(address in n for n in nets):
            return ("Container not allowed for address", {"container": cid, "address": client})
    return None


@settings(max_examples=200, deadline=None)
@given(
    rules=configured(),
    containers=st.lists(st.sampled_from(POOL), max_size=4),
    requires_proof=st.booleans(),
    client=st.sampled_from(["10.0.0.1", "10.1.2.3", "::1", "8.8.8.8"]),
)
def test_first_failing_rule_wins(
    rules: dict[str, ContainerRules], containers: list[str], requires_proof: bool, client: str
) -> None:
    g = Guardian(rules)
    request = job(*containers, requires_proof=requires_proof)
    expected = reference_rejection(rules, containers, requires_proof, client)
    if expected is None:
        assert g.check_job(request, client) is None
    else:
        assert rejection(g, request, client) == expected


@settings(max_examples=100, deadline=None)
@given(
    allowed=st.lists(st.from_regex(r"0x[0-9a-fA-F]{4}", fullmatch=True), max_size=3),
    owner=st.from_regex(r"0x[0-9a-fA-F]{4}", fullmatch=True),
)
def test_delegate_allow_list_is_case_insensitive_membership(allowed: list[str], owner: str) -> None:
    g = guardian(ContainerRules.build("a", allowed_delegate_addresses=allowed))
    expected = not allowed or owner.lower() in {a.lower() for a in allowed}
    if expected:
        g.check_delegated(delegated("a", owner=owner), chain_enabled=True, now=0)
    else:
        assert delegated_rejection(g, delegated("a", owner=owner), now=0) == (
            "Container not allowed for address",
            {"container": "a", "address": owner},
        )


# -- on-chain subscriptions ------------------------------------------------------------------


def onchain(container_id: str, owner: str = OWNER) -> Subscription:
    return Subscription(
        id=3,
        owner=owner,
        active_at=0,
        period=0,
        frequency=1,
        redundancy=1,
        max_gas_price=1,
        max_gas_limit=1,
        container_id=container_id,
    )


ONCHAIN_RULES = guardian(
    ContainerRules.build("ext"),
    ContainerRules.build("internal", external=False),
    ContainerRules.build("owned", allowed_addresses=[OWNER.upper().replace("0X", "0x")]),
    ContainerRules.build("delegates_only", allowed_delegate_addresses=["0x" + "99" * 20]),
)


@pytest.mark.parametrize(
    ("container_id", "owner", "expected"),
    [
        ("ext", OWNER, None),
        ("ext,internal", OWNER, None),
        ("owned", OWNER.lower(), None),  # address checks ignore case
        ("delegates_only", OWNER, None),  # delegate allow-lists do not apply on-chain
        ("nope", OWNER, ("Container not supported", {"container": "nope"})),
        ("", OWNER, ("Container not supported", {"container": ""})),  # a cancelled subscription
        ("internal,ext", OWNER, ("First container must be external", {"first_container": "internal"})),
        (
            "ext,owned",
            "0x" + "12" * 20,
            ("Container not allowed for address", {"container": "owned", "address": "0x" + "12" * 20}),
        ),
    ],
)
def test_onchain_subscription_rules(container_id: str, owner: str, expected: tuple[str, Any] | None) -> None:
    subscription = onchain(container_id, owner)
    if expected is None:
        ONCHAIN_RULES.check_subscription(subscription)
        return
    with pytest.raises(AdmissionError) as info:
        ONCHAIN_RULES.check_subscription(subscription)
    assert (info.value.message, info.value.params) == expected
