"""Rate limits with an injected clock, so tests move time instead of sleeping.

`TokenBucket` meters one stream (a connection's messages); `KeyedBuckets`
meters many (registrations per address); `FailureThrottle` counts failed
logins per address or username and blocks with a growing backoff.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]

# why: an attacker inventing keys must not grow these tables without bound.
MAX_TRACKED_KEYS = 100_000


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
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_block = max_block
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
                if len(self._keys) >= MAX_TRACKED_KEYS:
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

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)

    def _prune(self, now: float) -> None:
        self._keys = {
            key: state
            for key, state in self._keys.items()
            if state.blocked_until > now or (state.times and state.times[-1] > now - self.window)
        }
