"""client/session.py against a real server: replies by id, events, reconnects, the outbox."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from client_helpers import CuttingProxy, FakeServer, Recorder, logged_in, wait_for
from conftest import CLIENT_SUITE, PASSWORD
from wire import WireClient

from chatd.server import Server
from client.connection import Backoff
from client.errors import ClientErrorCode
from client.recovery import Missed
from client.session import LoginFailed, State

pytestmark = CLIENT_SUITE


def test_replies_are_matched_to_requests_by_id(connect, server, sessions) -> None:
    connect("alice").ok("join", room="general")
    session, _ = logged_in(sessions, server.address, "alice")
    assert session.call("join", room="general")["room"] == "general"
    results: dict[int, dict[str, Any]] = {}

    def send_many(base: int) -> None:
        for n in range(base, base + 10):
            results[n] = session.call("send", room="general", text=f"m{n}")

    threads = [threading.Thread(target=send_many, args=(base,)) for base in (0, 100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(results) == 20
    for n, reply in results.items():
        assert reply["ok"] and reply["message"]["text"] == f"m{n}"
    assert session.call("who", room="nowhere")["error"] == "no_such_room"


def test_events_reach_the_listener(connect, server, sessions) -> None:
    bob = connect("bob")
    bob.ok("join", room="general")
    connect("alice")
    session, recorder = logged_in(sessions, server.address, "alice")
    session.call("join", room="general")
    bob.ok("send", room="general", text="hello alice")
    wait_for(lambda: any(e.get("text") == "hello alice" for e in recorder.of("event")))
    assert session.joined_rooms() == ["general"]


def test_wrong_password_is_a_login_failure(connect, server, sessions) -> None:
    connect("alice")
    session = sessions(server.address)
    session.open()
    with pytest.raises(LoginFailed) as failure:
        session.login("alice", "not the password")
    assert failure.value.reply["error"] == "invalid_credentials"
    assert session.login("alice", PASSWORD)["username"] == "alice"


def test_reconnects_after_a_server_restart_and_sends_what_was_queued(
    start_server: Callable[..., Server], sessions
) -> None:
    first = start_server()
    address = first.address
    setup = WireClient(address)
    for name in ("alice", "carol"):
        setup.ok("register", username=name, password=PASSWORD)
    setup.ok("login", username="carol", password=PASSWORD)
    setup.ok("join", room="general")
    setup.close()
    session, recorder = logged_in(sessions, address, "alice")
    session.call("join", room="general")
    session.call("send", room="general", text="before the restart")

    first.stop()
    wait_for(lambda: recorder.of("lost"), what="the loss to be noticed")
    assert session.state is not State.CONNECTED
    queued = session.request("send", room="general", text="typed while away")
    assert queued.queued
    refused = session.request("rooms")
    assert (
        refused.done.is_set()
        and refused.reply
        and refused.reply["error"] == ClientErrorCode.NOT_SENT
    )

    second = start_server(port=address[1])
    carol = WireClient(second.address)
    carol.ok("login", username="carol", password=PASSWORD)
    carol.ok("send", room="general", text="said while alice was away")

    reply = queued.wait(20)
    assert reply["ok"] and reply["message"]["text"] == "typed while away"
    wait_for(lambda: recorder.of("reconnected"))
    texts = [m["text"] for m in carol.ok("history", room="general")["messages"]]
    assert texts.count("typed while away") == 1 and "before the restart" in texts
    # carol's message was stored before or after alice came back: she sees it exactly once
    wait_for(
        lambda: seen_texts(recorder).count("said while alice was away") == 1,
        what="the missed message",
    )
    assert seen_texts(recorder).count("said while alice was away") == 1
    assert session.state is State.CONNECTED and session.joined_rooms() == ["general"]
    carol.close()


def seen_texts(recorder: Recorder) -> list[str]:
    """Message texts the listener got, as missed on reconnect or as live events."""
    texts = [
        m["text"] for missed in recorder.of("reconnected") for m in missed.rooms.get("general", [])
    ]
    return texts + [e["text"] for e in recorder.of("event") if e.get("event") == "message"]


def test_gives_up_and_reports_queued_messages_as_not_sent(
    start_server: Callable[..., Server], sessions
) -> None:
    server = start_server()
    WireClient(server.address).ok("register", username="alice", password=PASSWORD)
    session, recorder = logged_in(sessions, server.address, "alice", give_up_after=0.5)
    session.call("join", room="general")
    server.stop()
    wait_for(lambda: recorder.of("lost"))
    queued = session.request("send", room="general", text="never delivered")
    reply = queued.wait(10)
    assert reply["ok"] is False and reply["error"] == ClientErrorCode.NOT_SENT
    assert recorder.of("gave_up")
    assert session.wait_idle(5)
    assert session.state is State.CLOSED


def test_close_reports_queued_messages_as_not_sent(
    start_server: Callable[..., Server], sessions
) -> None:
    server = start_server()
    WireClient(server.address).ok("register", username="alice", password=PASSWORD)
    session, recorder = logged_in(sessions, server.address, "alice")
    session.call("join", room="general")
    server.stop()
    wait_for(lambda: recorder.of("lost"))
    told: list[dict[str, Any]] = []
    session.request("send", told.append, room="general", text="left behind")
    session.close(timeout=1.0)
    assert [reply["error"] for reply in told] == [ClientErrorCode.NOT_SENT]


def test_a_send_whose_reply_was_lost_is_not_sent_twice(connect, server, sessions) -> None:
    carol = connect("carol")
    carol.ok("join", room="general")
    connect("alice")
    proxy = CuttingProxy(server.address)
    try:
        session, recorder = logged_in(sessions, proxy.address, "alice")
        session.call("join", room="general")
        proxy.lose_reply_to("send")
        reply = session.request("send", room="general", text="exactly once").wait(20)
        assert proxy.lost.is_set()
        assert recorder.of("lost")
        assert reply["ok"] and reply["message"]["text"] == "exactly once"
        history = carol.ok("history", room="general")["messages"]
        assert [m["text"] for m in history] == ["exactly once"]
        (missed,) = recorder.of("reconnected")
        assert missed == Missed(rooms={"general": []})
    finally:
        proxy.close()


def test_a_dm_whose_reply_was_lost_is_not_sent_twice(connect, server, sessions) -> None:
    carol = connect("carol")
    connect("alice")
    proxy = CuttingProxy(server.address)
    try:
        session, _ = logged_in(sessions, proxy.address, "alice")
        proxy.lose_reply_to("dm")
        reply = session.request("dm", to="carol", text="just once").wait(20)
        assert proxy.lost.is_set()
        assert reply["ok"] and reply["message"]["to"] == "carol"
        assert [m["text"] for m in carol.ok("dm_history", **{"with": "alice"})["messages"]] == [
            "just once"
        ]
    finally:
        proxy.close()


def test_a_silent_server_is_noticed_by_the_keepalive_ping(sessions) -> None:
    fake = FakeServer({"login": {"username": "alice", "rooms": []}}, answer_pings=False)
    try:
        _, recorder = logged_in(
            sessions, fake.address, "alice", keepalive=0.1, ping_timeout=0.3, give_up_after=0.2
        )
        wait_for(lambda: recorder.of("lost"), what="the silent server to be noticed")
        assert recorder.of("lost") == ["the server stopped answering"]
        assert any(request.get("op") == "ping" for request in fake.requests)
    finally:
        fake.close()


def test_backoff_grows_to_its_cap_with_bounded_jitter() -> None:
    backoff = Backoff(first=0.5, factor=2.0, cap=30.0, jitter=0.2)
    assert [backoff.delay(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff.delay(0, rand=0.0) == pytest.approx(0.4)
    assert backoff.delay(0, rand=0.999999) == pytest.approx(0.6, abs=1e-5)
    assert backoff.delay(10_000) == 30.0
