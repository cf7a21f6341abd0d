"""Rate limits driven by a fake clock: no test waits for time to pass.

The keyed limits' tests run on each storage, with ids ending `[memory]` and
`[redis]` (the private Redis of tests/redis_server.py): both must behave
alike. What only Redis does (nodes sharing it, expiry, outages) is in
tests/test_ratelimit_redis.py.
"""

from __future__ import annotations

import pytest

from chatd.ratelimit import (
    FailurePolicy,
    FailureThrottle,
    KeyedBuckets,
    LoginThrottle,
    MemoryFailureCounter,
    MemoryStorage,
    ThrottleStorage,
    TokenBucket,
)
from chatd.ratelimit_redis import RedisThrottleStorage


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> ThrottleStorage:
    """Where the keyed limits keep their state: this process, or an emptied private Redis."""
    if request.param == "memory":
        return MemoryStorage()
    return RedisThrottleStorage(request.getfixturevalue("redis_client"))


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


def test_keyed_buckets_keep_keys_apart(storage):
    clock = FakeClock()
    buckets = KeyedBuckets(rate=1 / 60, burst=2, clock=clock, storage=storage)
    assert buckets.take("10.0.0.1") == buckets.take("10.0.0.1") == 0.0
    assert buckets.take("10.0.0.1") == pytest.approx(60)
    assert buckets.take("10.0.0.2") == 0.0
    clock.now += 60
    assert buckets.take("10.0.0.1") == 0.0
    assert buckets.take("10.0.0.1") == pytest.approx(60)


def test_keyed_buckets_at_rate_zero_are_unlimited(storage):
    buckets = KeyedBuckets(rate=0, burst=0, clock=FakeClock(), storage=storage)
    assert all(buckets.take("10.0.0.1") == 0.0 for _ in range(100))


def test_failures_block_with_growing_backoff_and_success_clears(storage):
    clock = FakeClock()
    throttle = FailureThrottle(limit=5, window=60, clock=clock, storage=storage)
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


def test_failures_spread_over_more_than_the_window_do_not_block(storage):
    clock = FakeClock()
    throttle = FailureThrottle(limit=3, window=60, clock=clock, storage=storage)
    for _ in range(10):
        throttle.failed("bob")
        clock.now += 31
    assert throttle.retry_after("bob") == 0.0


def test_backoff_is_capped(storage):
    clock = FakeClock()
    throttle = FailureThrottle(limit=1, window=60, max_block=300, clock=clock, storage=storage)
    for _ in range(10):
        throttle.failed("x")
        clock.now += throttle.retry_after("x") + 1
    throttle.failed("x")
    assert throttle.retry_after("x") == pytest.approx(300)


def test_a_failure_one_window_old_no_longer_counts(storage):
    clock = FakeClock()
    throttle = FailureThrottle(limit=2, window=60, clock=clock, storage=storage)
    throttle.failed("x")
    clock.now += 60
    throttle.failed("x")
    assert throttle.retry_after("x") == 0.0
    clock.now += 59.5
    throttle.failed("x")
    assert throttle.retry_after("x") == pytest.approx(60)


def test_strikes_are_forgotten_once_max_block_has_passed_without_a_block(storage):
    clock = FakeClock()
    throttle = FailureThrottle(limit=1, window=60, max_block=300, clock=clock, storage=storage)
    throttle.failed("x")
    clock.now += 60 + 300  # the block's end, then exactly max_block: still remembered
    throttle.failed("x")
    assert throttle.retry_after("x") == pytest.approx(120)
    clock.now += 120 + 300.5
    throttle.failed("x")
    assert throttle.retry_after("x") == pytest.approx(60)


def test_blocks_stay_at_max_block_however_many_there_were():
    assert FailurePolicy(limit=1, window=60, max_block=3600).block(5000) == 3600


def test_tracked_failures_stay_bounded_even_when_every_key_is_active():
    counter = MemoryFailureCounter(FailurePolicy(limit=5, window=60), max_keys=10)
    for n in range(100):
        counter.failed(f"10.0.0.{n}", now=1000.0)
    assert counter.tracked_keys == 10


