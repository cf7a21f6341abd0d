"""Abuse a live server: floods, guessing, caps, disabled accounts, TLS."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time

import pytest
import trustme
from conftest import PASSWORD, closed, registered
from sqlalchemy import update
from wire import WireClient

from chatd.store import users


def test_message_flood_is_rate_limited_and_the_connection_stays(start_server, clock):
    server = start_server(clock=clock, send_rate=1, send_burst=3)
    alice = registered(server.address, "alice")
    alice.ok("join", room="general")
    for n in range(3):
        alice.ok("send", room="general", text=f"burst {n}")
    reply = alice.request("send", room="general", text="one too many")
    assert reply["error"] == "rate_limited" and 0 < reply["retry_after"] <= 1
    assert alice.request("dm", to="alice", text="also counted")["error"] == "rate_limited"
    assert alice.error("send", room="nowhere", text="x") == "not_in_room"
    assert alice.ok("ping")["ok"]
    clock.advance(1.0)
    alice.ok("send", room="general", text="after waiting")
    history = alice.ok("history", room="general")["messages"]
    assert [m["text"] for m in history] == ["burst 0", "burst 1", "burst 2", "after waiting"]


THIS_ACCOUNT_FROM_HERE = "too many failed logins for this account from your address"


def test_failed_logins_are_throttled_per_address_and_username(start_server, clock):
    server = start_server(clock=clock, login_failures=3)
    registered(server.address, "alice")
    guesser = WireClient(server.address)
    for _ in range(3):
        assert guesser.error("login", username="alice", password="wrong guess") == (
            "invalid_credentials"
        )
    reply = guesser.request("login", username="alice", password=PASSWORD)
    assert reply["error"] == "rate_limited" and reply["retry_after"] == pytest.approx(60, abs=1)
    assert reply["message"] == f"{THIS_ACCOUNT_FROM_HERE}; try again in 60 s"
    other = WireClient(server.address)
    assert other.error("login", username="bob", password="whatever1") == "invalid_credentials"
    clock.advance(61)
    assert guesser.ok("login", username="alice", password=PASSWORD)["username"] == "alice"


def test_a_mistyped_name_does_not_lock_out_others_at_the_same_address(start_server, clock):
    server = start_server(clock=clock, login_failures=5)
    registered(server.address, "dave")
    typist = WireClient(server.address)
    for _ in range(5):
        assert typist.error("login", username="nosuchuser", password="wrong guess") == (
            "invalid_credentials"
        )
    dave = WireClient(server.address)
    assert dave.ok("login", username="dave", password=PASSWORD)["username"] == "dave"
    refused = typist.request("login", username="nosuchuser", password="wrong guess")
    assert refused["error"] == "rate_limited" and refused["message"].startswith(
        THIS_ACCOUNT_FROM_HERE
    )


def test_guessing_one_account_from_several_addresses_blocks_the_account(start_server, clock):
    server = start_server(clock=clock, login_failures=2)
    registered(server.address, "alice")
    registered(server.address, "bob")
    for n in range(2, 6):
        if n == 5:
            owner = WireClient(server.address, source="127.0.0.9")
            assert owner.ok("login", username="alice", password=PASSWORD)["username"] == "alice"
        guesser = WireClient(server.address, source=f"127.0.0.{n}")
        for _ in range(2):
            assert guesser.error("login", username="alice", password="bad guess") == (
                "invalid_credentials"
            )
        assert guesser.request("login", username="alice", password=PASSWORD)["message"].startswith(
            THIS_ACCOUNT_FROM_HERE
        )
        assert guesser.ok("login", username="bob", password=PASSWORD)["username"] == "bob"
    owner = WireClient(server.address, source="127.0.0.10")
    reply = owner.request("login", username="alice", password=PASSWORD)
    assert reply["error"] == "rate_limited"
    assert reply["message"] == "too many failed logins for this account; try again in 60 s"


def test_spraying_from_one_address_meets_a_higher_ceiling(start_server, clock):
    server = start_server(clock=clock, login_failures=2)
    registered(server.address, "dave", source="127.0.0.3")
    sprayer = WireClient(server.address, source="127.0.0.2")
    for n in range(20):
        assert sprayer.error("login", username=f"user{n}", password="Summer2026") == (
            "invalid_credentials"
        )
    reply = WireClient(server.address, source="127.0.0.2").request(
        "login", username="dave", password=PASSWORD
    )
    assert reply["error"] == "rate_limited" and reply["retry_after"] > 0
    assert reply["message"].startswith("too many failed logins from your address")
    elsewhere = WireClient(server.address, source="127.0.0.3")
    assert elsewhere.ok("login", username="dave", password=PASSWORD)["username"] == "dave"


def test_failed_and_refused_logins_are_logged_without_secrets(start_server, clock, caplog):
    server = start_server(clock=clock, login_failures=2)
    registered(server.address, "alice")
    client = WireClient(server.address)
    caplog.set_level(logging.INFO, logger="chatd.handlers")
    secret = "my secret pass\x1b[2J"
    for name in ("alice", "nosuchuser", secret, "alice"):
        assert client.error("login", username=name, password="wrong guess") == (
            "invalid_credentials"
        )
    for _ in range(3):
        assert client.error("login", username="alice", password=PASSWORD) == "rate_limited"
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    peer = f"127.0.0.1:{client.sock.getsockname()[1]}"
    assert lines == [
        f"{peer}: failed login as alice",
        f"{peer}: failed login as nosuchuser (no such account)",
        f"{peer}: failed login as a name that is not a valid username ({len(secret)} characters)",
        f"{peer}: failed login as alice",
        f"{peer}: login as alice refused for 60 s: too many failed logins for this account "
        "from this address (further refusals of this block are logged at debug level)",
    ]
    assert not any("secret" in r.getMessage() for r in caplog.records)


def test_unknown_and_known_usernames_are_throttled_alike(start_server, clock):
    server = start_server(clock=clock, login_failures=2)
    registered(server.address, "alice")
    for name in ("alice", "nobody"):
        client = WireClient(server.address)
        replies = [client.request("login", username=name, password="bad guess") for _ in range(3)]
        assert [r["error"] for r in replies] == [
            "invalid_credentials",
            "invalid_credentials",
            "rate_limited",
        ]
        clock.advance(3600)


def test_registrations_are_limited_per_address(start_server, clock):
    server = start_server(clock=clock, registrations_per_hour=2)
    client = WireClient(server.address)
    client.ok("register", username="one", password=PASSWORD)
    client.ok("register", username="two", password=PASSWORD)
    assert client.error("register", username="one", password=PASSWORD) == "username_taken"
    reply = client.request("register", username="three", password=PASSWORD)
    assert reply["error"] == "rate_limited" and reply["retry_after"] > 0
    clock.advance(1800)
    client.ok("register", username="three", password=PASSWORD)


def test_closed_registration(start_server):
    server = start_server(registration="closed")
    client = WireClient(server.address)
    assert client.error("register", username="alice", password=PASSWORD) == ("registration_closed")
    assert client.error("register", username="x", password=PASSWORD) == "invalid_username"


def test_too_many_malformed_frames_close_the_connection(start_server):
    server = start_server(max_bad_frames=3)
    bystander = registered(server.address, "bystander")
    client = WireClient(server.address)
    client.send_raw(b"nope\n" * 3 + b'{"op":"nosuchop"}\n')
    errors = [client.next_reply()["error"] for _ in range(4)]
    assert errors == ["bad_request"] * 3 + ["unknown_op"]
    assert client.next_event("error")["error"] == "too_many_errors"
    assert closed(client)
    assert bystander.ok("ping")["ok"]


def test_occasional_mistakes_do_not_close_a_connection(start_server, clock):
    server = start_server(clock=clock, max_bad_frames=2)
    client = WireClient(server.address)
    for _ in range(6):
        assert client.error("nosuchop") == "unknown_op"
        clock.advance(10)
    assert client.ok("ping")["ok"]


def refused(address) -> dict:
    with socket.create_connection(address, timeout=5) as sock:
        data = sock.recv(4096)
        assert sock.recv(4096) == b""
    return json.loads(data)


def test_connection_caps(start_server):
    server = start_server(max_connections_per_ip=2)
    first, second = WireClient(server.address), WireClient(server.address)
    assert refused(server.address)["error"] == "too_many_connections"
    first.ok("quit")
    assert closed(first)
    deadline = time.monotonic() + 10
    while server.connection_count > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert WireClient(server.address).ok("ping")["ok"]
    assert second.ok("ping")["ok"]


def test_global_connection_cap(start_server):
    server = start_server(max_connections=1)
    only = WireClient(server.address)
    assert refused(server.address) == {
        "event": "error",
        "error": "too_many_connections",
        "message": "too many connections; try later",
    }
    assert only.ok("ping")["ok"]


def test_disabled_account_is_disconnected(start_server):
    server = start_server()
    alice = registered(server.address, "alice")
    with server.services.store.engine.begin() as connection:
        connection.execute(update(users).where(users.c.username == "alice").values(disabled=True))
    assert alice.next_event("error", timeout=15)["error"] == "account_disabled"
    assert closed(alice)


def client_context(ca: trustme.CA | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca is not None:
        ca.configure_trust(context)
    return context


def test_tls_end_to_end(start_server, tls_files, certificate_authority):
    cert_file, key_file = tls_files
    server = start_server(tls_cert=cert_file, tls_key=key_file)
    tls = client_context(certificate_authority)
    alice = registered(server.address, "alice", tls=tls)
    bob = registered(server.address, "bob", tls=tls)
    for client in (alice, bob):
        client.ok("join", room="secure")
    alice.drain()
    big = "z" * 3990
    for n in range(50):
        bob.ok("send", room="secure", text=f"{n} {big}")
    texts = [alice.next_event("message")["text"] for _ in range(50)]
    assert texts == [f"{n} {big}" for n in range(50)]
    server.stop()
    assert alice.next_event("shutdown")["reason"]


def test_tls_client_refuses_an_untrusted_server(start_server, tls_files):
    cert_file, key_file = tls_files
    server = start_server(tls_cert=cert_file, tls_key=key_file)
    with pytest.raises(ssl.SSLCertVerificationError):
        WireClient(server.address, tls=client_context(None))
    with pytest.raises(ssl.SSLCertVerificationError):
        WireClient(server.address, tls=client_context(trustme.CA()))


def test_tls_server_survives_a_plain_text_client(start_server, tls_files, certificate_authority):
    cert_file, key_file = tls_files
    server = start_server(tls_cert=cert_file, tls_key=key_file)
    with socket.create_connection(server.address, timeout=5) as plain:
        plain.sendall(b'{"op":"ping"}\n')
        assert b"welcome" not in plain.recv(1024)
    assert registered(server.address, "alice", tls=client_context(certificate_authority))


def test_a_tls_record_trickled_in_does_not_stretch_the_login_timeout(
    start_server, tls_files, certificate_authority
):
    cert_file, key_file = tls_files
    server = start_server(tls_cert=cert_file, tls_key=key_file, login_timeout=1.0)
    context = client_context(certificate_authority)
    raw = socket.create_connection(server.address, timeout=5)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(outgoing.read())
            incoming.write(raw.recv(65536))
    raw.sendall(outgoing.read())
    tls.write(b'{"id": 1, "op": "ping"}\n' * 20)
    record = outgoing.read()
    started = time.monotonic()
    raw.setblocking(False)
    closed_by_server = False
    for byte in range(len(record)):  # one byte every 0.2 s: never a whole record
        if time.monotonic() - started > 6:
            break
        try:
            raw.sendall(record[byte : byte + 1])
            closed_by_server = raw.recv(65536) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed_by_server = True
        if closed_by_server:
            break
        time.sleep(0.2)
    assert closed_by_server
    assert time.monotonic() - started < 4
