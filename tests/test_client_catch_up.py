"""Nothing missed, nothing refused: catching up after time away, and pacing what is sent.

Against real servers, through client.session and through the real `chat` in
a pseudo-terminal or a pipe.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pexpect
import pytest
from client_helpers import ROOT, chat_env, finish, logged_in, spawn_chat, wait_for
from conftest import CLIENT_SUITE, PASSWORD
from wire import WireClient

from chatd.server import Server
from client.connection import Backoff

pytestmark = CLIENT_SUITE

# why: slow enough that a test's messages are all sent before the client is back
PATIENT = Backoff(first=1.0, factor=1.0, cap=1.0, jitter=0.0)


@pytest.fixture
def children() -> Iterator[list[pexpect.spawn]]:
    spawned: list[pexpect.spawn] = []
    yield spawned
    for child in spawned:
        if child.isalive():
            child.kill(signal.SIGCONT)
            child.terminate(force=True)


def _registered(address: tuple[str, int], *names: str) -> None:
    setup = WireClient(address)
    for name in names:
        setup.ok("register", username=name, password=PASSWORD)
    setup.close()


def _member(address: tuple[str, int], name: str, room: str) -> WireClient:
    client = WireClient(address)
    client.ok("login", username=name, password=PASSWORD)
    client.ok("join", room=room)
    return client


def _restart(start_server: Callable[..., Server], server: Server, **overrides: Any) -> Server:
    port = server.address[1]
    server.stop()
    return start_server(port=port, **overrides)


# -- direct messages sent while away ---------------------------------------------------


def test_a_reconnect_fetches_direct_messages_from_someone_never_written_to(
    start_server, sessions
) -> None:
    server = start_server()
    _registered(server.address, "alice", "bob")
    _session, recorder = logged_in(sessions, server.address, "alice", backoff=PATIENT)
    server = _restart(start_server, server)
    wait_for(lambda: recorder.of("lost"), what="the loss to be noticed")
    bob = WireClient(server.address)
    bob.ok("login", username="bob", password=PASSWORD)
    sent = bob.ok("dm", to="alice", text="sent before alice was back")["message"]
    wait_for(lambda: recorder.of("reconnected"), what="the reconnect")
    (missed,) = recorder.of("reconnected")
    assert [m["id"] for m in missed.direct] == [sent["id"]]
    later = bob.ok("dm", to="alice", text="and live")["message"]
    wait_for(lambda: any(e.get("id") == later["id"] for e in recorder.of("event")))


def test_login_shows_direct_messages_that_came_while_away_once(connect, server, children):
    alice = connect("alice")
    connect("carol").ok("quit")
    alice.ok("dm", to="carol", text="are you around?")
    env = chat_env()
    for round_ in range(2):
        child = spawn_chat(server.address, "login", "--user", "carol", env=env)
        children.append(child)
        child.expect("password: ")
        child.sendline(PASSWORD)
        if round_ == 0:
            # the server's read markers: unread from the first login on any machine
            child.expect("alice 1 new")
            child.expect("while you were away: 1 direct message")
            child.expect(r"\*alice\* are you around\?")
        child.expect("you are in no room yet")
        child.sendline("/quit")
        assert finish(child) == 0
        assert round_ == 0 or "are you around" not in child.before
    alice.ok("dm", to="carol", text="still there?")
    alice.ok("dm", to="carol", text="hello?")
    child = spawn_chat(server.address, "login", "--user", "carol", env=env)
    children.append(child)
    child.expect("password: ")
    child.sendline(PASSWORD)
    child.expect("while you were away: 2 direct messages")
    child.expect(r"\*alice\* still there\?")
    child.expect(r"\*alice\* hello\?")
    child.sendline("/quit")
    assert finish(child) == 0
    assert "are you around" not in child.before


# -- more missed than one history page ------------------------------------------------


def test_a_reconnect_fetches_every_missed_message_beyond_one_history_page(
    start_server, sessions
) -> None:
    server = start_server(history_size=10)
    _registered(server.address, "alice", "carol")
    _member(server.address, "alice", "r").close()
    session, recorder = logged_in(sessions, server.address, "alice", backoff=PATIENT)
    session.call("join", room="r")
    server = _restart(start_server, server, history_size=10)
    wait_for(lambda: recorder.of("lost"), what="the loss to be noticed")
    carol = _member(server.address, "carol", "r")
    sent = [carol.ok("send", room="r", text=f"m{n}")["message"]["id"] for n in range(37)]
    wait_for(lambda: recorder.of("reconnected"), what="the reconnect")
    (missed,) = recorder.of("reconnected")
    assert [m["id"] for m in missed.rooms["r"]] == sent
    assert missed.gaps == {}


def test_past_the_cap_a_reconnect_says_where_the_gap_is(start_server, sessions) -> None:
    server = start_server(history_size=10)
    _registered(server.address, "alice", "carol")
    _member(server.address, "alice", "r").close()
    session, recorder = logged_in(sessions, server.address, "alice", backoff=PATIENT, missed_cap=15)
    seen = session.call("join", room="r")
    assert seen["history"] == []
    carol = _member(server.address, "carol", "r")
    first = carol.ok("send", room="r", text="seen")["message"]["id"]
    wait_for(lambda: recorder.of("event"), what="the first message")
    server = _restart(start_server, server, history_size=10)
    wait_for(lambda: recorder.of("lost"), what="the loss to be noticed")
    carol = _member(server.address, "carol", "r")
    sent = [carol.ok("send", room="r", text=f"m{n}")["message"]["id"] for n in range(40)]
    wait_for(lambda: recorder.of("reconnected"), what="the reconnect")
    (missed,) = recorder.of("reconnected")
    shown = [m["id"] for m in missed.rooms["r"]]
    assert shown == sent[-len(shown) :] and len(shown) >= 15
    assert missed.gaps == {"r": (first, shown[0])}


def test_chat_shows_72_missed_messages_after_being_frozen(start_server, children) -> None:
    server = start_server()
    _registered(server.address, "alice", "carol")
    child = spawn_chat(server.address, "login", "--user", "carol")
    children.append(child)
    child.expect("password: ")
    child.sendline(PASSWORD)
    child.expect("you are in no room yet")
    child.sendline("/join r")
    child.expect("now in #r")
    alice = _member(server.address, "alice", "r")
    alice.ok("send", room="r", text="before the freeze")
    child.expect("<alice> before the freeze")
    child.kill(signal.SIGSTOP)
    server = _restart(start_server, server)
    alice = _member(server.address, "alice", "r")
    for n in range(1, 73):
        alice.ok("send", room="r", text=f"missed number {n}")
    child.kill(signal.SIGCONT)
    child.expect("reconnected; 72 new messages while away", timeout=30)
    for n in range(1, 73):
        child.expect(f"<alice> missed number {n}\r\n")
    child.sendline("/quit")
    assert finish(child) == 0


# -- pacing ------------------------------------------------------------------------------


def test_a_refused_message_goes_again_and_keeps_its_place(start_server, sessions) -> None:
    server = start_server(send_rate=20, send_burst=3)
    _registered(server.address, "alice", "bob")
    bob = _member(server.address, "bob", "r")
    session, recorder = logged_in(sessions, server.address, "alice")
    session.call("join", room="r")
    replies = [session.request("send", room="r", text=f"line {n}") for n in range(10)]
    parted = session.request("part", room="r")
    assert parted.wait(20)["ok"] is True
    assert all(req.wait(1)["ok"] for req in replies), [req.reply for req in replies]
    texts = [m["text"] for m in bob.ok("history", room="r")["messages"]]
    assert texts == [f"line {n}" for n in range(10)]
    told = recorder.of("pacing")
    assert told and told[0] > 0 and told[-1] == 0


def test_a_pasted_block_arrives_whole_and_in_order(start_server, children) -> None:
    server = start_server(send_rate=20, send_burst=5)
    _registered(server.address, "alice", "bob")
    bob = _member(server.address, "bob", "r")
    child = spawn_chat(server.address, "login", "--user", "alice")
    children.append(child)
    child.expect("password: ")
    child.sendline(PASSWORD)
    child.expect("you are in no room yet")
    child.sendline("/join r")
    child.expect("now in #r")
    child.send("".join(f"pasted line {n}\r" for n in range(25)))
    child.expect("sending slowly, as the server allows")
    child.expect("<alice> pasted line 24")
    assert "too many requests" not in child.before
    child.expect("every waiting message is sent")
    texts = [m["text"] for m in bob.ok("history", room="r")["messages"]]
    assert texts == [f"pasted line {n}" for n in range(25)]
    child.sendline("/quit")
    assert finish(child) == 0


def test_a_script_of_70_lines_is_delivered_whole_and_exits_0(start_server) -> None:
    server = start_server(send_rate=20, send_burst=20)
    _registered(server.address, "alice", "bob")
    bob = _member(server.address, "bob", "r")
    script = "/join r\n" + "".join(f"scripted {n}\n" for n in range(70))
    result = subprocess.run(
        [sys.executable, "-m", "client", "login", "--user", "alice"],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=chat_env(CHAT_SERVER="{}:{}".format(*server.address), CHAT_PASSWORD=PASSWORD),
    )
    assert result.returncode == 0, result.stderr
    texts = [m["text"] for m in bob.ok("history", room="r", limit=100)["messages"]]
    assert texts == [f"scripted {n}" for n in range(70)]


def test_reconnect_connects_again_now_and_catches_up(start_server, children) -> None:
    server = start_server()
    _registered(server.address, "alice", "carol")
    child = spawn_chat(server.address, "login", "--user", "carol")
    children.append(child)
    child.expect("password: ")
    child.sendline(PASSWORD)
    child.expect("you are in no room yet")
    child.sendline("/join r")
    child.expect("now in #r")
    child.sendline("/reconnect")
    child.expect("reconnecting as asked")
    child.expect("reconnected; 0 new messages while away")
    alice = _member(server.address, "alice", "r")
    alice.ok("send", room="r", text="after the reconnect")
    child.expect("<alice> after the reconnect")
    assert "connection lost" not in child.before
    child.sendline("/quit")
    assert finish(child) == 0


def test_reconnect_while_waiting_cuts_the_backoff_short(start_server, sessions) -> None:
    server = start_server()
    _registered(server.address, "alice")
    slow = Backoff(first=30.0, factor=1.0, cap=30.0, jitter=0.0)
    session, recorder = logged_in(sessions, server.address, "alice", backoff=slow)
    server = _restart(start_server, server)
    wait_for(lambda: recorder.of("reconnecting"), what="the first wait")
    assert session.reconnect_now() == "trying to reconnect now"
    wait_for(lambda: recorder.of("reconnected"), timeout=10, what="the reconnect")
