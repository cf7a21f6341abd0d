"""Rate limits with an injected clock, so tests move time instead of sleeping.

`TokenBucket` meters one stream (a connection's messages); `KeyedBuckets`
meters many (registrations per address); `FailureThrottle` counts failures
per key and blocks with a growing backoff; `LoginThrottle` applies three of
them to failed logins.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

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


class TokenBucket:
    """`rate` tokens a second up to `burst`; a rate of 0 means unlimited."""

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()

    def take(self) -> float:
        """Spend one token: 0.0 when allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    @property
    def full(self) -> bool:
        now = self._clock()
        return self.rate <= 0 or self._tokens + (now - self._stamp) * self.rate >= self.burst


class KeyedBuckets:
    """One TokenBucket per key (an address, say), created on first use; thread-safe."""

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str) -> float:
        if self.rate <= 0:
            return 0.0
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= MAX_TRACKED_KEYS:
                    self._buckets = {k: b for k, b in self._buckets.items() if not b.full}
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self._clock)
            return bucket.take()


@dataclass(slots=True)
class _Failures:
    times: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0
    strikes: int = 0
    refusals: int = 0


class FailureThrottle:
    """After `limit` failures within `window` seconds a key is blocked.

    The first block lasts `window` seconds and each further one twice as long
    as the last, up to `max_block`, so guessing stays slow however patient the
    guesser. A success clears the key.
    """

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        max_block: float = 3600.0,
        clock: Clock = time.monotonic,
        max_keys: int = MAX_TRACKED_KEYS,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_block = max_block
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, _Failures] = {}

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may try again; 0.0 when it may now."""
        if self.limit <= 0:
            return 0.0
        with self._lock:
            state = self._keys.get(key)
            return 0.0 if state is None else max(0.0, state.blocked_until - self._clock())

    def failed(self, key: str) -> None:
        if self.limit <= 0:
            return
        now = self._clock()
        with self._lock:
            state = self._keys.get(key)
            if state is None:
                if len(self._keys) >= self.max_keys:
                    self._prune(now)
                state = self._keys[key] = _Failures()
            if state.strikes and now - state.blocked_until > self.max_block:
                state.strikes = 0
            while state.times and state.times[0] <= now - self.window:
                state.times.popleft()
            state.times.append(now)
            if len(state.times) >= self.limit:
                state.strikes += 1
                block = min(self.max_block, self.window * 2 ** (state.strikes - 1))
                state.blocked_until = now + block
                state.times.clear()
                state.refusals = 0

    def refused(self, key: str) -> bool:
        """Count an attempt refused while `key` is blocked; True for the block's first.

        Refusals cost an attacker nothing, so only the first of each block is
        worth a log line.
        """
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
            if state.blocked_until > now or (state.times and state.times[-1] > now - self.window)
        }
        # why: a bound that holds even when every key is active; the oldest matter least.
        excess = len(self._keys) - self.max_keys + 1
        for key in list(self._keys)[: max(excess, 0)]:
            del self._keys[key]


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

    def __init__(self, limit: int, clock: Clock = time.monotonic) -> None:
        self._here = _LoginScope(
            FailureThrottle(limit, clock=clock),
            lambda address, account: f"{address} {account}",
            "too many failed logins for this account from your address",
            "too many failed logins for this account from this address",
        )
        self._scopes = (
            self._here,
            _LoginScope(
                FailureThrottle(limit * ACCOUNT_LIMIT_FACTOR, clock=clock),
                lambda address, account: account,
                "too many failed logins for this account",
                "too many failed logins for this account",
            ),
            _LoginScope(
                FailureThrottle(limit * ADDRESS_LIMIT_FACTOR, clock=clock),
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
