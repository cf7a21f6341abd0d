"""`Store`: every part of the storage facade put together, portable across databases."""

from __future__ import annotations

from chatd.store.accounts import AccountStore
from chatd.store.blobs import BlobRows
from chatd.store.conversations import ConversationStore
from chatd.store.log import LogStore
from chatd.store.messages import MessageStore
from chatd.store.rooms import RoomStore
from chatd.store.transcripts import TranscriptStore


class Store(
    AccountStore,
    RoomStore,
    MessageStore,
    LogStore,
    TranscriptStore,
    ConversationStore,
    BlobRows,
):
    """The server's database, opened from a URL whose schema is already current.

    Every query goes through SQLAlchemy Core; chatd/store/sqlite.py replaces
    the hot writes on SQLite.
    """
