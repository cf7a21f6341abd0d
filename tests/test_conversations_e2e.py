"""Conversation state end to end (PROTOCOL.md, extension `conversations`): read markers, unread,
mentions, replies, edit, delete, on a real server over SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from wire import WireClient


@pytest.fixture
def room(connect):
    """alice and bob in #general, bob's first join after nothing was said."""
    alice = connect("alice")
    bob = connect("bob")
    alice.ok("join", room="general")
    bob.ok("join", room="general")
    alice.next_event("join")  # bob's: it may come after bob's reply
    return alice, bob


def unread_of(client: WireClient, room: str) -> dict:
    reply = client.ok("unread")
    return next(entry for entry in reply["rooms"] if entry["room"] == room)


def test_welcome_lists_the_conversations_feature(connect) -> None:
    assert "conversations" in connect().welcome["features"]


def test_first_join_marks_the_history_read(connect) -> None:
    alice = connect("alice")
    alice.ok("join", room="general")
    sent = [alice.ok("send", room="general", text=f"m{n}")["message"]["id"] for n in range(3)]
    bob = connect("bob")
    bob.ok("join", room="general")
    assert unread_of(bob, "general") == {
        "room": "general",
        "last_read": sent[-1],
        "last_id": sent[-1],
        "unread": 0,
        "mentions": 0,
    }


def test_messages_from_others_count_and_own_messages_move_the_marker(room) -> None:
    alice, bob = room
    ids = [alice.ok("send", room="general", text=f"hello {n}")["message"]["id"] for n in range(3)]
    entry = unread_of(bob, "general")
    assert (entry["unread"], entry["last_id"]) == (3, ids[-1])
    own = bob.ok("send", room="general", text="caught up")["message"]["id"]
    entry = unread_of(bob, "general")
    assert (entry["last_read"], entry["unread"], entry["last_id"]) == (own, 0, own)
    assert unread_of(alice, "general")["unread"] == 1


def test_mark_read_never_moves_backwards_and_reaches_other_connections(room, connect) -> None:
    alice, bob = room
    ids = [alice.ok("send", room="general", text=f"m{n}")["message"]["id"] for n in range(3)]
    phone = connect("bob")
    phone.drain()
    reply = bob.ok("mark_read", room="general", message_id=ids[1])
    assert (reply["room"], reply["last_read"]) == ("general", ids[1])
    event = phone.next_event("read")
    assert event == {"event": "read", "room": "general", "last_read": ids[1]}
    back = bob.ok("mark_read", room="general", message_id=ids[0])
    assert back["last_read"] == ids[1]
    assert unread_of(bob, "general")["unread"] == 1
    beyond = bob.ok("mark_read", room="general", message_id=ids[2] + 1000)
    assert beyond["last_read"] == ids[2]  # never past the newest message
    assert unread_of(bob, "general")["unread"] == 0
    assert [e for e in bob.drain() if e["event"] == "read"] == []
    assert phone.next_event("read")["last_read"] == ids[2]


def test_mark_read_errors(room, connect) -> None:
    _alice, bob = room
    assert bob.error("mark_read", message_id=1) == "bad_request"
    assert (
        bob.error("mark_read", room="general", **{"with": "alice"}, message_id=1) == "bad_request"
    )
    assert bob.error("mark_read", room="general", message_id=-1) == "bad_request"
    assert bob.error("mark_read", room="#No Such", message_id=1) == "invalid_room"
    assert bob.error("mark_read", room="elsewhere", message_id=1) == "not_in_room"
    assert bob.error("mark_read", **{"with": "nobody"}, message_id=1) == "no_such_user"
    assert bob.error("mark_read", room="general", message_id=True) == "bad_request"


