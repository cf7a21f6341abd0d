"""The hub and the fan-out with list-backed fake connections: who gets which event, kept history."""

from __future__ import annotations

import json
from typing import Any

from chatd.config import ServerConfig
from chatd.dialects.json import JsonDialect
from chatd.events import Parted, TopicChanged
from chatd.fanout import InOrder, to_room, to_room_and_user
from chatd.hub import Hub, kept_size
from chatd.outgoing import Bundle, Outgoing
from chatd.records import Message, RoomRecord

DIALECT = JsonDialect(ServerConfig())


class FakePeer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.frames: list[dict[str, Any]] = []

    def deliver(self, item: Outgoing | Bundle) -> None:
        self.frames.extend(json.loads(line) for line in DIALECT.events(item).splitlines())

    def deliver_in_order(self, items: list[InOrder]) -> None:
        raise AssertionError("not a poster")

    def kick(self, code: object, message: str) -> None:
        raise AssertionError("not kicked")


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
    to_room(hub, "general", TopicChanged("general", "hi", "bob"), exclude=alice1)
    event = {"event": "topic", "room": "general", "topic": "hi", "user": "bob"}
    assert alice1.frames == [] and carol.frames == []
    assert alice2.frames == bob.frames == [event]


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
    to_room_and_user(hub, "general", "alice", Parted("general", "alice"), exclude=alice1)
    event = {"event": "part", "room": "general", "user": "alice"}
    assert alice1.frames == [] and alice2.frames == [event] and bob.frames == [event]
    assert not hub.is_member("general", "alice")


def test_peers_of_users_lists_each_connection_once():
    hub = Hub()
    me1, me2 = FakePeer("1"), FakePeer("2")
    hub.connect("alice", me1)
    hub.connect("alice", me2)
    assert sorted(p.name for p in hub.peers_of_users(("alice", "ALICE"))) == ["1", "2"]


def message(message_id: int, room: str | None = "general") -> Outgoing:
    text = f"m{message_id}"
    return Outgoing(Message(message_id, room, "alice", text, "2026-01-01T00:00:00.000Z"))


def fanned_out(hub: Hub, *items: Outgoing) -> None:
    """What the writer and the fan-out tell the hub of a committed batch (positions = ids)."""
    ids = [item.event.id for item in items if isinstance(item.event, Message)]
    hub.committed(ids[0], ids[-1])
    rooms: dict[str, list[Outgoing]] = {}
    for item in items:
        assert isinstance(item.event, Message)
        if item.event.room is not None:
            rooms.setdefault(item.event.room, []).append(item)
    for room, share in rooms.items():
        last = share[-1].event
        assert isinstance(last, Message)
        hub.delivered(room, last.id, share)


def ids(history: list[Outgoing] | None) -> list[int]:
    assert history is not None
    return [item.event.id for item in history if isinstance(item.event, Message)]


def test_kept_history_follows_delivered_messages_and_holds_the_last_n():
    hub = Hub(history_size=3, last_message_id=2)
    hub.load([(RoomRecord(1, "general", ""), ["alice"]), (RoomRecord(2, "other", ""), [])])
    assert hub.recent("general") is None  # nothing kept until a join has read the store
    hub.keep_recent("general", [message(1), message(2)])
    fanned_out(hub, message(3, "other"), message(4), message(5, None))
    fanned_out(hub, message(6))
    assert ids(hub.recent("general")) == [2, 4, 6]
    assert hub.recent("other") is None
    assert hub.recent("nowhere") is None


def test_a_join_sees_what_was_stored_before_start_and_what_was_fanned_out_since():
    hub = Hub(history_size=3, last_message_id=10, log_position=10)
    hub.load([(RoomRecord(1, "general", ""), ["alice"]), (RoomRecord(2, "other", ""), [])])
    assert hub.visible_upto("general") == 10
    fanned_out(hub, message(11), message(12, "other"))
    assert hub.visible_upto("general") == 11
    hub.committed(13, 13)  # committed, not yet fanned out: a join must not show it
    assert hub.visible_upto("general") == 11 and hub.visible_upto("other") == 12


