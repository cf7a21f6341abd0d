"""What every handler may use, one of each per server: the store, the hub, the writer, limits.

Handlers reach them through the request (`req.services`), never through a
connection, so a handler is the same whichever dialect or listener the
request came in by.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from chatd.blobs import Blobs, DatabaseBlobs, DirectoryBlobs
from chatd.bus import Bus, LocalBus
from chatd.config import ServerConfig
from chatd.db import default_files_dir
from chatd.fanout import Fanout
from chatd.hub import Hub
from chatd.passwords import PasswordHasher
from chatd.ratelimit import IN_MEMORY, Clock, KeyedBuckets, LoginThrottle, ThrottleStorage
from chatd.sequencer import Sequencer
from chatd.store import Store, open_store
from chatd.uploads import Uploads
from chatd.writer import MessageWriter

if TYPE_CHECKING:
    from redis import Redis

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Limits:
    """The server-wide abuse limits: failed logins, registrations per address."""

    failed_logins: LoginThrottle
    registrations: KeyedBuckets

    @classmethod
    def from_config(cls, config: ServerConfig, clock: Clock, redis: Redis | None = None) -> Limits:
        """The limits of `config`, timed by `clock`: in this process's memory, or in Redis
        through `redis`, where every node of a cluster counts against one budget.

        In Redis every node compares its readings with the others', so a
        wall clock is needed there: `time.monotonic` (the server's default,
        which counts from each machine's boot) is replaced by `time.time`.
        Any other clock, a test's fake one say, is used as it is.
        """
        storage: ThrottleStorage = IN_MEMORY
        if redis is not None:
            # why: imported here, so a server without a cluster does not load redis-py
            from chatd.ratelimit_redis import RedisThrottleStorage

            storage = RedisThrottleStorage(redis)
            if clock is time.monotonic:
                clock = time.time
        per_hour = config.registrations_per_hour
        return cls(
            LoginThrottle(config.login_failures, clock=clock, storage=storage),
            KeyedBuckets(
                per_hour / SECONDS_PER_HOUR,
                per_hour,
                clock=clock,
                storage=storage,
                scope="registrations",
            ),
        )


@dataclass(frozen=True, slots=True)
class Services:
    config: ServerConfig
    store: Store
    hub: Hub
    hasher: PasswordHasher
    limits: Limits
    blobs: Blobs
    uploads: Uploads
    writer: MessageWriter
    fanout: Fanout
    sequencer: Sequencer
    bus: Bus
    clock: Clock = time.monotonic

    @property
    def clustered(self) -> bool:
        return not isinstance(self.bus, LocalBus)

    @classmethod
    def open(cls, config: ServerConfig, clock: Clock = time.monotonic) -> Services:
        """Open the database and build everything on it (the writer and bus are not started yet).

        The log's head is read before the rooms, so a change committed
        between the two reads is delivered over what was loaded, which it
        leaves as it found it.
        """
        store = open_store(config.db)
        node = config.node_name
        bus: Bus = LocalBus()
        throttles: Redis | None = None
        if config.bus:
            # why: imported here, so a single server does not load redis-py
            from chatd.ratelimit_redis import throttle_client
            from chatd.redisbus import RedisBus

            bus = RedisBus(config.bus, node)
            throttles = throttle_client(config.bus)
        position = store.log_head()
        hub = Hub(
            config.history_size,
            store.newest_message_id(),
            log_position=position,
            presence=bus.presence,
        )
        hub.load(store.rooms_with_members())
        fanout = Fanout(hub, store, config.history_size)
        sequencer = Sequencer(fanout, position, store)
        files = Path(config.files_dir) if config.files_dir else default_files_dir(config.db)
        blobs: Blobs = DatabaseBlobs(files, store) if config.bus else DirectoryBlobs(files)
        return cls(
            config,
            store,
            hub,
            PasswordHasher(config.bcrypt_rounds),
            Limits.from_config(config, clock, throttles),
            blobs,
            Uploads(),
            MessageWriter(store, sequencer, bus, node, blobs),
            fanout,
            sequencer,
            bus,
            clock,
        )
