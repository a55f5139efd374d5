"""Token-bucket arithmetic, tested directly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.errors import RateLimited
from api.ratelimit import Bucket, Rate, RateLimiter, take


def test_a_fresh_bucket_allows_a_burst_then_says_when_to_come_back() -> None:
    rate = Rate(per_minute=60, burst=3)
    bucket: Bucket | None = None
    for _ in range(3):
        bucket, wait = take(bucket, rate, now=100.0)
        assert wait == 0.0
    bucket, wait = take(bucket, rate, now=100.0)
    assert wait == pytest.approx(1.0)
    bucket, wait = take(bucket, rate, now=100.5)
    assert wait == pytest.approx(0.5)
    assert take(bucket, rate, now=101.0)[1] == 0.0


def test_idle_time_refills_only_up_to_the_burst() -> None:
    rate = Rate(per_minute=6, burst=2)
    bucket, _ = take(None, rate, now=0.0)
    bucket, _ = take(bucket, rate, now=1000.0)
    assert bucket.tokens == pytest.approx(1.0)


def test_a_clock_going_backwards_takes_nothing_extra() -> None:
    rate = Rate(per_minute=60)
    after, wait = take(Bucket(tokens=0.5, updated=10.0), rate, now=5.0)
    assert after == Bucket(0.5, 5.0)
    assert wait == pytest.approx(0.5)


@given(
    per_minute=st.integers(1, 10_000),
    burst=st.integers(1, 100),
    gaps=st.lists(st.floats(0, 5, allow_nan=False), max_size=200),
)
def test_never_more_than_the_burst_plus_what_time_refilled(
    per_minute: int, burst: int, gaps: list[float]
) -> None:
    rate = Rate(per_minute, burst)
    bucket: Bucket | None = None
    now = allowed = 0.0
    for gap in gaps:
        now += gap
        bucket, wait = take(bucket, rate, now)
        allowed += wait == 0.0
        assert wait >= 0.0
        if wait:
            # Coming back after `wait` seconds succeeds.
            assert take(bucket, rate, now + wait + 1e-9)[1] == 0.0
    assert allowed <= burst + now * rate.per_second + 1e-6


def test_the_limiter_counts_per_key_and_rounds_retry_after_up() -> None:
    clock = [0.0]
    limiter = RateLimiter(Rate(per_minute=2), clock=lambda: clock[0])
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(RateLimited) as limited:
        limiter.check("a")
    assert limited.value.retry_after == 30
    limiter.check("b")
    clock[0] = 29.5
    with pytest.raises(RateLimited) as limited:
        limiter.check("a")
    assert limited.value.retry_after == 1
    clock[0] = 30.0
    limiter.check("a")


def test_no_rate_lets_everything_through() -> None:
    limiter = RateLimiter(None)
    for _ in range(10_000):
        limiter.check("a")


@pytest.mark.parametrize(("per_minute", "burst"), [(0, None), (-1, None), (10, 0)])
def test_a_rate_must_allow_something(per_minute: int, burst: int | None) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Rate(per_minute, burst)
