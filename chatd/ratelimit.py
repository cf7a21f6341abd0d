"""Rate limits with an injected clock, so tests move time instead of sleeping.

`TokenBucket` meters one stream (a connection's messages); `KeyedBuckets`
meters many (registrations per address); `FailureThrottle` counts failures
per key and blocks with a growing backoff; `LoginThrottle` applies three of
them to failed logins.

The keyed ones keep their state in a `ThrottleStorage`: this process's
memory (`IN_MEMORY`, the default: each server its own budget, forgotten on
restart), or Redis (`chatd.ratelimit_redis.RedisThrottleStorage`: every node
of a cluster counts against one budget). The policy (limits, windows, which
keys) is decided here, once; a storage keeps the per-key state and updates
it atomically at the time it is given, so the throttle's clock is the only
one, and tests fake it for either storage.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from chatd.names import username_key

Clock = Callable[[], float]

# why: an attacker inventing keys must not grow these tables without bound.
MAX_TRACKED_KEYS = 100_000
# why: a guesser spreading one account over this many addresses is stopped as one.
ACCOUNT_LIMIT_FACTOR = 4
# why: a whole office behind one NAT address must not block itself with typos.
ADDRESS_LIMIT_FACTOR = 10
# why: longer than any valid username, so cutting never merges two valid names.
ACCOUNT_KEY_CHARS = 33
# why: past this many doublings any block is max_block; 2 ** 1024 does not even fit a float,
# and a key blocked hourly without a break passes 1024 strikes in about 43 days.
MAX_DOUBLINGS = 60


@dataclass(slots=True)
class BucketLevel:
    """A token bucket's tokens as of `stamp`; its rate and burst are its owner's."""

    tokens: float
    stamp: float

    def take(self, now: float, rate: float, burst: float) -> float:
        """Refill up to `now`, then spend one token: 0.0 when allowed, else the seconds
        until one is available (`rate` > 0)."""
        # why: with a shared store another node's clock may be a little behind this one's;
        # a bucket's time never runs backwards (a no-op for a monotonic clock).
        self.tokens = min(burst, self.tokens + max(0.0, now - self.stamp) * rate)
        self.stamp = max(self.stamp, now)
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / rate

    def full(self, now: float, rate: float, burst: float) -> bool:
        return self.tokens + max(0.0, now - self.stamp) * rate >= burst


class TokenBucket:
    """`rate` tokens a second up to `burst`; a rate of 0 means unlimited."""

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = clock
        self._level = BucketLevel(self.burst, clock())

    def take(self) -> float:
        """Spend one token: 0.0 when allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        return self._level.take(self._clock(), self.rate, self.burst)

    @property
    def full(self) -> bool:
        return self.rate <= 0 or self._level.full(self._clock(), self.rate, self.burst)


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """After `limit` failures within `window` seconds a key is blocked.

    The first block lasts `window` seconds and each further one twice as long
    as the last, up to `max_block`, so guessing stays slow however patient the
    guesser. The count of blocks starts again once `max_block` has passed
    since the last one ended. A `limit` of 0 or less blocks nothing.
    """

    limit: int
    window: float = 60.0
    max_block: float = 3600.0

    def block(self, strikes: int) -> float:
        """How long the `strikes`-th block in a row lasts."""
        return min(self.max_block, self.window * 2.0 ** min(strikes - 1, MAX_DOUBLINGS))


class FailureCounter(Protocol):
    """Failures per key under one FailurePolicy: the state and its atomic updates.

    Every time is the caller's (`now`), read from the throttle's clock.
    """

    def retry_after(self, key: str, now: float) -> float:
        """Seconds from `now` until `key` may try again; 0.0 when it may now."""
        ...

    def failed(self, key: str, now: float) -> None:
        """Count a failure of `key` at `now`; the policy's limit-th in its window blocks it."""
        ...

    def refused(self, key: str) -> bool:
        """Count an attempt refused while `key` is blocked; True for the block's first."""
        ...

    def succeeded(self, key: str) -> None:
        """Forget `key`'s failures and blocks."""
        ...


class BucketStore(Protocol):
    """A token bucket per key, all of one rate and burst, each created full on first use."""

    def take(self, key: str, now: float) -> float:
        """Spend one of `key`'s tokens at `now`: 0.0 when allowed, else the seconds to wait."""
        ...


