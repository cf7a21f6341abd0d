"""The group-commit insert: batches keep their order and fields, writers take turns."""

from __future__ import annotations

import threading

import pytest
from msgspec import UNSET
from sqlalchemy import insert

from chatd.records import FileInfo, Message, NewFile, NewJoin, NewMessage, NewPart, NewTopic
from chatd.store import open_store
from chatd.store.base import messages

pytestmark = pytest.mark.timeout(30)

# why: how long a write is given to get ahead of one under way; it must not, so this is
# only how long the test looks (a wrong pass is possible on a slow machine, a wrong failure not).
WRITER_PATIENCE = 0.5


def test_a_mixed_batch_is_stored_in_order_with_every_field(db_url: str) -> None:
    store = open_store(db_url)
    try:
        alice = store.create_user("alice", "hash-a")
        bob = store.create_user("bob", "hash-b")
        general, _ = store.join(alice, "general")
        upload = NewFile("ab" * 32, 3, "notes.txt", "text/plain")
        batch = [
            NewMessage(alice, "one", room="general"),
            NewMessage(alice, "two", room="general"),
            NewMessage(alice, "psst", recipient=bob),
            NewMessage(alice, "three", room="general"),
            NewMessage(alice, "a file", room="general", attachment=upload),
            NewMessage(alice, "file for you", recipient=bob, attachment=upload),
            NewMessage(alice, "four", room="general"),
        ]
        stored = store.append_messages(batch)

        ids = [record.id for record in stored]
        assert ids == list(range(ids[0], ids[0] + len(batch)))
        assert [(r.text, r.room, None if r.to is UNSET else r.to) for r in stored] == [
            (new.text, new.room, new.recipient and new.recipient.username) for new in batch
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


def test_a_write_waits_for_one_under_way_so_no_reader_sees_a_later_id_first(db_url: str) -> None:
    """Ids are handed out in commit order, even by two processes (`chatd import` beside a server).

    Otherwise a message committed with a higher id while a slower transaction
    still holds lower ones lets a reader (a join's history, a client catching
    up with `after`) see the later id first and skip the earlier ones for good.
    """
    importer, server = open_store(db_url), open_store(db_url)
    try:
        alice = server.create_user("alice", "hash-a")
        general, _ = server.join(alice, "general")
        live: list[Message] = []
        sender = threading.Thread(
            target=lambda: live.append(server.append_message(alice, "live", room="general"))
        )
        # why: a transaction under way in another Store, as `chatd import` runs in another process
        with importer._write() as connection:
            connection.execute(
                insert(messages).values(
                    room_id=general.id, author="ghost", text="imported", ts_ms=1
                )
            )
            sender.start()
            sender.join(WRITER_PATIENCE)
            assert [m.text for m in server.room_page(general, None, 10)] == []
        sender.join(10)
        assert not sender.is_alive()
        page = server.room_page(general, None, 10)
        assert [m.text for m in page] == ["imported", "live"]
        assert page[1] == live[0]
    finally:
        importer.close()
        server.close()


def test_a_batch_checks_each_change_where_the_ones_before_it_leave_the_room(db_url: str) -> None:
    store = open_store(db_url)
    try:
        alice = store.create_user("alice", "hash-a")
        head = store.log_head()
        batch, outcomes = store.append_log(
            [
                NewMessage(alice, "before joining", room="r"),
                NewJoin(alice, "r"),
                NewMessage(alice, "a member", room="r"),
                NewTopic(alice, "r", "hello"),
                NewPart(alice, "r"),
                NewMessage(alice, "gone", room="r"),
                NewPart(alice, "r"),
            ]
        )
        kinds = [type(outcome).__name__ for outcome in outcomes]
        assert kinds == [
            "ChatError",
            "Entered",
            "Posted",
            "Retitled",
            "Left",
            "ChatError",
            "ChatError",
        ]
        assert [entry.position for entry in batch.entries] == list(range(head + 1, head + 5))
        assert (batch.first, batch.last) == (head + 1, head + 4)
        assert store.log_head() == head + 4
        assert [m.text for m in store.room_page(store.room_by_name("r"), None, 10)] == ["a member"]
    finally:
        store.close()
