"""edit and delete end to end: who may, who hears of it, what every place shows after."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import pytest


@pytest.fixture
def room(connect):
    alice = connect("alice")
    bob = connect("bob")
    alice.ok("join", room="general")
    bob.ok("join", room="general")
    alice.next_event("join")  # bob's: it may come after bob's reply
    return alice, bob


def test_edit_reaches_members_and_the_authors_other_connections(room, connect) -> None:
    alice, bob = room
    laptop = connect("alice")
    sent = alice.ok("send", room="general", text="helo @bob")["message"]
    bob.next_event("message")
    laptop.next_event("message")
    edited = alice.ok("edit", message_id=sent["id"], text="hello @carol @bob")["message"]
    assert edited["text"] == "hello @carol @bob"
    assert edited["edited"].endswith("Z")
    assert edited["mentions"] == ["bob"]
    assert (edited["id"], edited["ts"], edited["room"]) == (sent["id"], sent["ts"], "general")
    for client in (bob, laptop):
        event = client.next_event("edit")
        assert event == {"event": "edit", **edited}
    assert [e["event"] for e in alice.drain()] == []
    history = bob.ok("history", room="general")["messages"]
    assert history[-1] == edited
    connect("carol").ok("join", room="general")  # reads the store, not the kept history


def test_an_edit_shows_in_a_join_history_kept_or_read(room, connect) -> None:
    alice, bob = room
    sent = alice.ok("send", room="general", text="first")["message"]
    bob.ok("join", room="general")  # the room's history is kept now
    alice.ok("edit", message_id=sent["id"], text="first, edited")
    assert bob.ok("join", room="general")["history"][-1]["text"] == "first, edited"
    carol = connect("carol")
    assert carol.ok("join", room="general")["history"][-1]["text"] == "first, edited"


def test_edit_and_delete_refusals(room, connect) -> None:
    alice, bob = room
    mine = alice.ok("send", room="general", text="mine")["message"]["id"]
    assert bob.error("edit", message_id=mine, text="theirs") == "not_author"
    assert bob.error("delete", message_id=mine) == "not_author"
    assert alice.error("edit", message_id=10**9, text="x") == "no_such_message"
    assert alice.error("delete", message_id=10**9) == "no_such_message"
    assert alice.error("edit", message_id=mine, text="   ") == "invalid_text"
    assert alice.error("edit", message_id=mine, text="\x1b[31m") == "invalid_text"
    assert alice.error("edit", message_id="1", text="x") == "bad_request"
    carol = connect("carol")
    assert carol.error("edit", message_id=mine, text="x") == "no_such_message"
    secret = alice.ok("dm", to="bob", text="between us")["message"]["id"]
    assert carol.error("delete", message_id=secret) == "no_such_message"
    assert bob.error("delete", message_id=secret) == "not_author"
    alice.ok("part", room="general")
    assert alice.error("edit", message_id=mine, text="after leaving") == "no_such_message"


def test_delete_leaves_a_placeholder_everywhere(room, connect) -> None:
    alice, bob = room
    keep = alice.ok("send", room="general", text="stays")["message"]
    gone = alice.ok("send", room="general", text="a regrettable remark", reply_to=keep["id"])
    gone = gone["message"]
    bob.drain()
    assert alice.ok("delete", message_id=gone["id"])["message_id"] == gone["id"]
    event = bob.next_event("delete")
    assert event == {"event": "delete", "id": gone["id"], "room": "general"}
    placeholder = {
        "id": gone["id"],
        "room": "general",
        "user": "alice",
        "text": "",
        "ts": gone["ts"],
        "deleted": True,
    }
    assert bob.ok("history", room="general")["messages"][-1] == placeholder
    assert bob.ok("join", room="general")["history"][-1] == placeholder
    assert connect("carol").ok("join", room="general")["history"][-1] == placeholder
    assert alice.error("delete", message_id=gone["id"]) == "no_such_message"
    assert alice.error("edit", message_id=gone["id"], text="undo") == "no_such_message"


def test_delete_reply_names_the_message(room) -> None:
    alice, _bob = room
    sent = alice.ok("send", room="general", text="oops")["message"]["id"]
    reply = alice.ok("delete", message_id=sent)
    assert reply["message_id"] == sent
    assert set(reply) == {"id", "ok", "message_id"}


def test_direct_edit_and_delete_tell_each_side_with_the_other_party(connect) -> None:
    alice = connect("alice")
    bob = connect("bob")
    phone = connect("alice")
    sent = alice.ok("dm", to="bob", text="psst")["message"]
    bob.next_event("dm")
    phone.next_event("dm")
    edited = alice.ok("edit", message_id=sent["id"], text="psst!")["message"]
    assert edited["to"] == "bob" and edited["room"] is None
    assert bob.next_event("edit")["text"] == "psst!"
    assert phone.next_event("edit")["text"] == "psst!"
    alice.ok("delete", message_id=sent["id"])
    assert bob.next_event("delete") == {"event": "delete", "id": sent["id"], "with": "alice"}
    assert phone.next_event("delete") == {"event": "delete", "id": sent["id"], "with": "bob"}
    shown = bob.ok("dm_history", **{"with": "alice"})["messages"][-1]
    assert shown == {
        "id": sent["id"],
        "room": None,
        "to": "bob",
        "user": "alice",
        "text": "",
        "ts": sent["ts"],
        "deleted": True,
    }


def test_counts_after_edits_and_deletes(room) -> None:
    alice, bob = room
    plain = alice.ok("send", room="general", text="plain")["message"]["id"]
    alice.ok("send", room="general", text="hey @bob")
    entry = bob.ok("unread")["rooms"][0]
    assert (entry["unread"], entry["mentions"]) == (2, 1)
    alice.ok("edit", message_id=plain, text="now @bob too")
    entry = bob.ok("unread")["rooms"][0]
    assert (entry["unread"], entry["mentions"]) == (2, 2)
    alice.ok("delete", message_id=plain)
    entry = bob.ok("unread")["rooms"][0]
    assert (entry["unread"], entry["mentions"]) == (1, 1)


def test_edits_and_deletes_come_after_the_message_they_change(room) -> None:
    alice, bob = room
    for n in range(20):
        alice.send_frame({"op": "send", "id": f"s{n}", "room": "general", "text": f"m{n}"})
    replies = [alice.next_reply() for _ in range(20)]
    ids = [reply["message"]["id"] for reply in replies]
    for n, message_id in enumerate(ids):
        alice.send_frame({"op": "edit", "id": f"e{n}", "message_id": message_id, "text": "e"})
        alice.send_frame({"op": "delete", "id": f"d{n}", "message_id": message_id})
    for _ in range(40):
        assert alice.next_reply()["ok"] is True
    seen: set[int] = set()
    order = []
    while len(order) < 60:
        frame = bob.next_frame()
        order.append(frame)
        if frame["event"] == "message":
            seen.add(frame["id"])
        else:
            assert frame["id"] in seen, frame
    assert [f["event"] for f in order].count("delete") == 20


def _upload(client, data: bytes, **where) -> dict:
    started = client.ok(
        "upload",
        name="note.txt",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        text="caption with a secret word",
        **where,
    )
    client.ok("chunk", upload=started["upload"], offset=0, data=base64.b64encode(data).decode())
    return client.ok("finish", upload=started["upload"])["message"]


def test_delete_erases_a_lone_attachment_and_keeps_a_shared_one(room, server) -> None:
    alice, bob = room
    files = Path(server.services.blobs.root)
    lone = _upload(alice, b"only once", room="general")
    twice = [_upload(alice, b"shared bytes", room="general") for _ in range(2)]
    alice.ok("delete", message_id=lone["id"])
    alice.ok("delete", message_id=twice[0]["id"])
    alice.ok("ping")
    blob = files / lone["file"]["sha256"][:2] / lone["file"]["sha256"]
    shared = files / twice[1]["file"]["sha256"][:2] / twice[1]["file"]["sha256"]
    deadline = time.monotonic() + 10
    while blob.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not blob.exists()
    assert shared.exists()
    assert bob.error("fetch", file=lone["file"]["id"]) == "no_such_file"
    assert bob.ok("fetch", file=twice[1]["file"]["id"])["eof"] is True
    shown = bob.ok("history", room="general")["messages"]
    assert "file" not in shown[-3] and shown[-3]["deleted"] is True