class ThrottleStorage(Protocol):
    """Where keyed throttles keep their state; `scope` names one throttle among others."""

    @property
    def default_clock(self) -> Clock:
        """The clock a throttle reads when given none: comparable wherever the state is read."""
        ...

    def failure_counter(self, scope: str, policy: FailurePolicy) -> FailureCounter: ...

    def bucket_store(self, scope: str, rate: float, burst: float) -> BucketStore: ...


@dataclass(slots=True)
class _Failures:
    times: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0
    strikes: int = 0
    refusals: int = 0


class MemoryFailureCounter:
    """A FailureCounter in this process's memory, of `max_keys` keys at most; thread-safe."""

    def __init__(self, policy: FailurePolicy, max_keys: int = MAX_TRACKED_KEYS) -> None:
        self.policy = policy
        self.max_keys = max_keys
        self._lock = threading.Lock()  # guards _keys and every _Failures in it
        self._keys: dict[str, _Failures] = {}

    def retry_after(self, key: str, now: float) -> float:
        with self._lock:
            state = self._keys.get(key)
            return 0.0 if state is None else max(0.0, state.blocked_until - now)

    def failed(self, key: str, now: float) -> None:
        policy = self.policy
        with self._lock:
            state = self._keys.get(key)
            if state is None:
                if len(self._keys) >= self.max_keys:
                    self._prune(now)
                state = self._keys[key] = _Failures()
            if state.strikes and now - state.blocked_until > policy.max_block:
                state.strikes = 0
            while state.times and state.times[0] <= now - policy.window:
                state.times.popleft()
            state.times.append(now)
            if len(state.times) >= policy.limit:
                state.strikes += 1
                state.blocked_until = now + policy.block(state.strikes)
                state.times.clear()
                state.refusals = 0

    def refused(self, key: str) -> bool:
        with self._lock:
            state = self._keys.get(key)
            if state is None:
                return False
            state.refusals += 1
            return state.refusals == 1

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)

    @property
    def tracked_keys(self) -> int:
        with self._lock:
            return len(self._keys)

    def _prune(self, now: float) -> None:
        """Forget keys neither blocked nor failing lately; then, if all are, the oldest."""
        self._keys = {
            key: state
            for key, state in self._keys.items()
            if state.blocked_until > now
            or (state.times and state.times[-1] > now - self.policy.window)
        }
        # why: a bound that holds even when every key is active; the oldest matter least.
        excess = len(self._keys) - self.max_keys + 1
        for key in list(self._keys)[: max(excess, 0)]:
            del self._keys[key]


class MemoryBucketStore:
    """A BucketStore in this process's memory, of `max_keys` buckets at most; thread-safe."""

    def __init__(self, rate: float, burst: float, max_keys: int = MAX_TRACKED_KEYS) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._lock = threading.Lock()  # guards _buckets and every level in it
        self._buckets: dict[str, BucketLevel] = {}

    def take(self, key: str, now: float) -> float:
        with self._lock:
            level = self._buckets.get(key)
            if level is None:
                if len(self._buckets) >= self.max_keys:
                    # why: a full bucket is the same as none, so forgetting one changes nothing
                    self._buckets = {
                        key: level
                        for key, level in self._buckets.items()
                        if not level.full(now, self.rate, self.burst)
                    }
                level = self._buckets[key] = BucketLevel(self.burst, now)
            return level.take(now, self.rate, self.burst)


@dataclass(frozen=True, slots=True)
class MemoryStorage:
    """Throttle state in this process's memory: each server its own budget.

    `max_keys` bounds each throttle's table, since keys are the peers' choice.
    """

    max_keys: int = MAX_TRACKED_KEYS

    @property
    def default_clock(self) -> Clock:
        # why: only this process compares its readings, and monotonic ignores clock steps
        return time.monotonic

    def failure_counter(self, scope: str, policy: FailurePolicy) -> MemoryFailureCounter:
        return MemoryFailureCounter(policy, self.max_keys)

    def bucket_store(self, scope: str, rate: float, burst: float) -> MemoryBucketStore:
        return MemoryBucketStore(rate, burst, self.max_keys)


IN_MEMORY = MemoryStorage()


class KeyedBuckets:
    """A token bucket per key (an address, say), created full on first use; thread-safe.

    `rate` tokens a second up to `burst`; a rate of 0 means unlimited.
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Clock | None = None,
        *,
        storage: ThrottleStorage = IN_MEMORY,
        scope: str = "buckets",
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = storage.default_clock if clock is None else clock
        self._store = storage.bucket_store(scope, self.rate, self.burst)

    def take(self, key: str) -> float:
        """Spend one of `key`'s tokens: 0.0 when allowed, else the seconds until one is."""
        if self.rate <= 0:
            return 0.0
        return self._store.take(key, self._clock())


