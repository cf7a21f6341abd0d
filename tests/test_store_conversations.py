"""Conversation state in the store: the log reads edits, deletes and markers back, a delete
erases the text from the database's files, transcripts carry what is current."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from sqlalchemy import text

from chatd.log import Deleted, Edited, Entered, Marked, Posted
from chatd.records import NewDelete, NewEdit, NewJoin, NewMessage, NewPart, NewRead, UserRecord
from chatd.store import Store, open_store

pytestmark = pytest.mark.timeout(60)


def test_log_between_reads_back_every_new_kind_as_the_writer_made_it(db_url: str) -> None:
    store = open_store(db_url)
    try:
        alice = store.create_user("alice", "hash")
        bob = store.create_user("bob", "hash")
        store.join(alice, "general")
        first, kept = store.append_messages(
            [
                NewMessage(alice, "to be edited @bob", room="general"),
                NewMessage(alice, "to be deleted", room="general"),
            ]
        )
        batch, _outcomes = store.append_log(
            [
                NewJoin(bob, "general"),
                NewEdit(alice, first.id, "edited @bob"),
                NewRead(bob, first.id, room="general"),  # behind the join's: moves nothing
                NewDelete(alice, kept.id),
                NewMessage(bob, "psst", recipient=alice),
                NewRead(alice, 10**9, peer=bob),
            ]
        )
        written = [e for e in batch.entries if not (isinstance(e, Marked) and not e.moved)]
        read_back = store.log_between(batch.first, batch.last)
        assert [type(e) for e in read_back] == [Entered, Marked, Edited, Deleted, Posted, Marked]
        assert read_back == written
        edited = next(e for e in read_back if isinstance(e, Edited))
        assert (edited.message.text, edited.message.mentions) == ("edited @bob", ["bob"])
        # the first join's marker is the room's newest message: the history counts as read
        assert read_back[1] == Marked(read_back[1].position, "bob", "general", None, kept.id)
        assert read_back[-1].last_read == read_back[-2].message.id
    finally:
        store.close()


def test_an_edit_of_a_message_deleted_since_is_not_read_back(db_url: str) -> None:
    store = open_store(db_url)
    try:
        alice = store.create_user("alice", "hash")
        store.join(alice, "general")
        (sent,) = store.append_messages([NewMessage(alice, "x", room="general")])
        edit, _ = store.append_log([NewEdit(alice, sent.id, "y")])
        store.append_log([NewDelete(alice, sent.id)])
        assert store.log_between(edit.first, edit.last) == []
        (posted,) = store.log_between(edit.first - 1, edit.first - 1)
        assert isinstance(posted, Posted) and posted.message.deleted is True
    finally:
        store.close()


@pytest.mark.sqlite_only("the raw bytes of SQLite's files; PostgreSQL's are docs/operations.md's")
def test_a_deleted_text_is_gone_from_the_database_files(tmp_path: Path, db_url: str) -> None:
    secret = "Zanzibarquokka4711 tangerine"
    store = open_store(db_url)
    try:
        alice = store.create_user("alice", "hash")
        store.join(alice, "general")
        filler = [NewMessage(alice, f"ordinary message {n}", room="general") for n in range(300)]
        store.append_messages(filler)
        long_secret = (secret + " ") * 150  # over a page: overflow pages too
        doomed = store.append_messages(
            [
                NewMessage(alice, secret, room="general"),
                NewMessage(alice, long_secret.strip(), room="general"),
            ]
        )
        edited = store.append_messages([NewMessage(alice, "plain words", room="general")])[0]
        store.append_log([NewEdit(alice, edited.id, secret + " edited in")])
        store.append_messages(filler)
        assert _files_hold(db_url, b"Zanzibarquokka4711")
        store.append_log([NewDelete(alice, m.id) for m in [*doomed, edited]])
        store.erase_traces()
        assert not _files_hold(db_url, b"Zanzibarquokka4711")
        assert not _files_hold(db_url, b"zanzibarquokka4711")  # the index's folded terms
        assert store.search(alice, [], limit=5) == []
    finally:
        store.close()


def _files_hold(url: str, needle: bytes) -> bool:
    path = Path(url.removeprefix("sqlite:///"))
    return any(
        needle in candidate.read_bytes()
        for candidate in (path, path.with_name(path.name + "-wal"))
        if candidate.exists()
    )


def test_export_carries_edits_and_leaves_deleted_messages_out(db_url: str, tmp_path: Path) -> None:
    from chatd.cli import main

    store = open_store(db_url)
    try:
        alice = store.create_user("alice", "hash")
        store.join(alice, "general")
        one, two, three = store.append_messages(
            [NewMessage(alice, text, room="general") for text in ("one", "two", "three")]
        )
        store.append_log([NewEdit(alice, one.id, "one, edited"), NewDelete(alice, two.id)])
    finally:
        store.close()
    target = tmp_path / "export.pickle"
    assert main(["export", "--db", db_url, "--room", "general", str(target)], {}) == 0
    plain = pickle.loads(target.read_bytes())
    target.unlink()
    assert plain["version"] == 1
    assert [(m["id"], m["text"]) for m in plain["messages"]] == [
        (one.id, "one, edited"),
        (three.id, "three"),
    ]
    assert "edited" in plain["messages"][0] and "edited" not in plain["messages"][1]


def test_imported_messages_are_searchable_and_carry_their_mentions(db_url: str) -> None:
    from chatd.searchtext import parse_query

    store = open_store(db_url)
    try:
        alice = store.create_user("alice", "hash")
        bob = store.create_user("bob", "hash")
        store.join(bob, "general")
        store.import_messages("general", "", [("alice", 1_000, "imported kiwifruit for @bob")])
        (found,) = store.search(bob, parse_query("kiwi"))
        assert (found.text, found.mentions) == ("imported kiwifruit for @bob", ["bob"])
        rooms, _direct = store.unread(bob)
        assert (rooms[0].unread, rooms[0].mentions) == (1, 1)
        assert store.search(alice, parse_query("kiwi")) == []  # not a member
    finally:
        store.close()


def test_counts_stop_at_1000(db_url: str) -> None:
    store = open_store(db_url)
    try:
        alice = store.create_user("alice", "hash")
        bob = store.create_user("bob", "hash")
        store.join(alice, "general")
        store.join(bob, "general")
        batch = [NewMessage(alice, f"@bob number {n}", room="general") for n in range(1003)]
        stored = store.append_messages(batch)
        store.append_messages(
            [NewMessage(alice, f"to bob {n}", recipient=bob) for n in range(1001)]
        )
        rooms, direct = store.unread(bob)
        assert (rooms[0].unread, rooms[0].mentions, rooms[0].last_id) == (1000, 1000, stored[-1].id)
        assert (direct[0].with_, direct[0].unread, direct[0].mentions) == ("alice", 1000, 1000)
        store.append_log([NewRead(bob, stored[-4].id, room="general")])
        rooms, _direct = store.unread(bob)
        assert (rooms[0].unread, rooms[0].mentions) == (3, 3)
    finally:
        store.close()


def _counted(store: Store, user: UserRecord) -> dict[str, int]:
    """`unread`'s room counts as PROTOCOL.md defines them, by counting the messages."""
    with store.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT r.name, (SELECT COUNT(*) FROM messages m WHERE m.room_id = r.id "
                "AND m.id > COALESCE(k.last_read, 0) AND NOT m.deleted "
                "AND (m.sender_id IS NULL OR m.sender_id <> :user)) "
                "FROM memberships ms JOIN rooms r ON r.id = ms.room_id "
                "LEFT JOIN room_markers k ON k.user_id = ms.user_id AND k.room_id = ms.room_id "
                "WHERE ms.user_id = :user"
            ),
            {"user": user.id},
        ).all()
    return {name: min(count, 1000) for name, count in rows}


