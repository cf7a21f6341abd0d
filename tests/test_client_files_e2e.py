"""The client's /upload, /download and /open against a real server, and a hostile fake one."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from client_helpers import FakeServer, wait_for
from conftest import CLIENT_SUITE, PASSWORD

from chatd.server import Server
from client.chat import Chat
from client.cli import Console, main
from client.display import StreamDisplay
from client.render import PLAIN
from client.session import Session

pytestmark = CLIENT_SUITE

MiB = 1024 * 1024
DONE = 30.0  # seconds a transfer of a few MiB may take on a slow machine


class Lines(StreamDisplay):
    """A display that keeps what it is shown; lines come from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.statuses: list[str | None] = []

    def show(self, line: str, *, error: bool = False) -> None:
        with self._lock:
            (self.errors if error else self.lines).append(line)

    def refresh(self) -> None:
        pass

    def width(self) -> int | None:
        return None

    def status(self, text: str | None) -> None:
        with self._lock:
            self.statuses.append(text)

    def find(self, pattern: str) -> re.Match[str] | None:
        with self._lock:
            for line in self.lines:
                found = re.search(pattern, line)
                if found:
                    return found
        return None

    def wait(self, pattern: str) -> re.Match[str]:
        wait_for(lambda: self.find(pattern) is not None, what=pattern)
        found = self.find(pattern)
        assert found is not None
        return found


@pytest.fixture
def chats(server: Server, connect) -> Iterator[Callable[..., tuple[Chat, Lines]]]:
    """chats("alice", "general") -> a logged-in client Chat in #general, and its display."""
    made: list[Chat] = []

    def make(user: str, *rooms: str, address: tuple[str, int] | None = None) -> tuple[Chat, Lines]:
        connect(user, address=address)  # registers the account
        session = Session(address or server.address)
        session.open()
        reply = session.login(user, PASSWORD)
        display = Lines()
        chat = Chat(session, display, style=PLAIN)
        session.start(chat)
        chat.enter(reply, backlog=False)
        for room in rooms:
            chat.handle_line(f"/join {room}")
        assert session.wait_idle(10)
        made.append(chat)
        return chat, display

    yield make
    for chat in made:
        chat.transfers.cancel()
        chat.session.close()
        chat.transfers.wait(5)


def test_upload_and_download_a_binary_file_through_the_client(chats, tmp_path: Path) -> None:
    alice, alice_lines = chats("alice", "general")
    bob, bob_lines = chats("bob", "general")
    data = os.urandom(3 * MiB + 17)
    source = tmp_path / "screen shot.bin"
    source.write_bytes(data)

    alice.handle_line(f'/upload "{source}" the nightly build')
    assert alice.transfers.wait(DONE)
    assert alice_lines.errors == []
    pattern = (
        r"alice shared screen shot\.bin \(3\.0 MiB, application/octet-stream\) - /download (\d+)"
    )
    file_id = bob_lines.wait(pattern).group(1)
    assert alice_lines.find(pattern) is not None  # the uploader sees it too
    bob_lines.wait(r"^      the nightly build$")
    # a bar for a file of many chunks, and it goes away at the end
    assert any(s and "100%" in s for s in alice_lines.statuses)
    assert alice_lines.statuses[-1] is None

    dest = tmp_path / "dest"
    dest.mkdir()
    for _ in range(2):
        bob.handle_line(f"/download {file_id} {dest}")
        assert bob.transfers.wait(DONE)
    assert bob_lines.errors == []
    saved = dest / "screen shot.bin"
    assert saved.read_bytes() == data
    assert hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert (dest / "screen shot (1).bin").read_bytes() == data  # never overwritten
    assert sorted(p.name for p in dest.iterdir()) == ["screen shot (1).bin", "screen shot.bin"]
    bob_lines.wait(re.escape(f"saved screen shot.bin (3.0 MiB) as {saved}"))


def test_a_direct_file_and_open(chats, tmp_path: Path) -> None:
    alice, _ = chats("alice")
    carol, carol_lines = chats("carol")
    source = tmp_path / "notes.txt"
    source.write_bytes(b"for carol only\n")
    alice.handle_line(f"/upload @carol {source}")
    assert alice.transfers.wait(DONE)
    file_id = carol_lines.wait(r"\*alice\* shared notes\.txt .* - /download (\d+)").group(1)

    opened: list[Path] = []
    carol.transfers.cache = lambda: tmp_path / "cache"
    carol.transfers.opener = lambda path: opened.append(path) is None
    for _ in range(2):  # the second time it is already in the cache
        carol.handle_line(f"/open {file_id}")
        assert carol.transfers.wait(DONE)
    assert len(opened) == 2 and opened[0] == opened[1]
    assert opened[0].read_bytes() == b"for carol only\n"
    assert opened[0].is_relative_to(tmp_path / "cache")
    carol.transfers.opener = lambda path: False
    carol.handle_line(f"/open {file_id}")
    assert carol.transfers.wait(DONE)
    carol_lines.wait("no program to open files with; the file is at ")


