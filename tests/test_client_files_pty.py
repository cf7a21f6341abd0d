"""/upload, /download and hyperlinks in the real `chat`, in a real pseudo-terminal (pexpect).

As in test_client_pty.py: expect message text, never the prompt, and every
expect has a deadline.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from client_helpers import chat_env, finish, spawn_chat
from conftest import CLIENT_SUITE, PASSWORD
from wire import WireClient

from chatd.server import Server

pytestmark = CLIENT_SUITE


@pytest.fixture
def children() -> Iterator[list[pexpect.spawn]]:
    spawned: list[pexpect.spawn] = []
    yield spawned
    for child in spawned:
        if child.isalive():
            child.terminate(force=True)


def share(client: WireClient, data: bytes, name: str, room: str) -> int:
    """Upload through the wire, as another client would; the new file's id."""
    started = client.ok(
        "upload", room=room, name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    step = started["chunk_bytes"]
    for offset in range(0, len(data), step):
        piece = base64.b64encode(data[offset : offset + step]).decode()
        client.ok("chunk", upload=started["upload"], offset=offset, data=piece)
    return client.ok("finish", upload=started["upload"])["message"]["file"]["id"]


def fetch_all(client: WireClient, file_id: int) -> bytes:
    parts, offset = [], 0
    while True:
        reply = client.ok("fetch", file=file_id, offset=offset)
        parts.append(base64.b64decode(reply["data"]))
        offset += len(parts[-1])
        if reply["eof"]:
            return b"".join(parts)


def test_upload_and_download_in_a_terminal(
    connect, server: Server, children, tmp_path: Path
) -> None:
    alice = connect("alice")
    alice.ok("join", room="general")
    connect("bob")
    home = tmp_path / "home"
    (home / "Downloads").mkdir(parents=True)
    # wide enough for the saved path (under pytest's tmp_path) to stay on one line
    child = spawn_chat(
        server.address, "login", "--user", "bob", env=chat_env(HOME=str(home)), columns=300
    )
    children.append(child)
    child.expect("password: ")
    child.sendline(PASSWORD)
    child.expect(r"you are in no room yet.*lists commands")
    child.sendline("/join general")
    child.expect("now in #general")
    alice.drain()

    upload = tmp_path / "holiday clip.mp4"
    upload.write_bytes(os.urandom(2 * 1024 * 1024 + 1))
    child.sendline(f'/upload "{upload}" from the beach')
    child.expect(r"bob shared holiday clip\.mp4 \(2\.0 MiB, video/mp4\) - /download (\d+)")
    event = alice.next_event("message")
    assert event["file"]["id"] == int(child.match.group(1))
    assert event["text"] == "from the beach"
    assert fetch_all(alice, event["file"]["id"]) == upload.read_bytes()

    data = os.urandom(300_000)
    # the real server refuses `/` in names; a leading-dots name shows the reduction here
    file_id = share(alice, data, "..notes.txt", "general")
    child.expect(rf"alice shared \.\.notes\.txt .* - /download {file_id}")
    child.sendline(f"/download {file_id}")
    child.expect(r"saved notes\.txt \(293\.0 KiB\) as (\S+)")
    saved = home / "Downloads" / "notes.txt"
    assert child.match.group(1) == str(saved)
    assert saved.read_bytes() == data
    child.sendline("/quit")
    assert finish(child) == 0


def test_urls_are_terminal_hyperlinks(connect, server: Server, children) -> None:
    alice = connect("alice")
    alice.ok("join", room="general")
    connect("bob")
    child = spawn_chat(server.address, "login", "--user", "bob", env=chat_env())
    children.append(child)
    child.expect("password: ")
    child.sendline(PASSWORD)
    child.expect(r"you are in no room yet.*lists commands")
    child.sendline("/join general")
    child.expect("now in #general")
    alice.ok("send", room="general", text="docs: https://example.org/guide.")
    child.expect_exact(
        "\x1b]8;;https://example.org/guide\x1b\\\x1b[4mhttps://example.org/guide\x1b[24m"
        "\x1b]8;;\x1b\\."
    )
    child.sendline("/quit")
    assert finish(child) == 0
