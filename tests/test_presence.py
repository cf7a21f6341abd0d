"""Who is online on other nodes: presence frames, heartbeats, reloads and silence."""

from __future__ import annotations

from collections import Counter

from conftest import FakeClock

from chatd.bus import Committed, Heartbeat, PresenceChanged, decode_frame, encode_frame
from chatd.log import Batch, Entered, Posted
from chatd.presence import SILENCE, ClusterPresence, Snapshot
from chatd.records import Message


class Sink:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def online_elsewhere(self, came, went) -> None:
        self.counts.update(came)
        self.counts.subtract(went)
        self.counts += Counter()  # drop zeros

    @property
    def online(self) -> set[str]:
        return set(self.counts)


def make(stored: dict[str, Snapshot]) -> tuple[ClusterPresence, Sink, FakeClock, list[str]]:
    sink, clock, loads = Sink(), FakeClock(), []

    def load(node: str) -> Snapshot:
        loads.append(node)
        return stored.get(node)

    return ClusterPresence(sink, load, clock=clock), sink, clock, loads


def test_a_new_node_is_loaded_whole_then_followed_change_by_change() -> None:
    presence, sink, _clock, loads = make({"b/1": (2, {"alice", "bob"})})
    presence.heartbeat(Heartbeat("b/1", 2))
    assert sink.online == {"alice", "bob"} and loads == ["b/1"]
    presence.changed(PresenceChanged("b/1", 3, "carol", True))
    presence.changed(PresenceChanged("b/1", 4, "alice", False))
    assert sink.online == {"bob", "carol"}
    presence.heartbeat(Heartbeat("b/1", 4))
    assert loads == ["b/1"]  # in step: nothing to reload


def test_a_missed_change_makes_the_node_reload() -> None:
    stored: dict[str, Snapshot] = {"b/1": (1, {"alice"})}
    presence, sink, _clock, loads = make(stored)
    presence.heartbeat(Heartbeat("b/1", 1))
    stored["b/1"] = (3, {"alice", "bob", "carol"})
    presence.changed(PresenceChanged("b/1", 3, "carol", True))  # 2 was lost
    assert sink.online == {"alice", "bob", "carol"} and loads == ["b/1", "b/1"]
    presence.changed(PresenceChanged("b/1", 3, "carol", True))  # late copy: already in
    assert sink.online == {"alice", "bob", "carol"}


def test_a_heartbeat_out_of_step_makes_the_node_reload() -> None:
    stored: dict[str, Snapshot] = {"b/1": (1, {"alice"})}
    presence, sink, _clock, _loads = make(stored)
    presence.heartbeat(Heartbeat("b/1", 1))
    stored["b/1"] = (5, {"dave"})
    presence.heartbeat(Heartbeat("b/1", 5))
    assert sink.online == {"dave"}


def test_a_user_on_two_nodes_stays_online_until_both_are_gone() -> None:
    presence, sink, _clock, _loads = make({"b/1": (1, {"alice"}), "c/1": (1, {"alice"})})
    presence.heartbeat(Heartbeat("b/1", 1))
    presence.heartbeat(Heartbeat("c/1", 1))
    presence.changed(PresenceChanged("b/1", 2, "alice", False))
    assert sink.online == {"alice"}
    presence.changed(PresenceChanged("c/1", 2, "alice", False))
    assert sink.online == set()


def test_a_silent_node_is_taken_for_dead_and_its_users_offline() -> None:
    presence, sink, clock, _loads = make({"b/1": (1, {"alice"}), "c/1": (1, {"bob"})})
    presence.heartbeat(Heartbeat("b/1", 1))
    presence.heartbeat(Heartbeat("c/1", 1))
    clock.advance(SILENCE - 1)
    presence.heartbeat(Heartbeat("c/1", 1))
    presence.expire()
    assert sink.online == {"alice", "bob"}
    clock.advance(1.5)
    presence.expire()
    assert sink.online == {"bob"} and presence.nodes == ["c/1"]


def test_silence_counts_from_the_bus_coming_back() -> None:
    """While this node was cut off from the bus, nobody's silence means they died."""
    presence, sink, clock, _loads = make({"b/1": (1, {"alice"})})
    presence.heartbeat(Heartbeat("b/1", 1))
    clock.advance(SILENCE + 20)
    presence.heard_all()
    presence.expire()
    assert sink.online == {"alice"}


def test_a_node_whose_presence_is_gone_from_redis_is_forgotten() -> None:
    stored: dict[str, Snapshot] = {"b/1": (1, {"alice"})}
    presence, sink, _clock, _loads = make(stored)
    presence.heartbeat(Heartbeat("b/1", 1))
    del stored["b/1"]
    presence.heartbeat(Heartbeat("b/1", 9))
    assert sink.online == set() and presence.nodes == []


def test_frames_round_trip() -> None:
    message = Message(7, "general", "alice", "hi", "2026-11-30T10:00:00.000Z")
    batch = Batch("a", 3, 5, [Posted(3, message), Entered(5, 1, "general", "", "bob")])
    for frame in (
        Committed("a/1", batch),
        PresenceChanged("a/1", 4, "bob", False),
        Heartbeat("a/1", 4),
    ):
        assert decode_frame(encode_frame(frame)) == frame