def _assert_counts(store: Store, *people: UserRecord) -> dict[str, dict[str, int]]:
    found = {}
    for user in people:
        rooms, _direct = store.unread(user)
        found[user.username] = {entry.room: entry.unread for entry in rooms}
        assert found[user.username] == _counted(store, user), user.username
    return found


def test_room_counts_by_ordinal_match_the_messages_through_every_kind_of_write(
    db_url: str,
) -> None:
    store = open_store(db_url)
    try:
        alice = store.create_user("alice", "hash")
        bob = store.create_user("bob", "hash")
        carol = store.create_user("carol", "hash")
        store.join(alice, "general")
        early = store.append_messages(
            [NewMessage(alice, f"early {n}", room="general") for n in range(3)]
        )
        store.join(bob, "general")  # the history counts as read
        assert _assert_counts(store, alice, bob) == {"alice": {"general": 0}, "bob": {"general": 0}}
        sent = store.append_messages([NewMessage(alice, f"m{n}", room="general") for n in range(5)])
        assert _assert_counts(store, bob)["bob"] == {"general": 5}
        store.append_log([NewMessage(bob, "mine", room="general")])  # moves bob's marker
        assert _assert_counts(store, alice, bob) == {"alice": {"general": 1}, "bob": {"general": 0}}
        more = store.append_messages([NewMessage(alice, f"n{n}", room="general") for n in range(4)])
        store.append_log([NewDelete(alice, more[1].id)])  # above bob's marker
        assert _assert_counts(store, bob)["bob"] == {"general": 3}
        store.append_log([NewDelete(alice, sent[0].id), NewDelete(alice, early[0].id)])  # below
        assert _assert_counts(store, bob)["bob"] == {"general": 3}
        # a marker between two of the room's messages: an id from another room
        store.join(alice, "other")
        store.append_messages([NewMessage(alice, "m0", room="general")])
        (elsewhere,) = store.append_messages([NewMessage(alice, "elsewhere", room="other")])
        store.append_messages([NewMessage(alice, "m1", room="general")])
        store.join(bob, "other")
        store.append_log([NewRead(bob, elsewhere.id, room="general")])
        assert _assert_counts(store, alice, bob)["bob"] == {"general": 1, "other": 0}
        # imported messages: bob's own do not count for him (import moves no marker)
        store.import_messages(
            "general", "", [("bob", 1, "bob's own"), ("Alice", 2, "hers"), ("ghost", 3, "no one")]
        )
        assert _assert_counts(store, alice, bob) == {
            "alice": {"general": 2, "other": 0},
            "bob": {"general": 3, "other": 0},
        }
        imported = store.room_page(store.room_by_name("general"), None, 3)  # type: ignore[arg-type]
        store.append_log([NewDelete(bob, imported[0].id)])  # his own, imported, deleted
        store.append_log([NewDelete(alice, imported[1].id)])
        assert _assert_counts(store, alice, bob) == {
            "alice": {"general": 1, "other": 0},
            "bob": {"general": 2, "other": 0},
        }
        # a first join, a part and a join again (the marker stays), a new room by import
        store.join(carol, "general")
        store.append_log([NewPart(bob, "general")])
        store.append_messages([NewMessage(alice, "while bob is away", room="general")])
        store.join(bob, "general")
        store.import_messages("fresh", "t", [("carol", 1, "a"), ("ghost", 2, "b")])
        store.join(carol, "fresh")
        store.import_messages("fresh", "t", [("carol", 3, "c"), ("ghost", 4, "d")])
        store.append_messages([NewMessage(carol, "new", room="fresh")])
        store.append_messages([NewMessage(carol, "new", room="fresh")])
        store.import_messages("fresh", "t", [("carol", 5, "e"), ("ghost", 6, "f")])
        assert _assert_counts(store, alice, bob, carol)["carol"] == {"general": 1, "fresh": 1}
        with store.engine.connect() as connection:
            ordinals = connection.execute(
                text(
                    "SELECT r.name, r.last_seq, COUNT(m.id), MIN(m.room_seq), MAX(m.room_seq), "
                    "COUNT(DISTINCT m.room_seq) FROM rooms r JOIN messages m ON m.room_id = r.id "
                    "GROUP BY r.name, r.last_seq"
                )
            ).all()
        for name, last_seq, count, first, last, distinct in ordinals:
            assert (last_seq, first, last, distinct) == (count, 1, count, count), name
    finally:
        store.close()