def test_messages_stored_by_someone_else_make_the_hub_forget_kept_history():
    hub = Hub(history_size=3, last_message_id=10)
    hub.load([(RoomRecord(1, "general", ""), ["alice"])])
    hub.keep_recent("general", [message(10)])
    fanned_out(hub, message(11))
    assert not hub.check_newest(11)  # our own messages
    assert ids(hub.recent("general")) == [10, 11]
    assert hub.check_newest(14)  # e.g. `chatd import` while the server runs
    assert hub.recent("general") is None
    assert not hub.check_newest(14)


def test_an_id_gap_in_committed_messages_makes_the_hub_forget_kept_history():
    hub = Hub(history_size=3, last_message_id=10)
    hub.load([(RoomRecord(1, "general", ""), ["alice"])])
    hub.keep_recent("general", [message(10)])
    fanned_out(hub, message(11))
    assert ids(hub.recent("general")) == [10, 11]
    hub.committed(14, 14)  # 12 and 13 were stored by someone else
    assert hub.recent("general") is None


def test_kept_history_is_bounded_and_the_least_recently_read_room_forgets_first():
    size = kept_size(message(1, "a"))
    hub = Hub(history_size=2, last_message_id=0, kept_bytes=5 * size)
    hub.load([(RoomRecord(n, name, ""), ["alice"]) for n, name in enumerate("abc", 1)])
    hub.keep_recent("a", [message(1, "a"), message(2, "a")])
    hub.keep_recent("b", [message(3, "b"), message(4, "b")])
    assert hub.recent("a") is not None  # a is now more recently read than b
    hub.keep_recent("c", [message(5, "c"), message(6, "c")])  # 6 kept > 5: b goes
    assert hub.recent("b") is None
    assert ids(hub.recent("a")) == [1, 2]
    assert ids(hub.recent("c")) == [5, 6]


def test_kept_history_bytes_follow_messages_pushed_out_by_new_ones():
    size = kept_size(message(99, "a"))  # every two-digit id's message is this big
    hub = Hub(history_size=2, last_message_id=10, kept_bytes=4 * size)
    hub.load([(RoomRecord(1, "a", ""), ["alice"]), (RoomRecord(2, "b", ""), ["alice"])])
    hub.keep_recent("a", [])
    hub.keep_recent("b", [])
    for n in range(11, 51, 2):  # far more than history_size: each room stays at 2
        fanned_out(hub, message(n, "a"), message(n + 1, "b"))
    assert ids(hub.recent("a")) == [47, 49]
    assert ids(hub.recent("b")) == [48, 50]
    fanned_out(hub, message(51, "a"))
    hub.keep_recent("c", [])  # an unknown room keeps nothing
    assert hub.recent("c") is None
    hub.load([(RoomRecord(3, "c", ""), ["alice"])])
    hub.keep_recent("c", [message(52, "c")])  # 5 kept: a was read before b, so a goes
    assert hub.recent("a") is None
    assert ids(hub.recent("b")) == [48, 50]


def test_reloading_a_room_drops_its_kept_history_and_its_bytes():
    hub = Hub(history_size=2, last_message_id=0, kept_bytes=kept_size(message(1, "a")))
    for _ in range(3):  # each load replaces the room; the bound must not leak
        hub.load([(RoomRecord(1, "a", ""), ["alice"])])
        assert hub.recent("a") is None
        hub.keep_recent("a", [message(1, "a")])
        assert ids(hub.recent("a")) == [1]


def test_a_hub_without_history_keeps_none():
    hub = Hub(history_size=0, last_message_id=0)
    hub.load([(RoomRecord(1, "a", ""), ["alice"])])
    hub.keep_recent("a", [])
    fanned_out(hub, message(1, "a"))
    assert hub.recent("a") is None
