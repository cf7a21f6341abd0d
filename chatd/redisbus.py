"""The cluster's bus on Redis pub/sub: one channel, a publisher thread and a subscriber thread.

Redis pub/sub delivers at most once: a frame published while a subscriber
is cut off (a restart, `CLIENT KILL`, an output buffer overrun, a pause) is
gone for it. That is allowed for here. The log is in PostgreSQL; a node
that misses a batch reads it back (chatd/sequencer.py), and it does so at
once after every (re)subscription, confirmed by Redis, and whenever no
frame at all, not even its own heartbeat, has come for WATCHDOG seconds.
A node's presence is kept in a Redis hash that changes in the same
transaction as the frame telling of it, so a node that missed a change
reloads the hash (chatd/presence.py).

Publishing never holds up the writer: frames wait in a queue for the
publisher thread. While Redis is down, batch frames are dropped (the other
nodes read them back from the database) and presence is written whole again
once Redis is back. The subscriber thread delivers the other nodes' batches
to the sequencer itself, so their fan-out runs on it.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

import msgspec
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chatd.bus import (
    AnyFrame,
    Committed,
    Heartbeat,
    PresenceChanged,
    PresenceSink,
    Receiver,
    decode_frame,
    encode_frame,
)
from chatd.log import Batch
from chatd.presence import ClusterPresence, Snapshot

log = logging.getLogger(__name__)

# why: every node publishes a heartbeat this often; silence from the bus means it is cut.
HEARTBEAT_INTERVAL = 1.0
# why: no frame at all (own heartbeats included) for this long: resubscribe and read back.
WATCHDOG = 3.0
# why: a node's presence hash outlives its heartbeats by this much, then Redis drops it.
PRESENCE_TTL_MS = 10_000
# why: how long to wait before trying Redis again after a failure.
RETRY_DELAY = 0.5
# why: Redis answers in microseconds; a command taking seconds means it is stopped or gone.
SOCKET_TIMEOUT = 2.0
# why: bounds the publisher's queue while Redis is slow; the oldest batch frames go
# first (the database has them), presence changes never (it is written whole later).
MAX_QUEUED = 10_000
VERSION_FIELD = "~version"


def channel_for(url: str) -> str:
    """The pub/sub channel; channels are server-wide, so the database number is in it."""
    db = redis.Redis.from_url(url).get_connection_kwargs().get("db", 0)
    return f"chatd:{db}:bus"


class RedisBus:
    def __init__(self, url: str, node: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.node = node
        self.instance = f"{node}/{secrets.token_hex(4)}"
        self._url = url
        self._channel = channel_for(url)
        self._presence_key = presence_key(self.instance)
        self._clock = clock
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        # guards the queue and this node's presence, so their versions and order agree
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[AnyFrame] = deque()
        self._here: set[str] = set()  # username keys connected to this node
        self._version = 0  # counts the changes of _here
        self._rewrite_presence = True  # Redis may have lost the hash: write it whole
        self._failing = False  # the publisher cannot reach Redis
        self._receiver: Receiver | None = None
        self._tracker: ClusterPresence | None = None

    def start(self, receiver: Receiver, presence: PresenceSink) -> None:
        self._receiver = receiver
        self._tracker = ClusterPresence(presence, self._load_presence, clock=self._clock)
        self._commands = self._client()
        for name, target in (("publish", self._publish_loop), ("subscribe", self._receive_loop)):
            thread = threading.Thread(target=target, name=f"chatd-bus-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop once the frames queued are sent (the last connections' goodbyes among them)."""
        deadline = self._clock() + SOCKET_TIMEOUT
        with self._wake:
            while self._queue and self._clock() < deadline and not self._failing:
                self._wake.wait(0.05)
        self._stopped.set()
        with self._wake:
            self._wake.notify()
        for thread in self._threads:
            thread.join(SOCKET_TIMEOUT + 1)
        with contextlib.suppress(redis.RedisError):  # else it expires by itself
            self._commands.delete(self._presence_key)
        self._commands.close()

    # publishing

    def publish(self, batch: Batch) -> None:
        with self._wake:
            if len(self._queue) >= MAX_QUEUED:
                self._drop_oldest_batch()
            self._queue.append(Committed(self.instance, batch))
            self._wake.notify()

    def presence(self, user: str, online: bool) -> None:
        with self._wake:
            if online:
                self._here.add(user)
            else:
                self._here.discard(user)
            self._version += 1
            self._queue.append(PresenceChanged(self.instance, self._version, user, online))
            self._wake.notify()

    def _drop_oldest_batch(self) -> None:
        for index, frame in enumerate(self._queue):
            if isinstance(frame, Committed):
                del self._queue[index]
                return

    def _publish_loop(self) -> None:
        client = self._client()
        next_beat = self._clock()
        while not self._stopped.is_set():
            with self._wake:
                self._wake.wait_for(
                    lambda: self._queue or self._stopped.is_set(),
                    max(0.0, next_beat - self._clock()),
                )
                frames = list(self._queue)
                self._queue.clear()
                rewrite = self._snapshot() if self._rewrite_presence else None
                self._rewrite_presence = False
                version = self._version
            beat = self._clock() >= next_beat
            if beat:
                next_beat = self._clock() + HEARTBEAT_INTERVAL
            try:
                # why: a rewrite drops the changes it holds; a heartbeat tells the others now
                self._send(client, frames, rewrite, version if beat or rewrite else None)
            except redis.RedisError as error:
                if not self._failing:
                    log.warning("the bus is unreachable (%s): other nodes catch up later", error)
                self._failing = True
                with self._wake:
                    self._rewrite_presence = True
                    self._queue = deque(f for f in self._queue if isinstance(f, Committed))
                self._stopped.wait(RETRY_DELAY)
                continue
            if self._failing:
                log.warning("the bus is back")
                self._failing = False
        client.close()

    def _snapshot(self) -> tuple[int, list[str]]:
        """This node's presence as it is (lock held); queued changes up to it are in it."""
        self._queue = deque(f for f in self._queue if not isinstance(f, PresenceChanged))
        return self._version, list(self._here)

    def _send(
        self,
        client: redis.Redis,
        frames: list[AnyFrame],
        rewrite: tuple[int, list[str]] | None,
        beat: int | None,
    ) -> None:
        """One round trip: the frames, in order, each presence change with its hash change."""
        if rewrite is None and beat is None and all(isinstance(f, Committed) for f in frames):
            self._send_batches(client, frames)
            return
        pipe = client.pipeline(transaction=True)
        key = self._presence_key
        if rewrite is not None:
            version, users = rewrite
            pipe.delete(key)
            pipe.hset(key, mapping={VERSION_FIELD: version, **dict.fromkeys(users, 1)})
            pipe.pexpire(key, PRESENCE_TTL_MS)
        for frame in frames:
            if isinstance(frame, PresenceChanged):
                if rewrite is not None and frame.version <= rewrite[0]:
                    continue
                if frame.online:
                    pipe.hset(key, frame.user, 1)
                else:
                    pipe.hdel(key, frame.user)
                pipe.hset(key, VERSION_FIELD, frame.version)
            pipe.publish(self._channel, encode_frame(frame))
        if beat is not None:
            pipe.pexpire(key, PRESENCE_TTL_MS)
            pipe.publish(self._channel, encode_frame(Heartbeat(self.instance, beat)))
        if len(pipe):
            pipe.execute()

    def _send_batches(self, client: redis.Redis, frames: list[AnyFrame]) -> None:
        """Batch frames alone: no hash changes to keep with them, so no MULTI/EXEC.

        Why: the transaction made a round cost 166 us of this thread's CPU on the
        bench machine, a plain PUBLISH 47 us (bench/busframes.py, docs/benchmarks.md).
        One connection runs its commands in order, so the frames still go out in
        the order they were queued; and if the round fails, the frames it did not
        publish are lost as a whole round's would be (the other nodes read them back).
        """
        if len(frames) == 1:
            client.publish(self._channel, encode_frame(frames[0]))
        elif frames:
            pipe = client.pipeline(transaction=False)
            for frame in frames:
                pipe.publish(self._channel, encode_frame(frame))
            pipe.execute()

    # receiving

    def _receive_loop(self) -> None:
        failing = False
        client = self._client()
        while not self._stopped.is_set():
            pubsub = client.pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self._channel)
                self._receive(pubsub)
            except (redis.RedisError, OSError, _Silent) as error:
                if not failing:
                    log.warning("the bus cut this node off (%s): reconnecting", error)
                failing = True
            else:
                failing = False
            finally:
                pubsub.close()
            self._stopped.wait(RETRY_DELAY)
        client.close()

    def _receive(self, pubsub: redis.client.PubSub) -> None:
        assert self._receiver is not None and self._tracker is not None
        tracker = self._tracker
        heard = next_expiry = self._clock()
        while not self._stopped.is_set():
            message = pubsub.get_message(timeout=HEARTBEAT_INTERVAL / 2)
            now = self._clock()
            if now >= next_expiry:
                tracker.expire()
                next_expiry = now + HEARTBEAT_INTERVAL / 2
            if message is None:
                if now - heard >= WATCHDOG:
                    raise _Silent(f"nothing heard for {now - heard:.1f} s")
                continue
            heard = now
            kind = message["type"]
            if kind == "subscribe":
                log.info("subscribed to the bus: catching up from the database")
                tracker.heard_all()
                self._receiver.resync()
            elif kind == "message":
                self._frame(message["data"])

    def _frame(self, data: bytes) -> None:
        assert self._receiver is not None and self._tracker is not None
        try:
            frame = decode_frame(data)
        except msgspec.DecodeError:
            log.warning("a frame on the bus could not be read (%d bytes): ignored", len(data))
            return
        if frame.node == self.instance:
            return
        if isinstance(frame, Committed):
            self._receiver.received(frame.batch)
        elif isinstance(frame, PresenceChanged):
            self._tracker.changed(frame)
        else:
            self._tracker.heartbeat(frame)

    def _load_presence(self, instance: str) -> Snapshot:
        stored: dict[bytes, bytes] = self._commands.hgetall(presence_key(instance))  # type: ignore[assignment]
        if not stored:
            return None
        version = int(stored.pop(VERSION_FIELD.encode(), 0))
        return version, {user.decode() for user in stored}

    def _client(self) -> redis.Redis:
        """A client that fails at once: each thread here has its own way of trying again."""
        return redis.Redis.from_url(
            self._url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )


class _Silent(Exception):
    """The subscription went quiet: the connection is presumed dead."""


def presence_key(instance: str) -> str:
    return f"chatd:presence:{instance}"
