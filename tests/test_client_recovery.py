"""recovery.py: the pure bookkeeping behind "nothing missed, nothing twice" on reconnect."""

from __future__ import annotations

from client.recovery import Whereabouts, find_stored, newer_pages, newer_than, rooms_to_rejoin


def m(mid: int, text: str = "hi", user: str = "alice", room: str | None = "general") -> dict:
    return {"id": mid, "room": room, "user": user, "text": text, "ts": "2026-01-01T00:00:00.000Z"}


def test_newer_than_keeps_only_unseen_messages() -> None:
    assert [x["id"] for x in newer_than([m(1), m(5), m(9)], 5)] == [9]


def test_rooms_to_rejoin_keeps_our_order_and_adds_the_servers() -> None:
    assert rooms_to_rejoin(["b", "a"], ["a", "c", 7]) == ["b", "a", "c"]
    assert rooms_to_rejoin(["a"], None) == ["a"]


def test_find_stored_matches_our_text_after_the_mark_only() -> None:
    history = [m(3, "same"), m(8, "same", user="bob"), m(9, "same"), m(10, "same")]
    assert find_stored(history, me="Alice", text="same  ", after=3) == m(9, "same")
    assert find_stored(history, me="alice", text="same", after=3, taken=[history[2]]) == m(
        10, "same"
    )
    assert find_stored(history, me="alice", text="other", after=0) is None
    assert find_stored(history, me="alice", text="same", after=10) is None


def test_whereabouts_follows_replies_and_our_own_events() -> None:
    known = Whereabouts()
    known.reply("join", {"ok": True, "room": "general", "history": [m(4), m(6)]})
    known.event({"event": "message", **m(7)}, "bob")
    known.event({"event": "dm", **m(11, room=None)}, "bob")
    assert known.last_id == {"general": 7} and known.max_id == 11
    assert known.mark({"room": "general", "text": "x"}) == 7
    assert known.mark({"to": "alice", "text": "x"}) == 11
    known.event({"event": "join", "room": "random", "user": "BOB"}, "bob")
    known.event({"event": "join", "room": "other", "user": "carol"}, "bob")
    assert list(known.rooms) == ["general", "random"]
    known.reply("part", {"ok": True, "room": "general"})
    known.event({"event": "part", "room": "random", "user": "bob"}, "bob")
    assert list(known.rooms) == []


def test_a_message_event_already_seen_in_a_history_is_a_repeat() -> None:
    known = Whereabouts()
    known.joined("general", [m(4), m(6)])
    assert known.is_repeat({"event": "message", **m(6)})
    assert not known.is_repeat({"event": "message", **m(7)})
    assert not known.is_repeat({"event": "message", **m(1, room="random")})
    assert not known.is_repeat({"event": "dm", **m(2, room=None)})


def pages_of(ids: list[int], page: int):
    """A fake history: fetch(before) returns the `page` newest messages below `before`."""
    calls: list[int | None] = []

    def fetch(before: int | None, limit: int) -> list[dict]:
        calls.append(before)
        below = [mid for mid in ids if before is None or mid < before]
        return [m(mid) for mid in below[-min(page, limit) :]]

    return fetch, calls


def test_newer_pages_fetches_every_missed_message_back_to_the_last_seen() -> None:
    ids = list(range(1, 101))
    fetch, calls = pages_of(ids, 10)
    found, gap = newer_pages(fetch, 28, page=10, newest=fetch(None, 10), newest_page=10)
    assert [x["id"] for x in found] == list(range(29, 101))
    assert gap is None
    assert calls == [None, 91, 81, 71, 61, 51, 41, 31]


def test_newer_pages_stops_at_the_cap_and_says_where_the_gap_is() -> None:
    fetch, _calls = pages_of(list(range(1, 101)), 10)
    found, gap = newer_pages(fetch, 5, page=10, cap=25)
    assert [x["id"] for x in found] == list(range(76, 101))
    assert gap == 76


def test_newer_pages_with_a_short_first_page_fetches_nothing_more() -> None:
    fetch, calls = pages_of(list(range(1, 6)), 10)
    found, gap = newer_pages(fetch, 0, page=10, newest=fetch(None, 10), newest_page=50)
    assert [x["id"] for x in found] == [1, 2, 3, 4, 5] and gap is None
    assert calls == [None]


def test_newer_pages_with_nothing_new() -> None:
    fetch, calls = pages_of(list(range(1, 21)), 10)
    assert newer_pages(fetch, 20, page=10) == ([], None)
    assert calls == [None]


def test_whereabouts_tracks_the_newest_direct_message() -> None:
    known = Whereabouts()
    known.seen([m(4, room=None), m(9), m(7, room=None)])
    assert known.direct_id == 7 and known.max_id == 9
