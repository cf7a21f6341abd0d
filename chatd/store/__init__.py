"""The storage facade: every database read and write of the server goes through `Store`.

Methods are named for what the server means (`append_message`,
`room_page`) and return frozen records, never ORM objects, so nothing
outside db.py, models.py and this package knows SQLAlchemy exists. One
module per concern; `Store` puts them together.
"""

from __future__ import annotations

from chatd.store.accounts import AccountStore
from chatd.store.base import files, memberships, messages, rooms, users
from chatd.store.messages import MessageStore
from chatd.store.rooms import RoomStore
from chatd.store.transcripts import TranscriptStore

__all__ = ["Store", "files", "memberships", "messages", "rooms", "users"]


class Store(AccountStore, RoomStore, MessageStore, TranscriptStore):
    """The server's database, opened from a URL whose schema is already current."""
