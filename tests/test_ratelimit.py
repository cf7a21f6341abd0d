"""Rate limits driven by a fake clock: no test waits for time to pass."""

from __future__ import annotations

import pytest

from chatd.ratelimit import FailureThrottle, KeyedBuckets, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.5)
    clock.now += 100
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]


def test_rate_zero_means_unlimited():
    bucket = TokenBucket(rate=0, burst=1, clock=FakeClock())
    assert all(bucket.take() == 0.0 for _ in range(1000))


def test_keyed_buckets_keep_keys_apart():
    clock = FakeClock()
    buckets = KeyedBuckets(rate=1 / 60, burst=2, clock=clock)
    assert buckets.take("10.0.0.1") == buckets.take("10.0.0.1") == 0.0
    assert buckets.take("10.0.0.1") == pytest.approx(60)
    assert buckets.take("10.0.0.2") == 0.0


def test_failures_block_with_growing_backoff_and_success_clears():
    clock = FakeClock()
    throttle = FailureThrottle(limit=5, window=60, clock=clock)
    for _ in range(4):
        throttle.failed("alice")
    assert throttle.retry_after("alice") == 0.0
    throttle.failed("alice")
    assert throttle.retry_after("alice") == pytest.approx(60)
    clock.now += 61
    for _ in range(5):
        throttle.failed("alice")
    assert throttle.retry_after("alice") == pytest.approx(120)
    throttle.succeeded("alice")
    assert throttle.retry_after("alice") == 0.0


def test_failures_spread_over_more_than_the_window_do_not_block():
    clock = FakeClock()
    throttle = FailureThrottle(limit=3, window=60, clock=clock)
    for _ in range(10):
        throttle.failed("bob")
        clock.now += 31
    assert throttle.retry_after("bob") == 0.0


def test_backoff_is_capped():
    clock = FakeClock()
    throttle = FailureThrottle(limit=1, window=60, max_block=300, clock=clock)
    for _ in range(10):
        throttle.failed("x")
        clock.now += throttle.retry_after("x") + 1
    throttle.failed("x")
    assert throttle.retry_after("x") == pytest.approx(300)
