"""The group-commit insert: a batch mixing every kind of message keeps its order and its fields."""

from __future__ import annotations

import pytest
from msgspec import UNSET

from chatd.records import FileInfo, Message, NewFile, NewMessage
from chatd.store import Store

pytestmark = pytest.mark.timeout(30)


def test_a_mixed_batch_is_stored_in_order_with_every_field(db_url: str) -> None:
    store = Store(db_url)
    try:
        alice = store.create_user("alice", "hash-a")
        bob = store.create_user("bob", "hash-b")
        general, _ = store.join(alice.id, "general")
        upload = NewFile("ab" * 32, 3, "notes.txt", "text/plain")
        batch = [
            NewMessage(alice, "one", room=general),
            NewMessage(alice, "two", room=general),
            NewMessage(alice, "psst", recipient=bob),
            NewMessage(alice, "three", room=general),
            NewMessage(alice, "a file", room=general, attachment=upload),
            NewMessage(alice, "file for you", recipient=bob, attachment=upload),
            NewMessage(alice, "four", room=general),
        ]
        stored = store.append_messages(batch)

        ids = [record.id for record in stored]
        assert ids == list(range(ids[0], ids[0] + len(batch)))
        assert [(r.text, r.room, None if r.to is UNSET else r.to) for r in stored] == [
            (new.text, new.room and new.room.name, new.recipient and new.recipient.username)
            for new in batch
        ]
        room_page = store.room_page(general, None, 10)
        assert room_page == [r for r in stored if r.room == "general"]
        dm_page = store.conversation_page(bob, alice, None, 10)
        assert dm_page == [r for r in stored if r.to == "bob"]
        files = [r.file for r in stored if isinstance(r.file, FileInfo)]
        assert [(f.name, f.size, f.mime, f.sha256) for f in files] == [
            (upload.name, upload.size, upload.mime, upload.sha256)
        ] * 2
        assert all(isinstance(r, Message) for r in room_page + dm_page)
    finally:
        store.close()
