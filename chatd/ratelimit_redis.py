"""Throttle state in Redis, so that every node of a cluster counts against one budget.

`RedisThrottleStorage` is a `ThrottleStorage` (see chatd/ratelimit.py): the
same FailureThrottle, LoginThrottle and KeyedBuckets, with their per-key
state in Redis instead of one process's memory.

- Atomic, one round trip: each update is a Lua script (`register_script`),
  so two nodes counting the same key at once cannot lose a count.
- The caller's time: the throttle reads its own clock and passes the reading
  to the script. Nodes compare each other's readings, so it must be a wall
  clock (`time.time`, the default here), never `time.monotonic`, which
  counts from each machine's boot. Tests pass a fake clock, as for memory.
- Keys: `chatd:throttle:<scope>:<sha256 hex of the key>`. Keys are the
  peers' choice (addresses, names of any bytes), so they are hashed: a key
  name is always short and printable, and never lets a peer pick another
  scope's key.
- Expiry instead of the in-memory `max_keys`: each write sets the key's TTL
  to how long its state can still change an answer (its window, a block plus
  the time its strike is remembered, a bucket's time to fill up), so Redis
  forgets every key that no longer matters.

When Redis cannot answer (down, unreachable, out of memory, read-only),
the throttles fail open: a check allows, a count is dropped. A login must
not fail because the bus is down, and chatd keeps working on one node's
terms. The price is that during an outage failed logins and registrations
are not limited at all, on any node; an attacker who can take Redis down can
guess passwords at the speed of bcrypt. The operator is told: one warning
when Redis stops answering and one when it answers again. While it does not,
it is asked again once per `retry_interval` only, so that a client's own
timeouts and retries (redis-py 8 retries a refused connection ten times,
about 3 s) are paid once a second, not on every login. Give the storage a
client that fails fast (see `throttle_client`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chatd.ratelimit import Clock, FailurePolicy

log = logging.getLogger(__name__)

KEY_PREFIX = "chatd:throttle"
# why: while Redis is down, how often one check asks it again; the others fail open at once.
RETRY_INTERVAL = 1.0
# why: a login waits this long at most for Redis before it goes on without its limits.
CLIENT_TIMEOUT = 0.5

T = TypeVar("T")

# A failure of KEYS[1] at ARGV[1], under the policy ARGV[2..4] (limit, window, max_block):
# MemoryFailureCounter.failed, in one atomic step. The hash holds `times` (the failures
# in the window, space-separated), `blocked_until`, `strikes` and `refusals`.
_FAILED = """
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local window, max_block = tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'times', 'blocked_until', 'strikes')
local blocked_until = tonumber(state[2]) or 0
local strikes = tonumber(state[3]) or 0
if strikes > 0 and now - blocked_until > max_block then
    strikes = 0
end
local times = {}
for stamp in string.gmatch(state[1] or '', '%S+') do
    if tonumber(stamp) > now - window then
        times[#times + 1] = stamp
    end
end
times[#times + 1] = string.format('%.17g', now)
if #times >= limit then
    strikes = strikes + 1
    blocked_until = now + math.min(max_block, window * 2 ^ (strikes - 1))
    times = {}
    redis.call('HSET', KEYS[1], 'refusals', 0)
end
redis.call('HSET', KEYS[1], 'times', table.concat(times, ' '),
    'blocked_until', string.format('%.17g', blocked_until), 'strikes', strikes)
local keep = window
if strikes > 0 then
    keep = math.max(keep, blocked_until + max_block - now)
end
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.max(1, math.ceil(keep * 1000))))
return 0
"""

# An attempt refused while KEYS[1] is blocked: the block's count of refusals, 0 if no state.
_REFUSED = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
return redis.call('HINCRBY', KEYS[1], 'refusals', 1)
"""

# One token of KEYS[1] at ARGV[1], refilled at ARGV[2] a second up to ARGV[3]:
# BucketLevel.take, in one atomic step. Answers the seconds to wait, as text (a Lua
# number would come back truncated to an integer).
_TAKE = """
local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then
    tokens = tokens - 1
else
    wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
    'stamp', string.format('%.17g', math.max(stamp, now)))
local full_in = (burst - tokens) / rate
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.max(1, math.ceil(full_in * 1000))))
return string.format('%.17g', wait)
"""


