"""Requests of one connection take effect in order, and every member sees a room's ids ascending.

Pipelined frames written in one go are the hard case: the reader thread
handles the next request while the writer is still committing the previous
one.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest

from chatd.protocol import encode


def _frames(*frames: dict[str, Any]) -> bytes:
    return b"".join(encode(frame) for frame in frames)


def _replies(client, count: int) -> dict[Any, dict[str, Any]]:
    replies = {}
    while len(replies) < count:
        reply = client.next_reply()
        replies[reply["id"]] = reply
    return replies


@pytest.mark.parametrize("attempt", range(5))
def test_a_send_followed_at_once_by_part_is_stored(connect, server, attempt):
    alice, bob = connect("alice"), connect("bob")
    for client in (alice, bob):
        client.ok("join", room="bye")
    alice.send_raw(
        _frames(
            {"op": "send", "id": "s", "room": "bye", "text": f"bye {attempt}"},
            {"op": "part", "id": "p", "room": "bye"},
        )
    )
    replies = _replies(alice, 2)
    assert replies["s"]["ok"] is True, replies["s"]
    assert replies["p"]["ok"] is True, replies["p"]
    stored = bob.ok("history", room="bye")["messages"]
    assert [m["text"] for m in stored] == [f"bye {attempt}"]
    assert bob.next_event("message")["text"] == f"bye {attempt}"


def test_send_part_join_in_one_write_take_effect_in_order(connect, server):
    alice = connect("alice")
    alice.ok("join", room="r")
    for attempt in range(10):
        alice.send_raw(
            _frames(
                {"op": "send", "id": f"s{attempt}", "room": "r", "text": f"m{attempt}"},
                {"op": "part", "id": f"p{attempt}", "room": "r"},
                {"op": "join", "id": f"j{attempt}", "room": "r"},
            )
        )
        replies = _replies(alice, 3)
        assert all(reply["ok"] for reply in replies.values()), replies
        assert replies[f"j{attempt}"]["history"][-1]["text"] == f"m{attempt}"


def test_a_part_then_a_send_in_one_write_is_refused(connect, server):
    alice = connect("alice")
    alice.ok("join", room="r")
    alice.send_raw(
        _frames(
            {"op": "part", "id": "p", "room": "r"},
            {"op": "send", "id": "s", "room": "r", "text": "too late"},
        )
    )
    replies = _replies(alice, 2)
    assert replies["p"]["ok"] is True
    assert replies["s"]["error"] == "not_in_room"


def _pipeline(client, room: str, count: int, barrier: threading.Barrier) -> None:
    data = _frames(
        *(
            {"op": "send", "id": n, "room": room, "text": f"{client.username} {n}"}
            for n in range(count)
        )
    )
    barrier.wait(timeout=10)
    client.send_raw(data)


def test_every_member_sees_the_rooms_ids_ascending_counting_its_own_replies(connect, server):
    count = 400
    alice, bob = connect("alice"), connect("bob")
    for client in (alice, bob):
        client.ok("join", room="r")
    barrier = threading.Barrier(2)
    threads = [
        threading.Thread(target=_pipeline, args=(client, "r", count, barrier))
        for client in (alice, bob)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    for client in (alice, bob):
        seen: list[int] = []
        replies = 0
        while len(seen) < 2 * count:
            frame = client.next_frame()
            if frame.get("event") == "message":
                seen.append(frame["id"])
            elif "ok" in frame:
                assert frame["ok"] is True, frame
                seen.append(frame["message"]["id"])
                replies += 1
        assert replies == count
        inversions = sum(1 for a, b in itertools.pairwise(seen) if b < a)
        assert inversions == 0, f"{client.username} saw {inversions} ids out of order"
        assert len(set(seen)) == 2 * count
