"""GCRA, property-tested: bursts up to num_requests, never more than the rate allows over any
stretch of time, a refusal's Retry-After is exact, and the RateLimit headers tell the truth."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infernet_core.ratelimit import Decision, MemoryRateLimiter, RateLimit, decide

limits = st.builds(
    RateLimit,
    num_requests=st.integers(min_value=1, max_value=20),
    period=st.floats(min_value=0.5, max_value=120, allow_nan=False),
)


def run(limit: RateLimit, times: list[float]) -> list[Decision]:
    tat: float | None = None
    decisions = []
    for now in times:
        decision, new_tat = decide(tat, now, limit)
        if new_tat is not None:
            tat = new_tat
        decisions.append(decision)
    return decisions


@given(limit=limits, extra=st.integers(min_value=1, max_value=5))
def test_a_burst_of_num_requests_is_allowed_at_once_and_no_more(limit: RateLimit, extra: int) -> None:
    decisions = run(limit, [100.0] * (limit.num_requests + extra))
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == limit.num_requests
    assert [d.remaining for d in allowed] == list(range(limit.num_requests - 1, -1, -1))
    assert all(not d.allowed and d.remaining == 0 for d in decisions[limit.num_requests :])


@given(limit=limits, gaps=st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), max_size=60))
def test_never_more_than_the_rate_allows_over_any_stretch(limit: RateLimit, gaps: list[float]) -> None:
    times, now = [], 0.0
    for gap in gaps:
        now += gap
        times.append(now)
    allowed = [t for t, d in zip(times, run(limit, times), strict=True) if d.allowed]
    for i, start in enumerate(allowed):
        for j in range(i, len(allowed)):
            stretch = allowed[j] - start
            assert j - i + 1 <= limit.num_requests + stretch / limit.interval + 1e-6


@given(limit=limits, burst=st.integers(min_value=0, max_value=30), wait=st.floats(min_value=0, max_value=5))
def test_a_refusal_says_exactly_when_to_come_back(limit: RateLimit, burst: int, wait: float) -> None:
    now = 50.0
    tat: float | None = None
    for _ in range(limit.num_requests + burst):
        decision, new_tat = decide(tat, now, limit)
        tat = new_tat if new_tat is not None else tat
    now += wait * limit.interval
    decision, _ = decide(tat, now, limit)
    if decision.allowed:
        return
    assert decision.retry_after > 0
    assert decide(tat, now + decision.retry_after, limit)[0].allowed
    assert not decide(tat, now + decision.retry_after * 0.99 - 1e-6, limit)[0].allowed


@given(limit=limits, used=st.integers(min_value=1, max_value=20))
def test_reset_is_when_the_bucket_is_full_again(limit: RateLimit, used: int) -> None:
    used = min(used, limit.num_requests)
    times = [10.0] * used
    last = run(limit, times)[-1]
    # At the reset time a whole burst is allowed again, and not a moment before.
    again = [*times, *[10.0 + last.reset] * limit.num_requests]
    assert all(d.allowed for d in run(limit, again))
    early = [*times, *[10.0 + last.reset - limit.interval / 2] * limit.num_requests]
    assert not all(d.allowed for d in run(limit, early))


def test_headers_of_an_allowed_and_a_refused_request() -> None:
    limit = RateLimit(2, 10.0)
    first, second, third = run(limit, [0.0, 0.0, 1.0])
    assert first.headers() == [(b"ratelimit-limit", b"2"), (b"ratelimit-remaining", b"1"), (b"ratelimit-reset", b"5")]
    assert second.headers()[1:] == [(b"ratelimit-remaining", b"0"), (b"ratelimit-reset", b"10")]
    assert not third.allowed
    assert dict(third.headers()) == {b"ratelimit-limit": b"2", b"ratelimit-remaining": b"0", b"ratelimit-reset": b"9"}
    assert math.isclose(third.retry_after, 4.0) and third.retry_after_seconds == 4


@pytest.mark.parametrize(("num_requests", "period"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_a_limit_must_allow_something(num_requests: int, period: float) -> None:
    with pytest.raises(ValueError):
        RateLimit(num_requests, period)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_memory_limiter_buckets_are_separate_and_bounded() -> None:
    now = [0.0]
    limiter = MemoryRateLimiter(RateLimit(1, 60.0), max_buckets=2, clock=lambda: now[0])
    assert (await limiter.check("a")).allowed
    assert not (await limiter.check("a")).allowed
    assert (await limiter.check("b")).allowed  # another bucket
    assert (await limiter.check("c")).allowed  # a third: "a", the least recently used, is dropped
    assert (await limiter.check("a")).allowed  # dropping only ever lets one through early
    now[0] = 60.0
    assert (await limiter.check("b")).allowed  # its interval has passed
