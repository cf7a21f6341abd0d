"""The bus: how a node tells the others what it committed and who is online on it.

A node publishes each committed batch of the log after its commit, and
every change of who is connected to it; it receives the other nodes' the
same way. The database stays the truth: a batch lost on the bus is read
back by position (chatd/sequencer.py), and a node's presence is kept where
others can reload it whole. `LocalBus` is the single server's bus (there is
nobody to tell); `chatd/redisbus.py` is the cluster's. The server runs the
same code on either.

Frames are msgspec structs encoded with MessagePack: a committed batch,
a presence change, a heartbeat. `encode_frame` and `decode_frame` are the
only way a frame becomes bytes and back, for every bus.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import msgspec
from msgspec import Struct

from chatd.log import Batch


class Frame(Struct, frozen=True, tag_field="f", gc=False):
    node: str
    """The sending node's instance: its name and a token made at start."""


class Committed(Frame, frozen=True, tag="b"):
    batch: Batch


class PresenceChanged(Frame, frozen=True, tag="p"):
    """`user`'s first connection to the node opened, or its last closed; `version` counts them."""

    version: int
    user: str
    online: bool


class Heartbeat(Frame, frozen=True, tag="h"):
    """Sent every second: the node is alive, and its presence is at `version`."""

    version: int


AnyFrame = Committed | PresenceChanged | Heartbeat

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(AnyFrame)


def encode_frame(frame: AnyFrame) -> bytes:
    return _ENCODER.encode(frame)


def decode_frame(data: bytes) -> AnyFrame:
    """A frame; msgspec.DecodeError if `data` is not one."""
    return _DECODER.decode(data)


class Receiver(Protocol):
    """What a bus hands the node it serves."""

    def received(self, batch: Batch) -> None:
        """Another node's committed batch, in whatever order the bus brought it."""
        ...

    def resync(self) -> None:
        """Frames may have been lost (the bus was cut or silent): catch up from the database."""
        ...


class PresenceSink(Protocol):
    def online_elsewhere(self, came: Iterable[str], went: Iterable[str]) -> None:
        """Username keys whose first connection to some other node opened, or last closed."""
        ...


class Bus(Protocol):
    def start(self, receiver: Receiver, presence: PresenceSink) -> None: ...

    def publish(self, batch: Batch) -> None:
        """A batch this node committed; never blocks, never raises."""
        ...

    def presence(self, user: str, online: bool) -> None:
        """`user`'s first connection to this node opened, or its last closed (never blocks)."""
        ...

    def stop(self) -> None: ...


class LocalBus:
    """The bus of a single server: nothing to publish to, nothing to receive."""

    def start(self, receiver: Receiver, presence: PresenceSink) -> None:
        pass

    def publish(self, batch: Batch) -> None:
        pass

    def presence(self, user: str, online: bool) -> None:
        pass

    def stop(self) -> None:
        pass
