"""The one backoff every retry loop uses: starts at ``first``, grows by ``factor``, never
passes ``limit`` (property-tested), and the named policies are sane."""

from __future__ import annotations

import math
from itertools import islice

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infernet_core.backoff import CHAIN_POLL, RPC_CALL, STORE_WRITE, Backoff

policies = st.builds(
    lambda first, extra, factor: Backoff(first=first, limit=first + extra, factor=factor),
    first=st.floats(min_value=0.001, max_value=10),
    extra=st.floats(min_value=0, max_value=100),
    factor=st.floats(min_value=1, max_value=10),
)


@given(policy=policies, failures=st.integers(min_value=1, max_value=10_000))
def test_delays_grow_from_first_and_never_pass_the_limit(policy: Backoff, failures: int) -> None:
    delay = policy.after(failures)
    assert policy.first <= delay <= policy.limit
    assert policy.after(failures) <= policy.after(failures + 1)
    grows = (failures - 1) * math.log(policy.factor)
    expected = (
        policy.limit
        if grows >= math.log(policy.limit / policy.first)
        else policy.first * policy.factor ** (failures - 1)
    )
    assert delay == pytest.approx(expected, rel=1e-9)


@given(policy=policies)
def test_the_delay_sequence_is_after_1_2_3(policy: Backoff) -> None:
    assert list(islice(policy.delays(), 6)) == [policy.after(n) for n in range(1, 7)]


def test_named_policies() -> None:
    assert list(islice(RPC_CALL.delays(), 7)) == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert CHAIN_POLL.after(1) == 0.5 and CHAIN_POLL.after(100) == 10.0
    assert STORE_WRITE.after(1) == 0.05 and STORE_WRITE.after(50) == 2.0


@pytest.mark.parametrize(("first", "limit", "factor"), [(0, 1, 2), (2, 1, 2), (1, 2, 0.5)])
def test_a_backoff_must_make_sense(first: float, limit: float, factor: float) -> None:
    with pytest.raises(ValueError):
        Backoff(first=first, limit=limit, factor=factor)
