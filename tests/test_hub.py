"""The hub with list-backed fake connections: who gets which event."""

from __future__ import annotations

import json

from chatd.hub import Hub
from chatd.protocol import message_body
from chatd.records import MessageRecord, RoomRecord


class FakePeer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.frames: list[dict] = []

    def deliver(self, data: bytes) -> None:
        self.frames.append(json.loads(data))


def hub_with(rooms: dict[str, list[str]]) -> Hub:
    hub = Hub()
    hub.load(
        (RoomRecord(i, name, ""), members) for i, (name, members) in enumerate(rooms.items(), 1)
    )
    return hub


def test_room_events_reach_every_connection_of_every_member_but_the_excluded():
    hub = hub_with({"general": ["alice", "Bob"], "other": ["carol"]})
    alice1, alice2, bob, carol = (FakePeer(n) for n in ("a1", "a2", "b", "c"))
    hub.connect("alice", alice1)
    hub.connect("ALICE", alice2)
    hub.connect("bob", bob)
    hub.connect("carol", carol)
    hub.to_room("general", {"event": "message", "text": "hi"}, exclude=alice1)
    assert alice1.frames == [] and carol.frames == []
    assert alice2.frames == bob.frames == [{"event": "message", "text": "hi"}]


def test_membership_and_online_lists_are_sorted_case_insensitively():
    hub = hub_with({"general": ["zed", "Alice", "bob"]})
    hub.connect("bob", FakePeer("b"))
    assert hub.members("general") == (["Alice", "bob", "zed"], ["bob"])
    assert hub.members("nowhere") == ([], [])


def test_disconnect_takes_a_user_offline_only_after_the_last_connection():
    hub = hub_with({"general": ["alice"]})
    first, second = FakePeer("1"), FakePeer("2")
    hub.connect("alice", first)
    hub.connect("alice", second)
    hub.disconnect("alice", first)
    assert hub.members("general")[1] == ["alice"]
    hub.disconnect("alice", second)
    assert hub.members("general")[1] == []


def test_part_event_reaches_the_room_and_the_users_other_connections():
    hub = hub_with({"general": ["alice", "bob"]})
    alice1, alice2, bob = FakePeer("a1"), FakePeer("a2"), FakePeer("b")
    for name, peer in (("alice", alice1), ("alice", alice2), ("bob", bob)):
        hub.connect(name, peer)
    hub.remove_member("general", "alice")
    event = {"event": "part", "room": "general", "user": "alice"}
    hub.to_room_and_user("general", "alice", event, exclude=alice1)
    assert alice1.frames == [] and alice2.frames == [event] and bob.frames == [event]
    assert not hub.is_member("general", "alice")


def test_peers_of_users_lists_each_connection_once():
    hub = Hub()
    me1, me2 = FakePeer("1"), FakePeer("2")
    hub.connect("alice", me1)
    hub.connect("alice", me2)
    assert sorted(p.name for p in hub.peers_of_users(("alice", "ALICE"))) == ["1", "2"]


def message(message_id: int, room: str | None) -> tuple[MessageRecord, bytes]:
    record = MessageRecord(message_id, room, "alice", f"m{message_id}", 0, None, None)
    return record, message_body(record.wire())


def stored(hub: Hub, *messages: tuple[MessageRecord, bytes]) -> None:
    hub.stored((record.id, record.room, body) for record, body in messages)


def ids(history: list[bytes] | None) -> list[int]:
    assert history is not None
    return [json.loads(body)["id"] for body in history]


def test_kept_history_follows_stored_messages_and_holds_the_last_n():
    hub = Hub(history_size=3, last_message_id=2)
    hub.load([(RoomRecord(1, "general", ""), ["alice"]), (RoomRecord(2, "other", ""), [])])
    assert hub.recent("general") is None  # nothing kept until a join has read the store
    hub.keep_recent("general", [message(1, "general")[1], message(2, "general")[1]])
    stored(hub, message(3, "other"), message(4, "general"), message(5, None))
    stored(hub, message(6, "general"))
    assert ids(hub.recent("general")) == [2, 4, 6]
    assert hub.recent("other") is None
    assert hub.recent("nowhere") is None


