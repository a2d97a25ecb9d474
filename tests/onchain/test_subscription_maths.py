"""Interval maths of on-chain subscriptions (pure; the contract cross-check is in tests/chain)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infernet_core.subscriptions import Subscription, subscription_interval

UINT32 = st.integers(min_value=0, max_value=2**32 - 1)


def sub(**fields: object) -> Subscription:
    base: dict[str, object] = {
        "owner": "0x" + "11" * 20,
        "active_at": 1000,
        "period": 60,
        "frequency": 3,
        "redundancy": 1,
        "max_gas_price": 10**9,
        "max_gas_limit": 10**6,
        "container_id": "a,b",
        "id": 7,
    }
    base.update(fields)
    return Subscription(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("now", "expected"), [(1000, 1), (1059, 1), (1060, 2), (1119, 2), (1120, 3), (1180, 4), (10_000, 151)]
)
def test_interval_by_the_contract_formula(now: int, expected: int) -> None:
    assert subscription_interval(1000, 60, now) == expected


def test_callback_is_always_interval_one() -> None:
    assert subscription_interval(5, 0, 5) == 1
    assert subscription_interval(5, 0, 10**9) == 1


def test_interval_before_activation_is_an_error() -> None:
    with pytest.raises(ValueError, match="not active until 1000"):
        subscription_interval(1000, 60, 999)


@given(active_at=UINT32, period=st.integers(min_value=1, max_value=2**32 - 1), offset=UINT32)
def test_interval_bounds_contain_now(active_at: int, period: int, offset: int) -> None:
    now = active_at + offset
    interval = subscription_interval(active_at, period, now)
    # interval k covers [active_at + (k-1)*period, active_at + k*period)
    assert active_at + (interval - 1) * period <= now < active_at + interval * period


@given(active_at=UINT32, period=UINT32, a=UINT32, b=UINT32)
def test_interval_never_goes_backwards(active_at: int, period: int, a: int, b: int) -> None:
    early, late = sorted((active_at + a, active_at + b))
    assert subscription_interval(active_at, period, early) <= subscription_interval(active_at, period, late)


def test_activity_is_inclusive_like_the_contract() -> None:
    subscription = sub()
    assert not subscription.is_active(999)
    assert subscription.is_active(1000)


@pytest.mark.parametrize(("now", "past"), [(999, False), (1000, False), (1179, False), (1180, True)])
def test_past_last_interval(now: int, past: bool) -> None:
    assert sub().is_past_last_interval(now) is past


@given(offset=st.integers(min_value=0, max_value=10**6))
def test_fulfilled_interval_is_capped_and_matches_the_contract(offset: int) -> None:
    subscription = sub()
    timestamp = 1000 + offset
    assert subscription.fulfilled_interval(timestamp) == min(subscription.interval(timestamp), 3)
    assert 1 <= subscription.fulfilled_interval(timestamp) <= 3


def test_fulfilled_interval_has_no_off_by_one() -> None:
    # The reference maps a delivery 10 s into interval 1 to interval 0; the contract says 1.
    assert sub().fulfilled_interval(1010) == 1
    assert sub().fulfilled_interval(1070) == 2


def test_containers_and_existence() -> None:
    assert sub().containers == ["a", "b"]
    assert sub(container_id="").containers == [""]
    assert sub().exists
    assert not sub(owner="0x" + "00" * 20).exists
