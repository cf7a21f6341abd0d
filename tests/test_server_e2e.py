"""End to end: a real server on 127.0.0.1:0, a real SQLite file, real sockets."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from conftest import PASSWORD, closed
from wire import ConnectionClosed, WireClient

from chatd.handlers import HANDLERS
from chatd.protocol import encode
from chatd.requests import Rooms


def message_fields(frame: dict) -> dict:
    return {key: frame[key] for key in ("id", "room", "user", "text", "ts")}


def test_seed_example_message_reaches_only_its_room(connect):
    a, b, c, d = (connect(name) for name in ("alice", "bob", "carol", "dave"))
    for member in (a, b, c):
        member.ok("join", room="general")
    d.ok("join", room="random")
    for member in (a, b, c, d):
        member.drain()
    sent = a.ok("send", room="general", text="hello")["message"]
    assert sent["user"] == "alice" and sent["room"] == "general" and "to" not in sent
    for member in (b, c):
        assert message_fields(member.next_event("message")) == sent
    assert [e for e in d.drain() if e["event"] == "message"] == []
    assert [e for e in a.drain() if e["event"] == "message"] == []


def test_welcome_announces_the_server(server):
    client = WireClient(server.address)
    assert client.welcome == {
        "event": "welcome",
        "server": "chatd",
        "version": client.welcome["version"],
        "protocol": 1,
        "history_size": 50,
        "max_file_bytes": 25 * 1024 * 1024,
        "features": ["conversations"],
    }
    client.close()


def test_sender_identity_comes_from_the_session(connect):
    alice, bob = connect("alice"), connect("bob")
    for client in (alice, bob):
        client.ok("join", room="general")
    sent = alice.ok("send", room="general", text="hi", user="bob")["message"]
    assert sent["user"] == "alice"
    assert bob.next_event("message")["user"] == "alice"


def test_join_replays_exactly_the_last_n_messages_oldest_first(start_server):
    server = start_server(history_size=5)
    alice = WireClient(server.address)
    alice.ok("register", username="alice", password=PASSWORD)
    alice.ok("login", username="alice", password=PASSWORD)
    alice.ok("join", room="general")
    sent = [alice.ok("send", room="general", text=f"m{i}")["message"] for i in range(8)]
    late = WireClient(server.address)
    late.ok("register", username="late", password=PASSWORD)
    late.ok("login", username="late", password=PASSWORD)
    reply = late.ok("join", room="#General")
    assert reply["room"] == "general"
    assert reply["history"] == sent[-5:]
    assert reply["members"] == ["alice", "late"] and reply["online"] == ["alice", "late"]
    # joins after the first answer from the history the server keeps; it must match the store
    alice.ok("dm", to="late", text="not room history")
    sent += [alice.ok("send", room="general", text=f"n{i}")["message"] for i in range(2)]
    assert late.ok("join", room="general")["history"] == sent[-5:]
    assert late.ok("history", room="general", limit=5)["messages"] == sent[-5:]


def test_history_pages_back_with_before_and_limit(connect):
    alice = connect("alice")
    alice.ok("join", room="general")
    ids = [alice.ok("send", room="general", text=f"m{i}")["message"]["id"] for i in range(12)]
    page = alice.ok("history", room="general", before=ids[10], limit=4)["messages"]
    assert [m["id"] for m in page] == ids[6:10]
    older = alice.ok("history", room="general", before=page[0]["id"], limit=500)["messages"]
    assert [m["id"] for m in older] == ids[:6]
    assert alice.ok("history", room="general", before=ids[0])["messages"] == []
    assert [m["id"] for m in alice.ok("history", room="general")["messages"]] == ids
    assert alice.error("history", room="general", limit=0) == "bad_request"
    assert alice.error("history", room="general", limit=501) == "bad_request"


def test_join_is_idempotent_and_announced_once(connect):
    alice, bob = connect("alice"), connect("bob")
    alice.ok("join", room="general")
    bob.ok("join", room="general")
    assert alice.next_event("join") == {"event": "join", "room": "general", "user": "bob"}
    bob.ok("join", room="general")
    assert [e for e in alice.drain() if e["event"] == "join"] == []


def test_part_topic_and_their_events(connect):
    alice, bob = connect("alice"), connect("bob")
    for client in (alice, bob):
        client.ok("join", room="general")
    alice.drain()
    reply = bob.ok("topic", room="general", topic="release day  ")
    assert (reply["room"], reply["topic"]) == ("general", "release day")
    assert alice.next_event("topic") == {
        "event": "topic",
        "room": "general",
        "topic": "release day",
        "user": "bob",
    }
    assert [e for e in bob.drain() if e["event"] == "topic"] == []
    assert bob.ok("part", room="#GENERAL")["room"] == "general"
    assert alice.next_event("part") == {"event": "part", "room": "general", "user": "bob"}
    assert bob.error("send", room="general", text="hi") == "not_in_room"
    assert bob.error("part", room="general") == "not_in_room"
    alice.ok("send", room="general", text="after bob left")
    assert [e for e in bob.drain() if e["event"] == "message"] == []
    assert alice.ok("join", room="general")["topic"] == "release day"


def test_several_connections_of_one_user_each_get_events(connect):
    alice1, alice2, bob = connect("alice"), connect("alice"), connect("bob")
    alice1.ok("join", room="general")
    assert alice2.next_event("join") == {"event": "join", "room": "general", "user": "alice"}
    bob.ok("join", room="general")
    sent = bob.ok("send", room="general", text="to both")["message"]
    for client in (alice1, alice2):
        assert client.next_event("message")["id"] == sent["id"]
    own = alice1.ok("send", room="general", text="mine")["message"]
    assert alice2.next_event("message")["id"] == own["id"]
    assert [e for e in alice1.drain() if e["event"] == "message"] == []


def test_direct_messages_are_stored_and_delivered(connect):
    alice1, alice2, bob = connect("alice"), connect("alice"), connect("bob")
    sent = alice1.ok("dm", to="BOB", text="psst")["message"]
    assert sent["room"] is None and sent["to"] == "bob" and sent["user"] == "alice"
    assert bob.next_event("dm") == {"event": "dm", **sent}
    assert alice2.next_event("dm") == {"event": "dm", **sent}
    reply = bob.ok("dm", to="alice", text="hi back")["message"]
    for alice in (alice1, alice2):
        assert alice.next_event("dm") == {"event": "dm", **reply}
    history = alice1.ok("dm_history", **{"with": "Bob"})["messages"]
    assert history == [sent, reply]
    assert bob.ok("dm_history", **{"with": "alice"}, before=reply["id"])["messages"] == [sent]
    note = alice1.ok("dm", to="alice", text="note to self")["message"]
    assert alice2.next_event("dm")["id"] == note["id"]
    assert [e for e in alice1.drain() if e["event"] == "dm"] == []


def test_who_and_rooms(connect):
    alice, bob = connect("alice"), connect("bob")
    alice.ok("join", room="general")
    alice.ok("join", room="dev")
    bob.ok("join", room="general")
    alice.ok("send", room="general", text="one")
    alice.ok("topic", room="dev", topic="code")
    bob.ok("quit")
    # why: the server takes bob offline as it closes his connection, after the quit reply
    assert closed(bob)
    who = alice.ok("who", room="#general")
    assert who["room"] == "general"
    assert who["members"] == ["alice", "bob"] and who["online"] == ["alice"]
    assert alice.error("who", room="nowhere") == "no_such_room"
    assert alice.ok("rooms")["rooms"] == [
        {"room": "dev", "topic": "code", "members": 1, "messages": 0},
        {"room": "general", "topic": "", "members": 2, "messages": 1},
    ]


def test_registration_and_login_errors(connect):
    client = connect()
    assert client.error("register", username="x", password=PASSWORD) == "invalid_username"
    assert client.error("register", username="alice", password="short") == "invalid_password"
    assert client.error("register", username="alice", password="x" * 73) == "invalid_password"
    client.ok("register", username="Alice", password=PASSWORD)
    assert client.error("register", username="ALICE", password=PASSWORD) == "username_taken"
    assert client.error("login", username="nobody", password=PASSWORD) == "invalid_credentials"
    assert client.error("login", username="alice", password="wrong pass") == "invalid_credentials"
    assert client.error("login", username="alice", password="x" * 100) == "invalid_credentials"
    assert client.error("login", username="!", password=PASSWORD) == "invalid_credentials"
    assert client.ok("login", username="aLiCe", password=PASSWORD)["username"] == "Alice"
    assert client.error("login", username="alice", password=PASSWORD) == "already_logged_in"
    assert client.ok("register", username="bob", password=PASSWORD)["username"] == "bob"
    assert client.ok("join", room="x")["members"] == ["Alice"]


def test_disabled_account_cannot_log_in(connect, server):
    connect("alice")
    from sqlalchemy import update

    from chatd.store import users

    with server.services.store.engine.begin() as conn:
        conn.execute(update(users).values(disabled=True))
    assert connect().error("login", username="alice", password=PASSWORD) == "account_disabled"
    assert connect().error("login", username="alice", password="wrongpass") == (
        "invalid_credentials"
    )


def test_checks_run_in_protocol_order(connect):
    anon = connect()
    assert anon.request("join")["error"] == "auth_required"
    assert anon.request("frobnicate")["error"] == "unknown_op"
    reply = anon.request("ping")
    assert reply["ok"] is True
    anon.send_frame({"op": 5, "id": "a"})
    assert anon.next_reply() == {
        "id": "a",
        "ok": False,
        "error": "bad_request",
        "message": "op must be a string",
    }
    anon.send_frame({"op": "ping", "id": True})
    assert anon.next_reply()["id"] is None
    alice = connect("alice")
    assert alice.error("join") == "bad_request"
    assert alice.error("join", room=5) == "bad_request"
    assert alice.error("join", room=None) == "bad_request"
    assert alice.error("send", room="general", text=True) == "bad_request"
    assert alice.error("history", room="general", before=True) == "bad_request"
    assert alice.error("send", room="bad room", text="\x07") == "invalid_room"
    assert alice.error("send", room="general", text="\x07") == "invalid_text"
    assert alice.error("send", room="general", text="ok") == "not_in_room"
    assert alice.error("send", room="general", text="   ") == "invalid_text"
    assert alice.error("topic", room="general", topic="a\nb") == "invalid_text"
    assert alice.error("topic", room="general", topic="fine") == "not_in_room"
    assert alice.error("history", room="general") == "not_in_room"
    assert alice.error("dm", to="nobody", text="hi") == "no_such_user"
    assert alice.error("dm", to="!!", text="hi") == "no_such_user"
    assert alice.error("dm", to="nobody", text="\x1b[2J") == "invalid_text"
    assert alice.error("dm_history", **{"with": "nobody"}) == "no_such_user"
    for op in ("join", "part", "history", "who", "topic", "send"):
        assert alice.error(op, room="#", text="x", topic="x") == "invalid_room"
    alice.ok("join", room="general", unknown_field=[1, 2])


def test_garbage_keeps_the_connection_and_gets_bad_request_with_null_id(connect):
    alice = connect("alice")
    for raw in (b"garbage\n", b"\xff\xfe\n", b"[1]\n", b'{"op": NaN, "id": 3}\n', b"\n", b"  \r\n"):
        alice.send_raw(raw)
    replies = [alice.next_reply() for _ in range(4)]
    assert [(r["id"], r["error"]) for r in replies] == [(None, "bad_request")] * 4
    assert alice.ok("ping")["ok"]


def test_oversize_frame_closes_with_the_error_event_and_others_keep_going(start_server):
    server = start_server(max_frame=2048)
    bob = WireClient(server.address)
    bob.ok("ping")
    client = WireClient(server.address)
    client.send_raw(b'{"op":"ping","pad":"' + b"x" * 4096)
    assert client.next_frame()["error"] == "frame_too_large"
    with pytest.raises((ConnectionClosed, ConnectionResetError)):
        client.next_frame()
    assert bob.ok("ping")["ok"]
    assert WireClient(server.address).ok("ping")["ok"]


def test_internal_errors_are_answered_and_the_connection_lives(connect, monkeypatch, caplog):
    def explode(req, args):
        raise RuntimeError("boom")

    monkeypatch.setitem(HANDLERS, Rooms, explode)
    client = connect("alice")
    assert client.error("rooms") == "internal"
    assert client.ok("ping")["ok"]
    assert any("boom" in (r.exc_text or "") for r in caplog.records)


def test_idle_connection_that_never_logs_in_is_closed(start_server):
    server = start_server(login_timeout=0.3)
    client = WireClient(server.address)
    assert client.next_event("error", timeout=5)["error"] == "idle_timeout"
    with pytest.raises((ConnectionClosed, ConnectionResetError)):
        client.next_frame(timeout=5)


def test_logged_in_connection_is_never_closed_for_silence(start_server):
    server = start_server(login_timeout=0.3)
    client = WireClient(server.address)
    client.ok("register", username="alice", password=PASSWORD)
    client.ok("login", username="alice", password=PASSWORD)
    with pytest.raises(TimeoutError):
        client.next_frame(timeout=0.8)
    assert client.ok("ping")["ok"]


def test_quit_closes_and_ignores_what_follows(connect):
    client = connect("alice")
    client.send_raw(b'{"op":"quit","id":1}\n{"op":"ping","id":2}\n')
    assert client.next_reply() == {"id": 1, "ok": True}
    with pytest.raises((ConnectionClosed, ConnectionResetError)):
        client.next_frame()


def test_history_and_membership_survive_a_restart(start_server):
    first = start_server()
    alice = WireClient(first.address)
    alice.ok("register", username="alice", password=PASSWORD)
    alice.ok("login", username="alice", password=PASSWORD)
    alice.ok("join", room="general")
    alice.ok("join", room="dev")
    alice.ok("part", room="dev")
    sent = alice.ok("send", room="general", text="remember me")["message"]
    alice.ok("topic", room="general", topic="kept")
    first.stop()
    assert alice.next_event("shutdown")["reason"]

    second = start_server()
    again = WireClient(second.address)
    assert again.ok("login", username="alice", password=PASSWORD)["rooms"] == ["general"]
    again.ok("send", room="general", text="still a member")
    joined = again.ok("join", room="general")
    assert joined["topic"] == "kept"
    assert joined["history"][0] == sent
    assert joined["history"][1]["text"] == "still a member"


def test_clean_stop_sends_shutdown_to_every_connection(start_server):
    server = start_server()
    clients = [WireClient(server.address) for _ in range(3)]
    server.stop()
    for client in clients:
        assert client.next_event("shutdown")["reason"]


def test_room_members_receive_messages_in_id_order_under_concurrency(connect):
    senders = [connect(f"sender{i}") for i in range(4)]
    reader = connect("reader")
    for client in (*senders, reader):
        client.ok("join", room="busy")
    reader.drain()
    per_sender = 25

    def talk(client: WireClient) -> None:
        for n in range(per_sender):
            client.ok("send", room="busy", text=f"{client.username} {n}")

    threads = [threading.Thread(target=talk, args=(s,)) for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ids = [reader.next_event("message")["id"] for _ in range(per_sender * len(senders))]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_join_during_traffic_has_no_gap_and_no_duplicate(connect):
    talker = connect("talker")
    talker.ok("join", room="live")
    stop = threading.Event()
    sent: list[int] = []

    def talk() -> None:
        while not stop.is_set() and len(sent) < 400:
            sent.append(talker.ok("send", room="live", text="tick")["message"]["id"])

    thread = threading.Thread(target=talk)
    thread.start()
    while len(sent) < 20:
        time.sleep(0.01)
    joiner = connect("joiner")
    history = joiner.ok("join", room="live")["history"]
    while len(sent) < len(history) + 40 and thread.is_alive():
        time.sleep(0.01)
    stop.set()
    thread.join(30)
    last = history[-1]["id"]
    later = [i for i in sent if i > last]
    events = [joiner.next_event("message")["id"] for _ in later]
    assert events == later
    assert [e for e in joiner.drain() if e["event"] == "message"] == []


def member_of(address, name: str, room: str, *, rcvbuf: int | None = None) -> WireClient:
    client = WireClient(address, rcvbuf=rcvbuf)
    client.ok("register", username=name, password=PASSWORD)
    client.ok("login", username=name, password=PASSWORD)
    client.ok("join", room=room)
    client.drain()
    return client


def server_side(server, client: WireClient):
    port = client.sock.getsockname()[1]
    return next(c for c in list(server._connections) if c.peer.endswith(f":{port}"))


def test_stalled_reader_is_dropped_while_the_room_keeps_flowing(start_server):
    server = start_server(sendq_bytes=64 * 1024)
    stalled = member_of(server.address, "stalled", "flood", rcvbuf=4096)
    sender = member_of(server.address, "sender", "flood")
    reader = member_of(server.address, "reader", "flood")
    text = "x" * 3900
    deadline = time.monotonic() + 40
    for _ in range(6000):
        sent = sender.ok("send", room="flood", text=text)["message"]["id"]
        assert reader.next_event("message")["id"] == sent
        if server.connection_count == 2 or time.monotonic() > deadline:
            break
    assert server.connection_count == 2, "the stalled client was not dropped"
    for _ in range(20):
        sent = sender.ok("send", room="flood", text="still flowing")["message"]["id"]
        assert reader.next_event("message")["id"] == sent
    with pytest.raises((ConnectionClosed, ConnectionResetError)):
        while True:
            stalled.next_frame()


def test_overflowing_client_gets_sendq_exceeded_when_it_reads_again(start_server):
    server = start_server(sendq_bytes=64 * 1024)
    slow = member_of(server.address, "slow", "flood", rcvbuf=4096)
    slow_side = server_side(server, slow)
    sender = member_of(server.address, "sender", "flood")
    deadline = time.monotonic() + 40
    while not slow_side.outbox.overflowed and time.monotonic() < deadline:
        sender.ok("send", room="flood", text="y" * 3900)
    assert slow_side.outbox.overflowed
    frames = []
    with pytest.raises((ConnectionClosed, ConnectionResetError)):
        while True:
            frames.append(slow.next_frame())
    assert frames[-1]["event"] == "error" and frames[-1]["error"] == "sendq_exceeded"
    ids = [f["id"] for f in frames if f.get("event") == "message"]
    assert ids == sorted(ids)


def test_a_failed_commit_is_answered_internal_and_nothing_is_delivered(
    connect, server, monkeypatch
):
    alice, bob = connect("alice"), connect("bob")
    for client in (alice, bob):
        client.ok("join", room="general")
    bob.drain()

    def broken(changes, node=""):
        raise OSError("disk full")

    monkeypatch.setattr(server.services.store, "append_log", broken)
    assert alice.error("send", room="general", text="lost") == "internal"
    assert [e for e in bob.drain() if e["event"] == "message"] == []
    monkeypatch.undo()
    assert alice.ok("send", room="general", text="fine again")["message"]["text"] == "fine again"
    assert bob.next_event("message")["text"] == "fine again"


@pytest.mark.parametrize("attempt", range(5))
def test_requests_in_flight_when_the_server_stops_do_not_cost_the_shutdown_event(
    start_server, attempt
):
    server = start_server()
    client = WireClient(server.address)
    stop = threading.Thread(target=server.stop)
    pings = b"".join(encode({"op": "ping", "id": n}) for n in range(2000))
    client.send_raw(pings[: len(pings) // 2])
    stop.start()
    with contextlib.suppress(OSError):
        client.send_raw(pings[len(pings) // 2 :])
    frames = []
    with contextlib.suppress(ConnectionClosed, ConnectionResetError):
        while True:
            frames.append(client.next_frame())
    client.close()
    stop.join(timeout=20)
    assert frames and frames[-1].get("event") == "shutdown", frames[-3:]


def test_two_servers_on_one_database_without_a_bus_still_deliver(start_server, connect):
    """A mistake, not a cluster: each server reads the other's messages back from the
    database a second or two late instead of stalling its own clients."""
    first, second = start_server(), start_server()
    alice = connect("alice", address=first.address)
    bob = connect("bob", address=second.address)
    alice.ok("join", room="general")
    bob.ok("join", room="general")
    sent = alice.ok("send", room="general", text="across")["message"]
    assert bob.next_event("message", timeout=10)["id"] == sent["id"]
    reply = bob.ok("send", room="general", text="and back")["message"]
    assert alice.next_event("message", timeout=10)["id"] == reply["id"]