def test_messages_stored_by_someone_else_make_the_hub_forget_kept_history():
    hub = Hub(history_size=3, last_message_id=10)
    hub.load([(RoomRecord(1, "general", ""), ["alice"])])
    hub.keep_recent("general", [message(10, "general")[1]])
    stored(hub, message(11, "general"))
    assert not hub.check_newest(11)  # our own messages
    assert ids(hub.recent("general")) == [10, 11]
    assert hub.check_newest(14)  # e.g. `chatd import` while the server runs
    assert hub.recent("general") is None
    assert not hub.check_newest(14)


def test_an_id_gap_in_stored_messages_makes_the_hub_forget_kept_history():
    hub = Hub(history_size=3, last_message_id=10)
    hub.load([(RoomRecord(1, "general", ""), ["alice"])])
    hub.keep_recent("general", [message(10, "general")[1]])
    stored(hub, message(11, "general"))
    assert ids(hub.recent("general")) == [10, 11]
    stored(hub, message(14, "general"))  # 12 and 13 were stored by someone else
    assert hub.recent("general") is None


def test_kept_history_is_bounded_and_the_least_recently_read_room_forgets_first():
    body_size = len(message(1, "a")[1])
    hub = Hub(history_size=2, last_message_id=0, kept_bytes=5 * body_size)
    hub.load([(RoomRecord(n, name, ""), ["alice"]) for n, name in enumerate("abc", 1)])
    hub.keep_recent("a", [message(1, "a")[1], message(2, "a")[1]])
    hub.keep_recent("b", [message(3, "b")[1], message(4, "b")[1]])
    assert hub.recent("a") is not None  # a is now more recently read than b
    hub.keep_recent("c", [message(5, "c")[1], message(6, "c")[1]])  # 6 bodies > 5: b goes
    assert hub.recent("b") is None
    assert ids(hub.recent("a")) == [1, 2]
    assert ids(hub.recent("c")) == [5, 6]


def test_kept_history_bytes_follow_messages_pushed_out_by_new_ones():
    body_size = len(message(99, "a")[1])  # every two-digit id's body is this long
    hub = Hub(history_size=2, last_message_id=0, kept_bytes=4 * body_size)
    hub.load([(RoomRecord(1, "a", ""), ["alice"]), (RoomRecord(2, "b", ""), ["alice"])])
    hub.keep_recent("a", [])
    hub.keep_recent("b", [])
    for n in range(1, 41, 2):  # far more than history_size: each room stays at 2 bodies
        stored(hub, message(n, "a"), message(n + 1, "b"))
    assert ids(hub.recent("a")) == [37, 39]
    assert ids(hub.recent("b")) == [38, 40]
    stored(hub, message(41, "a"))
    hub.keep_recent("c", [])  # an unknown room keeps nothing
    assert hub.recent("c") is None
    hub.load([(RoomRecord(3, "c", ""), ["alice"])])
    hub.keep_recent("c", [message(42, "c")[1]])  # 5 bodies: a was read before b, so a goes
    assert hub.recent("a") is None
    assert ids(hub.recent("b")) == [38, 40]


def test_reloading_a_room_drops_its_kept_history_and_its_bytes():
    body_size = len(message(1, "a")[1])
    hub = Hub(history_size=2, last_message_id=0, kept_bytes=body_size)
    for _ in range(3):  # each load replaces the room; the bound must not leak
        hub.load([(RoomRecord(1, "a", ""), ["alice"])])
        assert hub.recent("a") is None
        hub.keep_recent("a", [message(1, "a")[1]])
        assert ids(hub.recent("a")) == [1]


def test_a_hub_without_history_keeps_none():
    hub = Hub(history_size=0, last_message_id=0)
    hub.load([(RoomRecord(1, "a", ""), ["alice"])])
    hub.keep_recent("a", [])
    stored(hub, message(1, "a"))
    assert hub.recent("a") is None
