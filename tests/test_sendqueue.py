"""The outgoing queue over a real socket pair: order, reply slots, overflow, close."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from chatd.sendqueue import SendQueue
from chatd.transport import PlainTransport


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    theirs.settimeout(10)
    yield ours, theirs
    ours.close()
    theirs.close()


def make_queue(sock: socket.socket, limit: int = 1 << 20) -> tuple[SendQueue, threading.Event]:
    stopped = threading.Event()
    return SendQueue(PlainTransport(sock), limit, b"OVERFLOW\n", on_stop=stopped.set), stopped


def read_until(sock: socket.socket, wanted: bytes) -> bytes:
    data = b""
    deadline = time.monotonic() + 10
    while not data.endswith(wanted) and time.monotonic() < deadline:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    return data


def test_puts_arrive_in_order_without_a_writer_thread(pair):
    ours, theirs = pair
    queue, _stopped = make_queue(ours)
    for n in range(100):
        assert queue.put(f"{n}\n".encode())
    assert queue._writer is None
    assert read_until(theirs, b"99\n") == b"".join(f"{n}\n".encode() for n in range(100))


def test_replies_wait_for_their_slot_and_events_may_pass_it(pair):
    ours, theirs = pair
    queue, _stopped = make_queue(ours)
    slot = queue.reserve()
    queue.put(b"event\n", event=True)
    assert read_until(theirs, b"event\n") == b"event\n"
    queue.put(b"reply after the slot\n")
    queue.fill([(slot, b"slot reply\n")])
    assert read_until(theirs, b"after the slot\n") == b"slot reply\nreply after the slot\n"


def test_an_event_never_passes_a_join_reply(pair):
    """The room's next events follow the history a join's reply holds."""
    ours, theirs = pair
    queue, _stopped = make_queue(ours)
    first = queue.reserve()
    queue.put(b"join reply\n", barrier=True)
    queue.put(b"event\n", event=True)
    queue.fill([(first, b"first\n")])
    assert read_until(theirs, b"event\n") == b"first\njoin reply\nevent\n"


def test_an_event_passes_every_waiting_slot_and_the_replies_behind_them(pair):
    """A sender with a pong between two sends still sees ids ascending: the event of an
    earlier batch goes before both sends' replies, pong or not."""
    ours, theirs = pair
    queue, _stopped = make_queue(ours)
    send_5, send_6 = queue.reserve(), queue.reserve()
    queue.put(b"pong\n")
    send_7 = queue.reserve()
    queue.put(b"event 4\n", event=True)
    assert read_until(theirs, b"event 4\n") == b"event 4\n"
    queue.put(b"event 4b\n", event=True)
    assert read_until(theirs, b"event 4b\n") == b"event 4b\n"
    queue.fill([(send_5, b"5\n"), (send_6, b"6\n"), (send_7, b"7\n")])
    assert read_until(theirs, b"7\n") == b"5\n6\npong\n7\n"


def test_events_keep_their_order_behind_a_barrier(pair):
    ours, theirs = pair
    queue, _stopped = make_queue(ours)
    first = queue.reserve()
    queue.put(b"join reply\n", barrier=True)
    later = queue.reserve()
    queue.put(b"event 1\n", event=True)
    queue.put(b"event 2\n", event=True)
    queue.fill([(first, b"first\n"), (later, b"later\n")])
    assert read_until(theirs, b"later\n") == (b"first\njoin reply\nevent 1\nevent 2\nlater\n")


def test_a_batch_meets_its_own_replies_in_id_order(pair):
    ours, theirs = pair
    queue, _stopped = make_queue(ours)
    mine_3, ping, mine_5, next_batch = (queue.reserve() for _ in range(4))
    queue.fill([(ping, b"ping\n")])
    queue.put_in_order(
        [b"2\n", (mine_3, b"3\n"), b"4\n", (mine_5, b"5\n"), b"6\n"],
    )
    queue.fill([(next_batch, b"7\n")])
    assert read_until(theirs, b"7\n") == b"2\n3\n4\nping\n5\n6\n7\n"


def test_a_batch_without_own_replies_goes_before_later_slots(pair):
    ours, theirs = pair
    queue, _stopped = make_queue(ours)
    later = queue.reserve()
    queue.put_in_order([b"1\n", b"2\n"])
    assert read_until(theirs, b"2\n") == b"1\n2\n"
    queue.fill([(later, b"3\n")])
    assert read_until(theirs, b"3\n") == b"3\n"


def test_a_batch_that_overflows_the_queue_drops_the_connection(pair):
    ours, theirs = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    queue, stopped = make_queue(ours, limit=50_000)
    slot = queue.reserve()
    queue.put(b"x" * 10_000)
    queue.put_in_order([b"y" * 60_000, (slot, b"reply\n")])
    assert queue.overflowed
    assert read_until(theirs, b"OVERFLOW\n").endswith(b"OVERFLOW\n")
    assert stopped.wait(10)


def test_a_backlog_goes_to_a_writer_thread_and_arrives_whole(pair):
    ours, theirs = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    queue, _stopped = make_queue(ours, limit=64 << 20)
    blob = bytes(range(256)) * 4096
    for _ in range(4):
        queue.put(blob)
    queue.put(b"END\n")
    received = read_until(theirs, b"END\n")
    assert received == blob * 4 + b"END\n"


def test_overflow_replaces_the_queue_and_stops(pair):
    ours, theirs = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    queue, stopped = make_queue(ours, limit=50_000)
    results = [queue.put(b"x" * 10_000) for _ in range(40)]
    assert results[-1] is False and queue.overflowed
    assert not queue.put(b"late\n")
    received = read_until(theirs, b"OVERFLOW\n")
    assert received.endswith(b"OVERFLOW\n")
    assert stopped.wait(10)


def test_close_sends_what_is_queued_then_the_final_frame(pair):
    ours, theirs = pair
    queue, stopped = make_queue(ours)
    slot = queue.reserve()
    queue.close(b"bye\n")
    assert not stopped.is_set()
    queue.fill([(slot, b"owed\n")])
    assert read_until(theirs, b"bye\n") == b"owed\nbye\n"
    assert stopped.wait(10)
    assert not queue.put(b"after close\n")