def test_direct_messages_are_an_inbox_with_every_unread_one_a_mention(connect) -> None:
    alice = connect("alice")
    bob = connect("bob")
    carol = connect("carol")
    first = alice.ok("dm", to="bob", text="hi bob")["message"]["id"]
    second = alice.ok("dm", to="bob", text="are you there?")["message"]["id"]
    newest = carol.ok("dm", to="bob", text="lunch?")["message"]["id"]
    dms = bob.ok("unread")["dms"]
    assert dms == [
        {"with": "carol", "last_read": 0, "last_id": newest, "unread": 1, "mentions": 1},
        {"with": "alice", "last_read": 0, "last_id": second, "unread": 2, "mentions": 2},
    ]
    assert alice.ok("unread")["dms"] == [
        {"with": "bob", "last_read": second, "last_id": second, "unread": 0, "mentions": 0}
    ]
    assert bob.ok("mark_read", **{"with": "alice"}, message_id=first)["with"] == "alice"
    assert bob.ok("unread")["dms"][1]["unread"] == 1
    own = bob.ok("dm", to="alice", text="yes")["message"]["id"]
    assert bob.ok("unread")["dms"][0] == {
        "with": "alice",
        "last_read": own,
        "last_id": own,
        "unread": 0,
        "mentions": 0,
    }


def test_notes_to_self_are_never_unread(connect) -> None:
    alice = connect("alice")
    note = alice.ok("dm", to="alice", text="remember the milk")["message"]["id"]
    assert alice.ok("unread")["dms"] == [
        {"with": "alice", "last_read": note, "last_id": note, "unread": 0, "mentions": 0}
    ]


def test_mentions_field_and_counts(room, connect) -> None:
    alice, bob = room
    connect("alice.b")
    cases = {
        "hey @bob": ["bob"],
        "hey @BOB!": ["bob"],
        "@bob, @alice and @bob again": ["bob", "alice"],
        "@alice.b is not @alice": ["alice.b", "alice"],
        "mail bob@example.com": [],
        "@bobby is someone else": [],
        "at the end @bob": ["bob"],
        "a sentence ends @bob.": [],
        "nobody here": None,
        "@nosuchuser": None,
    }
    for text, expected in cases.items():
        message = alice.ok("send", room="general", text=text)["message"]
        assert message.get("mentions") == (expected or None), text
        event = bob.next_event("message")
        assert event.get("mentions") == message.get("mentions")
    history = bob.ok("history", room="general", limit=len(cases))["messages"]
    assert [m.get("mentions") for m in history] == [e or None for e in cases.values()]
    entry = unread_of(bob, "general")
    assert (entry["unread"], entry["mentions"]) == (len(cases), 4)
    assert unread_of(alice, "general")["mentions"] == 0  # her own messages mention her


def test_reply_to_in_the_same_conversation_only(room, connect) -> None:
    alice, bob = room
    asked = alice.ok("send", room="general", text="who's there?")["message"]["id"]
    answer = bob.ok("send", room="general", text="me", reply_to=asked)["message"]
    assert answer["reply_to"] == asked
    assert alice.next_event("message")["reply_to"] == asked
    alice.ok("join", room="other")
    elsewhere = alice.ok("send", room="other", text="psst")["message"]["id"]
    assert alice.error("send", room="general", text="x", reply_to=elsewhere) == "no_such_message"
    assert alice.error("send", room="general", text="x", reply_to=10**9) == "no_such_message"
    direct = alice.ok("dm", to="bob", text="private")["message"]["id"]
    assert alice.error("send", room="general", text="x", reply_to=direct) == "no_such_message"
    assert bob.ok("dm", to="alice", text="ok", reply_to=direct)["message"]["reply_to"] == direct
    connect("carol")
    assert alice.error("dm", to="carol", text="x", reply_to=direct) == "no_such_message"


def test_a_first_join_tells_the_users_other_connections_not_the_joining_one(connect) -> None:
    alice = connect("alice")
    alice.ok("join", room="general")
    newest = alice.ok("send", room="general", text="before bob")["message"]["id"]
    bob = connect("bob")
    phone = connect("bob")
    bob.ok("join", room="general")
    assert phone.next_event("read") == {"event": "read", "room": "general", "last_read": newest}
    assert [e for e in bob.drain() if e["event"] == "read"] == []


def test_own_messages_tell_the_authors_other_connections(room, connect) -> None:
    _alice, bob = room
    phone = connect("bob")
    sent = bob.ok("send", room="general", text="from the laptop")["message"]["id"]
    assert phone.next_event("message")["id"] == sent
    assert phone.next_event("read") == {"event": "read", "room": "general", "last_read": sent}
    direct = bob.ok("dm", to="alice", text="psst")["message"]["id"]
    assert phone.next_event("read") == {"event": "read", "with": "alice", "last_read": direct}
    assert [e for e in bob.drain() if e["event"] == "read"] == []