def throttle_client(url: str) -> redis.Redis:
    """A client for the throttles that gives up quickly, so an outage costs a login
    CLIENT_TIMEOUT at most: short timeouts and no retries (a check fails open instead)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=CLIENT_TIMEOUT,
        socket_connect_timeout=CLIENT_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )


class RedisOutage:
    """Whether Redis answers: one log line when it stops, one when it answers again.

    While it does not, `worth_asking` lets one caller through per
    `retry_interval` (of `clock`, real time: this is about the link, not the
    throttles' clock) and fails the others open without waiting.
    """

    def __init__(
        self, retry_interval: float = RETRY_INTERVAL, clock: Clock = time.monotonic
    ) -> None:
        self.retry_interval = retry_interval
        self._clock = clock
        self._lock = threading.Lock()  # guards _down and _next_try
        self._down = False
        self._next_try = 0.0

    @property
    def down(self) -> bool:
        return self._down

    def worth_asking(self) -> bool:
        if not self._down:  # the common case reads one attribute, without the lock
            return True
        with self._lock:
            now = self._clock()
            if self._down and now < self._next_try:
                return False
            self._next_try = now + self.retry_interval
            return True

    def failed(self, error: redis.RedisError) -> None:
        with self._lock:
            self._next_try = self._clock() + self.retry_interval
            started, self._down = not self._down, True
        if started:
            log.warning(
                "Redis fails (%s): login and registration limits are not enforced "
                "until it works again",
                error,
            )

    def answered(self) -> None:
        if not self._down:
            return
        with self._lock:
            ended, self._down = self._down, False
        if ended:
            log.warning("Redis works again: login and registration limits are enforced")


class _RedisLink:
    """What the counters and buckets of one storage share: the client, the scripts, the
    outage, and how a key is named."""

    def __init__(self, client: redis.Redis, prefix: str, outage: RedisOutage) -> None:
        self.client = client
        self.prefix = prefix
        self.outage = outage
        self.failed_script = client.register_script(_FAILED)
        self.refused_script = client.register_script(_REFUSED)
        self.take_script = client.register_script(_TAKE)

    def key(self, scope: str, key: str) -> str:
        # why: surrogatepass, because a peer's text may hold lone surrogates, which are its own key
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.prefix}:{scope}:{digest}"

    def ask(self, request: Callable[[], T], fallback: T) -> T:
        """The answer to `request`, or `fallback` (fail open) when Redis does not give one."""
        if not self.outage.worth_asking():
            return fallback
        try:
            answer = request()
        except redis.RedisError as error:
            self.outage.failed(error)
            return fallback
        self.outage.answered()
        return answer


class RedisFailureCounter:
    """A FailureCounter in Redis: one hash per key (see `_FAILED`), expiring when moot."""

    def __init__(self, shared: _RedisLink, scope: str, policy: FailurePolicy) -> None:
        self._redis = shared
        self._scope = scope
        self.policy = policy

    def retry_after(self, key: str, now: float) -> float:
        name = self._redis.key(self._scope, key)
        client = self._redis.client
        blocked_until = self._redis.ask(lambda: client.hget(name, "blocked_until"), None)
        return 0.0 if blocked_until is None else max(0.0, float(blocked_until) - now)

    def failed(self, key: str, now: float) -> None:
        policy = self.policy
        arguments = (now, policy.limit, policy.window, policy.max_block)
        name = self._redis.key(self._scope, key)
        self._redis.ask(lambda: self._redis.failed_script([name], arguments), None)

    def refused(self, key: str) -> bool:
        name = self._redis.key(self._scope, key)
        # why: unknown when Redis is down; a log line too many beats a block unseen
        return int(self._redis.ask(lambda: self._redis.refused_script([name]), 1)) == 1

    def succeeded(self, key: str) -> None:
        name = self._redis.key(self._scope, key)
        self._redis.ask(lambda: self._redis.client.delete(name), 0)


class RedisBucketStore:
    """A BucketStore in Redis: one hash per key (see `_TAKE`), expiring once full again."""

    def __init__(self, shared: _RedisLink, scope: str, rate: float, burst: float) -> None:
        self._redis = shared
        self._scope = scope
        self.rate = rate
        self.burst = burst

    def take(self, key: str, now: float) -> float:
        name = self._redis.key(self._scope, key)
        arguments = (now, self.rate, self.burst)
        return float(self._redis.ask(lambda: self._redis.take_script([name], arguments), 0.0))


class RedisThrottleStorage:
    """Throttle state in Redis through `client`, shared by every node that uses the same
    Redis and `prefix`. The client should fail fast (`throttle_client`); one outage is
    told once, however many throttles use this storage."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = KEY_PREFIX,
        outage: RedisOutage | None = None,
    ) -> None:
        self.outage = RedisOutage() if outage is None else outage
        self._redis = _RedisLink(client, prefix, self.outage)

    @property
    def default_clock(self) -> Clock:
        # why: every node compares its readings with the others'
        return time.time

    def key_name(self, scope: str, key: str) -> str:
        """The name of the Redis key holding `key`'s state in `scope`."""
        return self._redis.key(scope, key)

    def failure_counter(self, scope: str, policy: FailurePolicy) -> RedisFailureCounter:
        return RedisFailureCounter(self._redis, scope, policy)

    def bucket_store(self, scope: str, rate: float, burst: float) -> RedisBucketStore:
        return RedisBucketStore(self._redis, scope, rate, burst)
