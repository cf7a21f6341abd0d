"""Idle connections give up their reader thread (chatd/parking.py) and lose nothing by it.

PARK_AFTER is made tiny here, so every pause between two requests parks the
connection and every request after it starts a new reader thread.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest
import trustme
from conftest import closed, registered
from sqlalchemy import update
from wire import WireClient

import chatd.connection
from chatd.store import users

PARK_SECONDS = 0.02


@pytest.fixture(autouse=True)
def park_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chatd.connection, "PARK_AFTER", PARK_SECONDS)


def reader_threads() -> int:
    return sum(t.name.startswith("chatd-conn") for t in threading.enumerate())


def wait_parked(expected_readers: int = 0, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while reader_threads() != expected_readers:
        assert time.monotonic() < deadline, f"{reader_threads()} reader threads still running"
        time.sleep(0.01)


def parked_pair(server) -> tuple[WireClient, WireClient]:
    """alice and bob in #general, both parked."""
    alice = registered(server.address, "alice")
    bob = registered(server.address, "bob")
    for client in (alice, bob):
        client.ok("join", room="general")
    wait_parked()
    return alice, bob


def test_parked_connections_hold_no_thread_and_still_chat(server):
    alice, bob = parked_pair(server)
    # bob is parked: the message reaches him without a thread of his own
    sent = alice.ok("send", room="general", text="while you sleep")["message"]
    assert bob.next_event("message")["id"] == sent["id"]
    wait_parked()
    # and his next request wakes him up, in order, with the history intact
    history = bob.ok("history", room="general")["messages"]
    assert [m["text"] for m in history] == ["while you sleep"]
    for n in range(20):
        bob.ok("send", room="general", text=f"reply {n}")
        time.sleep(PARK_SECONDS if n % 5 == 0 else 0)
    assert [alice.next_event("message")["text"] for _ in range(20)] == [
        f"reply {n}" for n in range(20)
    ]
    assert server.connection_count == 2


def test_a_request_split_across_a_park_is_read_whole(server):
    alice = registered(server.address, "alice")
    frame = b'{"id": 7, "op": "join", "room": "general"}\n'
    alice.send_raw(frame[:10])
    wait_parked()
    alice.send_raw(frame[10:])
    reply = alice.next_reply()
    assert reply["id"] == 7 and reply["ok"] is True


def test_a_parked_client_that_leaves_is_forgotten(server):
    alice, bob = parked_pair(server)
    bob.close()
    deadline = time.monotonic() + 10
    while server.connection_count != 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert alice.ok("who", room="general")["online"] == ["alice"]


def test_a_parked_client_is_kicked_when_its_account_is_disabled(start_server):
    server = start_server()
    alice = registered(server.address, "alice")
    wait_parked()
    with server.services.store.engine.begin() as connection:
        connection.execute(update(users).where(users.c.username == "alice").values(disabled=True))
    assert alice.next_event("error", timeout=15)["error"] == "account_disabled"
    assert closed(alice)


def test_shutdown_reaches_parked_clients_and_stops_promptly(start_server):
    server = start_server()
    clients = [registered(server.address, f"user{n}") for n in range(5)]
    wait_parked()
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5
    for client in clients:
        assert client.next_event("shutdown")["reason"]
    assert server.connection_count == 0


def test_not_logged_in_is_never_parked_and_still_times_out(start_server):
    server = start_server(login_timeout=0.5)
    client = WireClient(server.address)
    time.sleep(PARK_SECONDS * 5)
    assert reader_threads() == 1
    assert client.next_event("error", timeout=10)["error"] == "idle_timeout"


def test_tls_connections_park_too(start_server, tls_files, certificate_authority):
    cert_file, key_file = tls_files
    server = start_server(tls_cert=cert_file, tls_key=key_file)
    tls = ssl.create_default_context()
    trustme.CA.configure_trust(certificate_authority, tls)
    alice = registered(server.address, "alice", tls=tls)
    bob = registered(server.address, "bob", tls=tls)
    for client in (alice, bob):
        client.ok("join", room="secure")
    wait_parked()
    big = "z" * 3990
    for n in range(10):
        bob.ok("send", room="secure", text=f"{n} {big}")
        time.sleep(PARK_SECONDS)
    assert [alice.next_event("message")["text"] for _ in range(10)] == [
        f"{n} {big}" for n in range(10)
    ]


def test_connections_probe_for_vanished_peers(server):
    """A peer gone without a FIN is found by keepalive probes, or it would stay parked."""
    alice = registered(server.address, "alice")
    wait_parked()
    (connection,) = server._connections
    sock = connection.sock
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
    alice.ok("ping")  # and the parked connection still answers
