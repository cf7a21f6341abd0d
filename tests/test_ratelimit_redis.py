"""The limits kept in Redis: what only they do, against the private Redis (tests/redis_server.py).

tests/test_ratelimit.py runs every behaviour of the limits on both storages;
here, nodes sharing one budget, keys named and expiring, Redis down, and the
Lua scripts against the Python they mirror on random histories.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_server import RedisServer
from test_ratelimit import FakeClock

from chatd.config import ServerConfig
from chatd.ratelimit import FailureThrottle, KeyedBuckets, LoginThrottle, MemoryStorage
from chatd.ratelimit_redis import KEY_PREFIX, RedisOutage, RedisThrottleStorage, throttle_client
from chatd.services import Limits

HERE = "too many failed logins for this account from your address"


def throttle_keys(client: redis.Redis) -> list[str]:
    return sorted(key.decode() for key in client.scan_iter(f"{KEY_PREFIX}:*"))


def test_two_nodes_count_against_one_budget(clean_redis: RedisServer):
    clock = FakeClock()
    with throttle_client(clean_redis.url) as first, throttle_client(clean_redis.url) as second:
        nodes = [
            Limits.from_config(
                ServerConfig(login_failures=5, registrations_per_hour=2), clock, redis=client
            )
            for client in (first, second)
        ]
        for n in range(5):
            nodes[n % 2].failed_logins.failed("10.0.0.1", "alice")
        firsts = []
        for node in nodes:
            refusal = node.failed_logins.refusal("10.0.0.1", "alice")
            assert refusal is not None and refusal.reason == HERE
            firsts.append(refusal.first)
        assert firsts == [True, False]  # one block in the cluster, so one node logs it

        assert nodes[0].registrations.take("10.0.0.1") == 0.0
        assert nodes[1].registrations.take("10.0.0.1") == 0.0
        assert nodes[0].registrations.take("10.0.0.1") == pytest.approx(1800)
        assert nodes[1].registrations.take("10.0.0.2") == 0.0


def test_a_correct_password_on_one_node_clears_the_count_on_every_node(redis_client):
    clock = FakeClock()
    nodes = [LoginThrottle(2, clock, storage=RedisThrottleStorage(redis_client)) for _ in "ab"]
    nodes[0].failed("10.0.0.1", "alice")
    nodes[1].succeeded("10.0.0.1", "alice")
    nodes[0].failed("10.0.0.1", "alice")
    assert nodes[1].refusal("10.0.0.1", "alice") is None


def test_from_config_times_shared_limits_by_the_wall_clock_not_the_monotonic_one(redis_client):
    limits = Limits.from_config(ServerConfig(login_failures=1), time.monotonic, redis=redis_client)
    limits.failed_logins.failed("10.0.0.1", "alice")
    [blocked_until] = [
        float(until)
        for until in (
            redis_client.hget(key, "blocked_until") for key in throttle_keys(redis_client)
        )
        if float(until) > 0
    ]
    assert blocked_until == pytest.approx(time.time() + 60, abs=30)


def test_key_names_are_scoped_and_hashed_never_the_peers_text(redis_client):
    clock = FakeClock()
    storage = RedisThrottleStorage(redis_client)
    logins = LoginThrottle(5, clock, storage=storage)
    registrations = KeyedBuckets(1 / 60, 2, clock, storage=storage, scope="registrations")
    for name in ("alice\x1b[31m\n", "\udcff:*", "x" * 1000):
        logins.failed("10.0.0.1", name)
    registrations.take("10.0.0.1 *")
    keys = throttle_keys(redis_client)
    assert len(keys) == 3 + 3 + 1 + 1  # 3 names x (address+account, account) + address + bucket
    scopes = "login:address-account|login:account|login:address|registrations"
    assert all(re.fullmatch(rf"chatd:throttle:({scopes}):[0-9a-f]{{64}}", key) for key in keys)


def test_every_key_expires_once_it_can_no_longer_change_an_answer(redis_client):
    clock = FakeClock()
    storage = RedisThrottleStorage(redis_client)
    failures = FailureThrottle(limit=2, window=60, max_block=3600, clock=clock, storage=storage)
    buckets = KeyedBuckets(rate=1 / 60, burst=3, clock=clock, storage=storage)
    failures.failed("failing")
    for _ in range(2):
        failures.failed("blocked")
    failures.refused("blocked")
    buckets.take("10.0.0.1")

    def seconds_left(scope: str, key: str) -> float:
        return redis_client.pttl(storage.key_name(scope, key)) / 1000

    assert seconds_left("failures", "failing") == pytest.approx(60, abs=1)  # its window
    # the block, then as long as its strike is remembered
    assert seconds_left("failures", "blocked") == pytest.approx(60 + 3600, abs=1)
    assert seconds_left("buckets", "10.0.0.1") == pytest.approx(60, abs=1)  # until full again
    assert len(throttle_keys(redis_client)) == 3


def test_keys_are_gone_from_redis_once_their_time_is_up(redis_client):
    throttle = FailureThrottle(
        limit=5, window=0.05, clock=time.time, storage=RedisThrottleStorage(redis_client)
    )
    throttle.failed("x")
    assert throttle_keys(redis_client)
    deadline = time.monotonic() + 5
    while throttle_keys(redis_client) and time.monotonic() < deadline:
        time.sleep(0.01)  # why: Redis's own expiry is what is tested; it has no event to wait on
    assert throttle_keys(redis_client) == []


class CountingClient:
    """How many commands a client sent (tried to send) to Redis."""

    def __init__(self, client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        self.commands = 0
        send = client.execute_command

        def counted(*args: Any, **options: Any) -> Any:
            self.commands += 1
            return send(*args, **options)

        monkeypatch.setattr(client, "execute_command", counted)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "chatd.ratelimit_redis" and record.levelno >= logging.WARNING
    ]


def test_a_redis_that_is_down_fails_open_and_is_told_once(
    clean_redis: RedisServer, redis_client, caplog, monkeypatch
):
    clock, link_clock = FakeClock(), FakeClock()
    outage = RedisOutage(retry_interval=1.0, clock=link_clock)
    storage = RedisThrottleStorage(redis_client, outage=outage)
    logins = LoginThrottle(2, clock, storage=storage)
    registrations = KeyedBuckets(1 / 3600, 1, clock, storage=storage)
    sent = CountingClient(redis_client, monkeypatch)
    caplog.set_level(logging.WARNING)

    with clean_redis.down():
        for _ in range(3):
            assert logins.refusal("10.0.0.1", "alice") is None
            logins.failed("10.0.0.1", "alice")
            logins.succeeded("10.0.0.1", "alice")
            assert registrations.take("10.0.0.1") == 0.0
            link_clock.now += 0.5
        assert outage.down
        # asked once, then once a retry_interval while it stays down, not on every check
        assert sent.commands == 2
    assert len(warnings_of(caplog)) == 1
    assert "fails" in warnings_of(caplog)[0]

    link_clock.now += 1
    for _ in range(2):
        logins.failed("10.0.0.1", "alice")
    refusal = logins.refusal("10.0.0.1", "alice")
    assert refusal is not None and refusal.reason == HERE
    assert not outage.down
    assert len(warnings_of(caplog)) == 2
    assert "works again" in warnings_of(caplog)[1]


def test_a_redis_that_refuses_writes_fails_open_too(clean_redis: RedisServer, redis_client, caplog):
    logins = LoginThrottle(1, FakeClock(), storage=RedisThrottleStorage(redis_client))
    clean_redis.command("CONFIG", "SET", "maxmemory", "1")
    logins.failed("10.0.0.1", "alice")
    assert logins.refusal("10.0.0.1", "alice") is None
    assert "maxmemory" in warnings_of(caplog)[0]


# -- the Lua scripts against the Python they mirror --------------------------------


def same(memory: object, shared: object) -> bool:
    """Equal answers; seconds within rounding (both compute in doubles, in another order)."""
    if isinstance(memory, float) and isinstance(shared, float):
        return memory == pytest.approx(shared, rel=1e-12, abs=1e-9)
    return memory == shared


KEYS = st.sampled_from(["a", "b"])
# why: time moves in windows, often exactly one or just either side of one, so that failures
# meet in a window or not, blocks end, strikes are remembered or forgotten at the boundaries;
# failures come often enough to reach the limit.
WINDOWS = st.one_of(st.sampled_from([0.0, 0.5, 0.99, 1.0, 1.01, 2.0]), st.floats(0, 3))
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), WINDOWS),
        st.tuples(
            st.sampled_from(["failed", "failed", "retry_after", "refused", "succeeded"]), KEYS
        ),
    ),
    max_size=40,
)
scopes = (f"differential-{n}" for n in itertools.count())


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    limit=st.integers(1, 4),
    window=st.floats(1, 100),
    blocks=st.one_of(st.sampled_from([1.0, 2.0, 4.0]), st.floats(0.5, 20)),
    steps=STEPS,
)
def test_failures_in_redis_answer_as_in_memory(redis_client, limit, window, blocks, steps):
    """Steps advance the clock by windows; max_block is `blocks` windows."""
    clock = FakeClock()
    max_block = blocks * window
    scope = next(scopes)
    throttles = [
        FailureThrottle(limit, window, max_block, clock, storage=storage, scope=scope)
        for storage in (MemoryStorage(), RedisThrottleStorage(redis_client))
    ]
    for action, argument in steps:
        if action == "advance":
            clock.now += argument * window
            continue
        memory, shared = (getattr(throttle, action)(argument) for throttle in throttles)
        assert same(memory, shared), (action, argument, memory, shared)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rate=st.floats(0.001, 10),
    burst=st.floats(0, 5),
    steps=st.lists(st.one_of(st.floats(-5, 100), KEYS), max_size=40),
)
def test_buckets_in_redis_answer_as_in_memory(redis_client, rate, burst, steps):
    """Time may step back a little: nodes' clocks differ, and a bucket is shared."""
    clock = FakeClock()
    scope = next(scopes)
    buckets = [
        KeyedBuckets(rate, burst, clock, storage=storage, scope=scope)
        for storage in (MemoryStorage(), RedisThrottleStorage(redis_client))
    ]
    for step in steps:
        if isinstance(step, float):
            clock.now += step
            continue
        memory, shared = (bucket.take(step) for bucket in buckets)
        assert same(memory, shared), (step, memory, shared)