def test_a_file_over_the_servers_limit_is_refused_before_anything_is_sent(
    start_server, chats, tmp_path: Path
) -> None:
    small = start_server(max_file_bytes=1000)
    alice, lines = chats("alice", "general", address=small.address)
    sent: list[str] = []
    real_request = alice.session.request

    def spy(op: str, *args: Any, **kwargs: Any):
        sent.append(op)
        return real_request(op, *args, **kwargs)

    alice.session.request = spy  # type: ignore[method-assign]
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 1001)
    alice.handle_line(f"/upload {big}")
    assert lines.errors == [
        "-!- big.bin is 1001 B; this server takes files of at most 1000 B (1000 bytes): not sent"
    ]
    assert alice.transfers.active() == 0
    assert sent == []
    alice.handle_line(f"/upload {tmp_path / 'missing.bin'}")
    assert "cannot upload" in lines.errors[-1] and sent == []


def test_chat_keeps_flowing_while_an_upload_is_under_way(chats, tmp_path: Path) -> None:
    alice, alice_lines = chats("alice", "general")
    _, bob_lines = chats("bob", "general")
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(2 * MiB))
    gate, in_upload = threading.Event(), threading.Event()

    class HeldSession:
        """The real session, but the first chunk waits until the test says go."""

        welcome = alice.session.welcome

        def request(self, op: str, *args: Any, **kwargs: Any) -> Any:
            if op == "chunk" and not gate.is_set():
                in_upload.set()
                assert gate.wait(10)
            return alice.session.request(op, *args, **kwargs)

    alice.transfers.session = HeldSession()
    alice.handle_line(f"/upload {source}")  # returns at once: the transfer has its own thread
    assert in_upload.wait(10)
    alice.handle_line("still chatting")
    bob_lines.wait(r"<alice> still chatting")
    assert alice.transfers.active() == 1
    gate.set()
    assert alice.transfers.wait(DONE)
    bob_lines.wait(r"alice shared big\.bin")
    assert alice_lines.errors == []


def fetch_reply(name: str, data: bytes, sha256: str | None = None) -> dict[str, Any]:
    meta = {
        "id": 1,
        "name": name,
        "size": len(data),
        "mime": "text/plain",
        "sha256": sha256 or hashlib.sha256(data).hexdigest(),
    }
    return {"file": meta, "offset": 0, "data": base64.b64encode(data).decode(), "eof": True}


def fake_chat(fake: FakeServer) -> tuple[Chat, Lines]:
    session = Session(fake.address)
    session.open()
    reply = session.login("bob", "x")
    display = Lines()
    chat = Chat(session, display, style=PLAIN)
    session.start(chat)
    chat.enter(reply, backlog=False)
    return chat, display


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "..\\..\\passwd"])
def test_a_hostile_name_is_saved_as_its_base_name_inside_dest(tmp_path: Path, name: str) -> None:
    fake = FakeServer({"login": {"username": "bob", "rooms": []}, "fetch": fetch_reply(name, b"r")})
    dest = tmp_path / "a" / "b"
    dest.mkdir(parents=True)
    try:
        chat, lines = fake_chat(fake)
        chat.handle_line(f"/download 1 {dest}")
        assert chat.transfers.wait(DONE)
        assert lines.errors == []
        assert [p.name for p in dest.iterdir()] == ["passwd"]
        assert (dest / "passwd").read_bytes() == b"r"
        assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "passwd"]
        chat.session.close()
    finally:
        fake.close()


def test_a_checksum_mismatch_saves_nothing(tmp_path: Path) -> None:
    reply = fetch_reply("doc.txt", b"tampered", sha256="0" * 64)
    fake = FakeServer({"login": {"username": "bob", "rooms": []}, "fetch": reply})
    try:
        chat, lines = fake_chat(fake)
        chat.handle_line(f"/download 1 {tmp_path}")
        assert chat.transfers.wait(DONE)
        assert lines.errors == [
            "-!- file 1 (doc.txt) did not arrive intact (sha256 mismatch): nothing was saved"
        ]
        assert list(tmp_path.iterdir()) == []
        chat.session.close()
    finally:
        fake.close()


def script(server: Server, user: str, stdin: str) -> tuple[int, str, str]:
    con = Console(
        stdin=io.StringIO(stdin),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
        terminal=False,
        can_prompt=lambda: False,
    )
    env = {"CHAT_SERVER": "{}:{}".format(*server.address), "CHAT_PASSWORD": PASSWORD}
    status = main(["login", "--user", user], env, con)
    assert isinstance(con.stdout, io.StringIO) and isinstance(con.stderr, io.StringIO)
    return status, con.stdout.getvalue(), con.stderr.getvalue()


def test_scripted_upload_and_download_wait_for_the_transfer(
    server: Server, connect, tmp_path: Path
) -> None:
    connect("alice")
    connect("bob")
    data = os.urandom(MiB + 3)
    source = tmp_path / "report.pdf"
    source.write_bytes(data)
    status, out, err = script(server, "alice", f"/join general\n/upload {source} Q3 report\n")
    assert (status, err) == (0, "")
    file_id = re.search(
        r"alice shared report\.pdf \(1\.0 MiB, application/pdf\) - /download (\d+)", out
    )
    assert file_id is not None, out
    assert "100%" not in out  # no progress lines in a script

    dest = tmp_path / "saved.pdf"
    status, out, err = script(
        server, "bob", f"/join general\n/download {file_id.group(1)} {dest}\n"
    )
    assert (status, err) == (0, "")
    assert f"saved report.pdf (1.0 MiB) as {dest}" in out  # the file it is, where it went
    assert dest.read_bytes() == data

    status, out, err = script(server, "bob", f"/download 9999 {tmp_path}\n")
    assert status == 1 and "downloading file 9999 failed" in err
