"""The log: every change that others must see, at its position, as typed values.

A message, a join, a part, a topic change, an edit, a delete or a read
marker that moved is stored with a position taken
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


class Edited(Entry, frozen=True, tag="e"):
    """A message's text was replaced: the message as it is now (with `edited`)."""

    message: Message


class Deleted(Entry, frozen=True, tag="d"):
    """Message `id` (by `user`, in `room` or to `to`) was deleted."""

    id: int
    room: str | None
    user: str
    to: str | None = None


class Marked(Entry, frozen=True, tag="r"):
    """`user`'s read marker in `room`, or in the conversation with `peer`, is `last_read`.

    `moved` is false when a mark_read changed nothing: its reply still comes
    at its place, and nobody else hears of it (nor is it stored).
    """

    user: str
    room: str | None
    peer: str | None
    last_read: int
    moved: bool = True


Logged = Posted | Entered | Left | Retitled | Edited | Deleted | Marked


class Batch(Struct, frozen=True, gc=False):
    """What one transaction added to the log: positions first..last, and their entries.

    Positions without an entry are changes that change nothing others see
    (a join by a member already), kept so the count stays gapless.
    """

    node: str
    first: int
    last: int
    entries: list[Logged]