def test_counts_by_ordinal_stop_at_1000_after_deletes_and_own_imports(db_url: str) -> None:
    store = open_store(db_url)
    try:
        alice = store.create_user("alice", "hash")
        bob = store.create_user("bob", "hash")
        store.join(alice, "general")
        store.join(bob, "general")
        stored = store.append_messages(
            [NewMessage(alice, f"n{n}", room="general") for n in range(1004)]
        )
        store.append_log([NewDelete(alice, message.id) for message in stored[:4]])
        assert _assert_counts(store, bob)["bob"] == {"general": 1000}
        store.append_log([NewDelete(alice, stored[4].id)])
        assert _assert_counts(store, bob)["bob"] == {"general": 999}
        store.import_messages("general", "", [("bob", n, f"own {n}") for n in range(5)])
        assert _assert_counts(store, bob)["bob"] == {"general": 999}
        store.import_messages("general", "", [("ghost", n, f"other {n}") for n in range(5)])
        assert _assert_counts(store, bob)["bob"] == {"general": 1000}
    finally:
        store.close()


def test_a_member_without_a_marker_is_counted_from_the_start(db_url: str) -> None:
    store = open_store(db_url)
    try:
        alice = store.create_user("alice", "hash")
        bob = store.create_user("bob", "hash")
        store.join(alice, "general")
        store.join(bob, "general")
        store.append_messages([NewMessage(alice, f"n{n}", room="general") for n in range(3)])
        store.append_messages([NewMessage(bob, "mine", room="general")])
        with store.engine.begin() as connection:
            connection.execute(text("DELETE FROM room_markers WHERE user_id = :u"), {"u": bob.id})
        assert _assert_counts(store, bob)["bob"] == {"general": 3}
        assert store.unread(bob)[0][0].last_read == 0
    finally:
        store.close()