def test_making_room_forgets_quiet_keys_before_active_ones():
    counter = MemoryFailureCounter(FailurePolicy(limit=2, window=60), max_keys=4)
    counter.failed("quiet", now=1000.0)
    counter.failed("also quiet", now=1000.0)
    for _ in range(2):
        counter.failed("blocked", now=1061.0)
    counter.failed("a", now=1061.0)
    counter.failed("b", now=1061.0)
    assert counter.tracked_keys == 3
    assert counter.retry_after("blocked", now=1061.0) == pytest.approx(60)


def test_only_the_first_refusal_of_a_block_is_reported_as_first(storage):
    clock = FakeClock()
    throttle = FailureThrottle(limit=1, window=60, clock=clock, storage=storage)
    throttle.failed("x")
    assert [throttle.refused("x") for _ in range(3)] == [True, False, False]
    clock.now += 61
    throttle.failed("x")
    assert throttle.refused("x") is True
    assert throttle.refused("never failed") is False


ACCOUNT = "too many failed logins for this account"
HERE = "too many failed logins for this account from your address"
ADDRESS = "too many failed logins from your address"


def reason(throttle: LoginThrottle, address: str, username: str) -> str | None:
    refusal = throttle.refusal(address, username)
    return None if refusal is None else refusal.reason


def test_failures_for_one_name_block_that_name_from_that_address_only(storage):
    throttle = LoginThrottle(limit=5, clock=FakeClock(), storage=storage)
    for _ in range(5):
        throttle.failed("10.0.0.1", "nosuchuser")
    refusal = throttle.refusal("10.0.0.1", "NoSuchUser")
    assert refusal is not None and refusal.reason == HERE
    assert refusal.retry_after == pytest.approx(60)
    assert throttle.refusal("10.0.0.1", "dave") is None
    assert throttle.refusal("10.0.0.2", "nosuchuser") is None


def test_guessing_one_account_from_many_addresses_blocks_the_account_everywhere(storage):
    throttle = LoginThrottle(limit=5, clock=FakeClock(), storage=storage)
    for n in range(3):
        for _ in range(5):
            throttle.failed(f"10.0.0.{n}", "alice")
    assert throttle.refusal("10.0.9.9", "alice") is None
    for _ in range(5):
        throttle.failed("10.0.0.3", "alice")
    assert reason(throttle, "10.0.9.9", "alice") == ACCOUNT
    assert throttle.refusal("10.0.0.3", "bob") is None


def test_spraying_many_accounts_from_one_address_meets_the_address_ceiling(storage):
    throttle = LoginThrottle(limit=5, clock=FakeClock(), storage=storage)
    for n in range(49):
        throttle.failed("10.0.0.1", f"user{n}")
    assert throttle.refusal("10.0.0.1", "dave") is None
    throttle.failed("10.0.0.1", "user49")
    assert reason(throttle, "10.0.0.1", "dave") == ADDRESS
    assert throttle.refusal("10.0.0.2", "dave") is None


def test_a_correct_password_clears_its_address_and_account_only(storage):
    throttle = LoginThrottle(limit=5, clock=FakeClock(), storage=storage)
    for _ in range(4):
        throttle.failed("10.0.0.9", "alice")
    throttle.succeeded("10.0.0.9", "alice")
    for _ in range(4):
        throttle.failed("10.0.0.9", "alice")
    assert throttle.refusal("10.0.0.9", "alice") is None
    for n in range(2):
        for _ in range(5):
            throttle.failed(f"10.0.0.{n}", "alice")
    throttle.succeeded("10.0.0.9", "alice")
    for _ in range(2):
        throttle.failed("10.0.0.9", "alice")
    assert reason(throttle, "10.0.0.8", "alice") == ACCOUNT
    assert reason(throttle, "10.0.0.0", "alice") is not None


def test_overlong_names_share_a_short_key(storage):
    throttle = LoginThrottle(limit=2, clock=FakeClock(), storage=storage)
    throttle.failed("10.0.0.1", "x" * 40 + "a")
    throttle.failed("10.0.0.1", "x" * 40 + "b")
    assert reason(throttle, "10.0.0.1", "x" * 50) == HERE


def test_a_limit_of_zero_never_refuses(storage):
    throttle = LoginThrottle(limit=0, clock=FakeClock(), storage=storage)
    for _ in range(1000):
        throttle.failed("10.0.0.1", "alice")
    assert throttle.refusal("10.0.0.1", "alice") is None
