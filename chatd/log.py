"""The log: every change that others must see, at its position, as typed values.

A message, a join, a part or a topic change is stored with a position taken
from one counter in the same transaction (chatd/models.py, LogHead), so
positions follow commit order without gaps, on every backend and across
nodes. The sequencer (chatd/sequencer.py) delivers entries in position order;
a node that misses some reads them back from the database by position. The
entries are what the bus carries between nodes, encoded with msgspec.
"""

from __future__ import annotations

from msgspec import Struct

from chatd.records import Message


class Entry(Struct, frozen=True, tag_field="k", gc=False):
    position: int


class Posted(Entry, frozen=True, tag="m"):
    """A room or direct message."""

    message: Message


class Entered(Entry, frozen=True, tag="j"):
    """`user` joined the room; `new` is false when they were a member already (no event)."""

    room_id: int
    room: str
    topic: str
    user: str
    new: bool = True


class Left(Entry, frozen=True, tag="p"):
    room: str
    user: str


class Retitled(Entry, frozen=True, tag="t"):
    room: str
    topic: str
    user: str


Logged = Posted | Entered | Left | Retitled


class Batch(Struct, frozen=True, gc=False):
    """What one transaction added to the log: positions first..last, and their entries.

    Positions without an entry are changes that change nothing others see
    (a join by a member already), kept so the count stays gapless.
    """

    node: str
    first: int
    last: int
    entries: list[Logged]
