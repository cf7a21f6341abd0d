"""Catching up after time away: the direct-message inbox and paging forward with `after`."""

from __future__ import annotations


def _texts(reply: dict) -> list[str]:
    return [message["text"] for message in reply["messages"]]


def test_the_inbox_holds_direct_messages_from_everyone_even_strangers(connect):
    alice, bob, carol, dave = connect("alice"), connect("bob"), connect("carol"), connect("dave")
    carol.ok("quit")
    alice.ok("dm", to="carol", text="are you around?")
    bob.ok("dm", to="Carol", text="lunch?")
    dave.ok("dm", to="alice", text="not for carol")
    alice.ok("join", room="general")
    alice.ok("send", room="general", text="a room message")
    carol = connect("carol")
    carol.ok("dm", to="dave", text="sent by carol")
    inbox = carol.ok("dm_history")
    assert _texts(inbox) == ["are you around?", "lunch?", "sent by carol"]
    assert [m["user"] for m in inbox["messages"]] == ["alice", "bob", "carol"]
    assert all(m["room"] is None for m in inbox["messages"])
    assert inbox["messages"][0]["to"] == "carol"


def test_the_inbox_pages_back_and_forward(connect):
    alice, bob = connect("alice"), connect("bob")
    ids = [alice.ok("dm", to="bob", text=f"m{n}")["message"]["id"] for n in range(7)]
    assert _texts(bob.ok("dm_history", limit=3)) == ["m4", "m5", "m6"]
    assert _texts(bob.ok("dm_history", before=ids[4], limit=3)) == ["m1", "m2", "m3"]
    assert _texts(bob.ok("dm_history", after=ids[1], limit=3)) == ["m2", "m3", "m4"]
    assert _texts(bob.ok("dm_history", after=ids[1], before=ids[3])) == ["m2"]
    assert bob.ok("dm_history", after=ids[-1])["messages"] == []


def test_history_and_a_conversation_page_forward_with_after(connect):
    alice, bob = connect("alice"), connect("bob")
    alice.ok("join", room="r")
    ids = [alice.ok("send", room="r", text=f"r{n}")["message"]["id"] for n in range(5)]
    assert _texts(alice.ok("history", room="r", after=ids[0], limit=2)) == ["r1", "r2"]
    assert _texts(alice.ok("history", room="r", after=ids[2])) == ["r3", "r4"]
    assert _texts(alice.ok("history", room="r", after=0, before=ids[2])) == ["r0", "r1"]
    sent = [bob.ok("dm", to="alice", text=f"d{n}")["message"]["id"] for n in range(3)]
    assert _texts(alice.ok("dm_history", **{"with": "bob", "after": sent[0]})) == ["d1", "d2"]


def test_after_is_checked_like_before(connect):
    alice = connect("alice")
    alice.ok("join", room="r")
    assert alice.error("history", room="r", after="1") == "bad_request"
    assert alice.error("history", room="r", after=True) == "bad_request"
    assert alice.error("dm_history", after=1.5) == "bad_request"
    assert alice.error("dm_history", limit=0) == "bad_request"
    assert alice.error("dm_history", **{"with": "nobody"}) == "no_such_user"
