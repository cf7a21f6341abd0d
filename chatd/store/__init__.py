"""The storage facade: every database read and write of the server goes through `Store`.

Methods are named for what the server means (`append_message`,
`room_page`) and return frozen records, never ORM objects, so nothing
outside db.py, models.py and this package knows SQLAlchemy exists. One
module per concern; `Store` puts them together, and `open_store` picks the
Store for the database's dialect, once.
"""

from __future__ import annotations

from chatd.db import is_sqlite
from chatd.diskspace import DiskAlarm
from chatd.store.base import files, memberships, messages, rooms, users
from chatd.store.facade import Store
from chatd.store.sqlite import SqliteStore

__all__ = [
    "SqliteStore",
    "Store",
    "files",
    "memberships",
    "messages",
    "open_store",
    "rooms",
    "users",
]


def open_store(url: str, disk: DiskAlarm | None = None) -> Store:
    """The Store for `url`'s dialect: SQLite's own, else the portable one."""
    return SqliteStore(url, disk) if is_sqlite(url) else Store(url, disk)
