"""Attachments end to end: chunked upload, fetch, permissions, limits, expiry."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path

import pytest
from conftest import PASSWORD
from wire import WireClient


def member(address, name: str, *rooms: str) -> WireClient:
    client = WireClient(address)
    client.ok("register", username=name, password=PASSWORD)
    client.ok("login", username=name, password=PASSWORD)
    for room in rooms:
        client.ok("join", room=room)
    client.drain()
    return client


def upload(client: WireClient, data: bytes, *, name="blob.bin", **target) -> dict:
    started = client.ok(
        "upload", name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest(), **target
    )
    step = started["chunk_bytes"]
    for offset in range(0, len(data), step):
        piece = base64.b64encode(data[offset : offset + step]).decode()
        reply = client.ok("chunk", upload=started["upload"], offset=offset, data=piece)
        assert reply["received"] == min(len(data), offset + step)
    return client.ok("finish", upload=started["upload"])["message"]


def download(client: WireClient, file_id: int) -> bytes:
    parts, offset = [], 0
    while True:
        reply = client.ok("fetch", file=file_id, offset=offset)
        chunk = base64.b64decode(reply["data"])
        parts.append(chunk)
        offset += len(chunk)
        if reply["eof"]:
            return b"".join(parts)


def files_dir(server) -> Path:
    return server.services.blobs.root


def test_binary_file_round_trip_through_a_room(server):
    alice = member(server.address, "alice", "general")
    bob = member(server.address, "bob", "general")
    data = os.urandom(3 * 1024 * 1024 + 17)
    message = upload(alice, data, name="screen shot.png", room="#general", mime="image/png")
    assert message["file"] == {
        "id": message["file"]["id"],
        "name": "screen shot.png",
        "size": len(data),
        "mime": "image/png",
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert message["text"] == "screen shot.png" and message["room"] == "general"
    event = bob.next_event("message")
    assert event["file"] == message["file"]
    fetched = download(bob, message["file"]["id"])
    assert fetched == data
    assert bob.ok("history", room="general")["messages"][-1]["file"] == message["file"]


def test_only_members_or_the_two_parties_may_fetch(server):
    alice = member(server.address, "alice", "general")
    outsider = member(server.address, "mallory", "random")
    carol = member(server.address, "carol")
    in_room = upload(alice, b"room secret", room="general", text="see this")
    assert in_room["text"] == "see this"
    direct = upload(alice, b"for carol only", to="Carol")
    assert direct["room"] is None and direct["to"] == "carol"
    assert carol.next_event("dm")["file"]["id"] == direct["file"]["id"]
    for file_id in (in_room["file"]["id"], direct["file"]["id"], 999_999):
        assert outsider.error("fetch", file=file_id) == "no_such_file"
    assert carol.error("fetch", file=in_room["file"]["id"]) == "no_such_file"
    assert download(carol, direct["file"]["id"]) == b"for carol only"
    assert download(alice, direct["file"]["id"]) == b"for carol only"
    outsider.ok("join", room="general")
    assert download(outsider, in_room["file"]["id"]) == b"room secret"


def test_tampered_chunk_is_a_checksum_mismatch_and_leaves_nothing(server):
    alice = member(server.address, "alice", "general")
    data = b"the real content" * 100
    started = alice.ok(
        "upload", room="general", name="x", size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    tampered = bytearray(data)
    tampered[5] ^= 0xFF
    alice.ok("chunk", upload=started["upload"], offset=0, data=base64.b64encode(tampered).decode())
    assert alice.error("finish", upload=started["upload"]) == "checksum_mismatch"
    assert alice.error("finish", upload=started["upload"]) == "no_such_upload"
    assert list((files_dir(server) / "incoming").iterdir()) == []
    assert alice.ok("history", room="general")["messages"] == []


def test_too_large_is_refused_before_any_byte(start_server):
    server = start_server(max_file_bytes=1000)
    alice = member(server.address, "alice", "general")
    assert alice.welcome["max_file_bytes"] == 1000
    assert (
        alice.error("upload", room="general", name="big", size=1001, sha256="0" * 64)
        == "file_too_large"
    )
    assert list((files_dir(server) / "incoming").iterdir()) == []


def test_upload_quota(start_server):
    server = start_server(upload_quota_bytes=100)
    alice = member(server.address, "alice", "general")
    upload(alice, b"a" * 60, room="general")
    sha = hashlib.sha256(b"b" * 50).hexdigest()
    assert alice.error("upload", room="general", name="b", size=50, sha256=sha) == (
        "file_too_large"
    )


def test_offsets_sizes_and_bad_arguments(server):
    alice = member(server.address, "alice", "general")
    sha = hashlib.sha256(b"0123456789").hexdigest()
    args = {"room": "general", "size": 10, "sha256": sha}
    for bad in ("../../etc/passwd", "a/b", "a\\b", ".", "..", "", "bell\x07", "x" * 256):
        assert alice.error("upload", name=bad, **args) == "invalid_name"
    assert alice.error("upload", name="ok", size=10, sha256=sha) == "bad_request"
    assert alice.error("upload", name="ok", to="alice", **args) == "bad_request"
    assert alice.error("upload", name="ok", room="general", size=10, sha256="xyz") == "bad_request"
    assert alice.error("upload", name="ok", room="general", size=-1, sha256=sha) == "bad_request"
    assert alice.error("upload", name="ok", room="nowhere", size=10, sha256=sha) == "not_in_room"
    assert alice.error("upload", name="ok", to="nobody", size=10, sha256=sha) == "no_such_user"
    token = alice.ok("upload", name="ok", **args)["upload"]
    encode = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    assert alice.error("chunk", upload=token, offset=3, data=encode(b"012")) == "bad_request"
    assert alice.error("chunk", upload=token, offset=0, data="not base64!") == "bad_request"
    assert alice.error("chunk", upload=token, offset=0, data=encode(b"x" * 11)) == "bad_request"
    alice.ok("chunk", upload=token, offset=0, data=encode(b"01234"))
    assert alice.error("finish", upload=token) == "bad_request"
    alice.ok("chunk", upload=token, offset=5, data=encode(b"56789"))
    assert alice.ok("finish", upload=token)["message"]["file"]["size"] == 10
    assert alice.error("chunk", upload="made-up", offset=0, data="") == "no_such_upload"
    other = member(server.address, "bob", "general")
    token = alice.ok("upload", name="ok", **args)["upload"]
    assert other.error("chunk", upload=token, offset=0, data=encode(b"0123456789")) == (
        "no_such_upload"
    )
    assert alice.error("fetch", file=1, offset=11) == "bad_request"


def test_same_content_is_stored_once_and_empty_files_work(server):
    alice = member(server.address, "alice", "general")
    first = upload(alice, b"same bytes", room="general", name="one.txt")
    second = upload(alice, b"same bytes", room="general", name="two.txt")
    assert first["file"]["id"] != second["file"]["id"]
    blobs = [p for p in files_dir(server).rglob("*") if p.is_file()]
    assert len(blobs) == 1
    empty = upload(alice, b"", room="general", name="empty")
    assert download(alice, empty["file"]["id"]) == b""


def test_abandoned_upload_expires(start_server, clock):
    server = start_server(clock=clock, upload_timeout=60)
    alice = member(server.address, "alice", "general")
    token = alice.ok("upload", room="general", name="slow", size=10, sha256="0" * 64)["upload"]
    alice.ok("chunk", upload=token, offset=0, data=base64.b64encode(b"01234").decode())
    assert len(list((files_dir(server) / "incoming").iterdir())) == 1
    clock.advance(61)
    deadline = time.monotonic() + 15
    while list((files_dir(server) / "incoming").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list((files_dir(server) / "incoming").iterdir()) == []
    assert alice.error("finish", upload=token) == "no_such_upload"


def test_upload_is_discarded_when_its_connection_closes(server):
    alice = member(server.address, "alice", "general")
    alice.ok("upload", room="general", name="x", size=10, sha256="0" * 64)
    alice.ok("quit")
    deadline = time.monotonic() + 10
    while list((files_dir(server) / "incoming").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list((files_dir(server) / "incoming").iterdir()) == []


def test_files_survive_a_restart(start_server):
    first = start_server()
    alice = member(first.address, "alice", "general")
    message = upload(alice, b"kept across restarts", room="general")
    first.stop()
    second = start_server()
    again = WireClient(second.address)
    again.ok("login", username="alice", password=PASSWORD)
    assert download(again, message["file"]["id"]) == b"kept across restarts"


@pytest.mark.parametrize("max_frame", [1024, 65536])
def test_chunk_frames_fit_the_frame_limit(start_server, max_frame):
    server = start_server(max_frame=max_frame)
    alice = member(server.address, "alice", "general")
    data = os.urandom(5000)
    assert download(alice, upload(alice, data, room="general")["file"]["id"]) == data


def test_transcript_carries_file_metadata_not_bytes(server, db_url, tmp_path):
    import pickle

    from chatd.cli import main

    alice = member(server.address, "alice", "general")
    message = upload(alice, b"attachment bytes", room="general", name="notes.txt")
    target = tmp_path / "general.pkl"
    assert main(["export", "--room", "general", str(target), "--db", db_url], {}) == 0
    raw = target.read_bytes()
    assert b"attachment bytes" not in raw
    (exported,) = pickle.loads(raw)["messages"]  # our own file, written just now
    assert exported["file"] == message["file"]
    assert exported["text"] == "notes.txt"