class FailureThrottle:
    """A FailurePolicy (`limit`, `window`, `max_block`) applied to keys; thread-safe."""

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        max_block: float = 3600.0,
        clock: Clock | None = None,
        *,
        storage: ThrottleStorage = IN_MEMORY,
        scope: str = "failures",
    ) -> None:
        self.policy = FailurePolicy(limit, window, max_block)
        self._clock = storage.default_clock if clock is None else clock
        self._counter = storage.failure_counter(scope, self.policy)

    @property
    def enabled(self) -> bool:
        return self.policy.limit > 0

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may try again; 0.0 when it may now."""
        return self._counter.retry_after(key, self._clock()) if self.enabled else 0.0

    def failed(self, key: str) -> None:
        if self.enabled:
            self._counter.failed(key, self._clock())

    def refused(self, key: str) -> bool:
        """Count an attempt refused while `key` is blocked; True for the block's first.

        Refusals cost an attacker nothing, so only the first of each block is
        worth a log line.
        """
        return self.enabled and self._counter.refused(key)

    def succeeded(self, key: str) -> None:
        if self.enabled:
            self._counter.succeeded(key)


@dataclass(frozen=True, slots=True)
class LoginRefusal:
    """A login refused before its password is checked: for how long, why, and whether to log it."""

    retry_after: float
    reason: str
    logged_reason: str
    first: bool


@dataclass(frozen=True, slots=True)
class _LoginScope:
    throttle: FailureThrottle
    key: Callable[[str, str], str]
    reason: str
    logged_reason: str


class LoginThrottle:
    """Failed logins, counted three ways so that one person's typos block only them.

    - per address and account (`limit` a minute): a mistyped password, or a
      guesser at one account from one address. Nobody else behind that
      address is affected, nor the account's owner elsewhere. A correct
      password clears this count.
    - per account from every address (ACCOUNT_LIMIT_FACTOR x `limit`): a
      guesser spreading one account over many addresses. A correct password
      does not clear it, or the owner's logins would keep resetting an attack.
    - per address over every account (ADDRESS_LIMIT_FACTOR x `limit`): a
      sprayer trying a few common passwords on many accounts. Success does not
      clear it either, or logging into one's own account would.

    Each blocks with FailureThrottle's growing backoff. Unknown and known
    names are counted alike, so a refusal says nothing about which exist.
    """

    def __init__(
        self, limit: int, clock: Clock | None = None, *, storage: ThrottleStorage = IN_MEMORY
    ) -> None:
        def throttle(scope: str, scope_limit: int) -> FailureThrottle:
            return FailureThrottle(scope_limit, clock=clock, storage=storage, scope=scope)

        self._here = _LoginScope(
            throttle("login:address-account", limit),
            lambda address, account: f"{address} {account}",
            "too many failed logins for this account from your address",
            "too many failed logins for this account from this address",
        )
        self._scopes = (
            self._here,
            _LoginScope(
                throttle("login:account", limit * ACCOUNT_LIMIT_FACTOR),
                lambda address, account: account,
                "too many failed logins for this account",
                "too many failed logins for this account",
            ),
            _LoginScope(
                throttle("login:address", limit * ADDRESS_LIMIT_FACTOR),
                lambda address, account: address,
                "too many failed logins from your address",
                "too many failed logins from this address",
            ),
        )

    def refusal(self, address: str, username: str) -> LoginRefusal | None:
        """Why a login as `username` from `address` may not even be tried now, or None."""
        account = _account_key(username)
        wait, scope = max(
            (
                (scope.throttle.retry_after(scope.key(address, account)), scope)
                for scope in self._scopes
            ),
            key=lambda pair: pair[0],
        )
        if wait <= 0:
            return None
        first = scope.throttle.refused(scope.key(address, account))
        return LoginRefusal(wait, scope.reason, scope.logged_reason, first)

    def failed(self, address: str, username: str) -> None:
        account = _account_key(username)
        for scope in self._scopes:
            scope.throttle.failed(scope.key(address, account))

    def succeeded(self, address: str, username: str) -> None:
        self._here.throttle.succeeded(self._here.key(address, _account_key(username)))


def _account_key(username: str) -> str:
    """Names compare as accounts do; a name of any length makes a short key."""
    return username_key(username[:ACCOUNT_KEY_CHARS])
