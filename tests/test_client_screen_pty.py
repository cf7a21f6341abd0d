"""The full-screen `chat` against a real server, read as a person sees it (pyte)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from conftest import CLIENT_SUITE
from screen_helpers import (
    ALT_A,
    ALT_DOWN,
    F1,
    FOCUS_IN,
    FOCUS_OUT,
    PAGE_DOWN,
    PAGE_UP,
    ScreenChat,
)
from wire import WireClient

pytestmark = [CLIENT_SUITE, pytest.mark.timeout(90)]


@pytest.fixture
def screen_chat(server) -> Iterator[Callable[..., ScreenChat]]:
    started: list[ScreenChat] = []

    def start(user: str, **size: int) -> ScreenChat:
        chat = ScreenChat(server.address, user, **size)
        started.append(chat)
        return chat

    yield start
    for chat in started:
        chat.close()


def _in_list(screen: ScreenChat, name: str, label: str) -> bool:
    """The room list (the left column) shows `name` with this count label."""
    return any(row[:22].split() == [name, label] for row in screen.rows())


def _listed_plain(screen: ScreenChat, name: str) -> bool:
    return any(row[:22].split() == [name] for row in screen.rows())


def _members(connect, room: str, *users: str) -> list[WireClient]:
    clients = [connect(user) for user in users]
    for client in clients:
        client.ok("join", room=room)
    return clients


def test_counts_switching_and_the_new_line(connect, screen_chat) -> None:
    alice, bob = _members(connect, "general", "alice", "bob")
    alice.ok("join", room="ops")
    bob.ok("join", room="ops")
    screen = screen_chat("alice")
    screen.wait(lambda s: _listed_plain(s, "#general") and _listed_plain(s, "#ops"))
    for number in range(3):
        bob.ok("send", room="ops", text=f"ops news {number}")
    bob.ok("send", room="ops", text="@alice look at this")
    screen.wait(lambda s: _in_list(s, "#ops", "4!"))
    assert "ops news" not in screen.text()  # another room's lines stay in its own timeline
    screen.send(ALT_DOWN)
    screen.wait_for("ops news 2")
    screen.wait(lambda s: _listed_plain(s, "#ops"))  # shown: nothing unread there any more
    rows = screen.rows()
    marker = next(i for i, row in enumerate(rows) if "new since you left" in row)
    assert "ops news 0" in rows[marker + 1]
    assert "#ops" in rows[0]  # the topic line names the conversation
    assert "now in #" not in screen.text()  # a timeline of its own: its header only names it
    bob.ok("send", room="general", text="back in general")
    screen.wait(lambda s: _in_list(s, "#general", "1"))
    assert "back in general" not in screen.text()


def test_unread_at_login_is_counted_and_marked(connect, screen_chat) -> None:
    alice, bob = _members(connect, "general", "alice", "bob")
    alice.ok("join", room="random")
    bob.ok("join", room="random")
    bob.ok("send", room="random", text="read before")
    alice.ok(
        "mark_read",
        room="random",
        message_id=alice.ok("history", room="random")["messages"][-1]["id"],
    )
    alice.close()
    for number in range(2):
        bob.ok("send", room="random", text=f"while away {number}")
    bob.ok("dm", to="alice", text="are you around?")
    screen = screen_chat("alice")
    screen.wait(lambda s: _in_list(s, "#random", "2") and _in_list(s, "bob", "1!"))
    screen.send(ALT_DOWN)  # #general is first, #random next
    screen.wait_for("while away 1")
    rows = screen.rows()
    marker = next(i for i, row in enumerate(rows) if "new since you left" in row)
    assert "read before" in rows[marker - 1] and "while away 0" in rows[marker + 1]
    screen.send(ALT_DOWN)
    screen.wait_for("are you around?")
    screen.wait(lambda s: _listed_plain(s, "bob"))
    screen.type_line("yes, here")
    assert bob.next_event("dm")["text"] == "yes, here"


def test_scrollback_fetches_older_history_as_the_top_is_reached(start_server) -> None:
    server = start_server(history_size=20)
    alice = WireClient(server.address)
    alice.ok("register", username="alice", password="correct horse")
    alice.ok("login", username="alice", password="correct horse")
    alice.ok("join", room="long")
    for number in range(120):
        alice.ok("send", room="long", text=f"line {number:03d}")
    screen = ScreenChat(server.address, "alice", rows=20)
    try:
        screen.wait_for("line 119")
        assert "line 099" not in screen.text()
        seen = set()
        for _ in range(20):
            seen |= {row.split()[-1] for row in screen.rows() if " line " in f" {row}"}
            if "beginning of this conversation" in screen.text():
                break
            screen.send(PAGE_UP)
            screen.settle(0.3)
        numbers = {word for word in seen if word.isdigit()}
        assert numbers == {f"{n:03d}" for n in range(120)}  # every line, none skipped
        assert "line 000" in screen.text()
        for _ in range(20):
            screen.send(PAGE_DOWN)
        screen.wait_for("line 119")
        assert "scrolled back" not in screen.text()
    finally:
        screen.close()
        alice.close()


def test_a_mention_elsewhere_rings_the_bell_and_one_in_view_does_not(connect, screen_chat) -> None:
    alice, bob = _members(connect, "general", "alice", "bob")
    alice.ok("join", room="ops")
    bob.ok("join", room="ops")
    screen = screen_chat("alice")
    screen.wait(lambda s: _listed_plain(s, "#ops"))
    screen.settle()
    bells = screen.screen.bells
    bob.ok("send", room="general", text="@alice in view")
    screen.wait_for("in view")
    screen.settle()
    assert screen.screen.bells == bells
    bob.ok("send", room="ops", text="@alice elsewhere")
    screen.wait(lambda s: _in_list(s, "#ops", "1!") and s.screen.bells == bells + 1)
    bob.ok("dm", to="alice", text="psst")
    screen.wait(lambda s: _in_list(s, "bob", "1!") and s.screen.bells == bells + 2)
    screen.settle()
    assert screen.screen.bells == bells + 2
    screen.send(ALT_A)  # mentions first: #ops, then bob
    screen.wait_for("@alice elsewhere")


def test_resizing_leaves_no_stale_lines(connect, screen_chat) -> None:
    alice, bob = _members(connect, "general", "alice", "bob")
    alice.ok("join", room="ops")
    bob.ok(
        "send", room="general", text="a line long enough to wrap when the terminal is narrow " * 2
    )
    screen = screen_chat("alice", columns=100)
    screen.wait(lambda s: _listed_plain(s, "#ops"))
    screen.resize(30)
    screen.settle(0.5)
    rows = screen.rows()
    assert "│" not in "".join(rows)  # no room list column at 30 columns
    assert rows[0].split()[:2] == ["#general", "#ops"]  # a one-line bar instead
    assert max(len(row) for row in rows) <= 30
    screen.resize(80)
    screen.settle(0.5)
    rows = screen.rows()
    assert sum(row[:22].split() == ["#general"] for row in rows) == 1  # the list is back
    assert not any(row.split()[:2] == ["#general", "#ops"] for row in rows)  # the bar is gone
    assert max(len(row) for row in rows) <= 80
    text = ("a line long enough to wrap when the terminal is narrow " * 2).strip()
    first = next(i for i, row in enumerate(rows) if "<bob>" in row)
    pieces = [rows[first].split("<bob>", 1)[1].strip()]
    for row in rows[first + 1 :]:
        body = row.split("│", 1)[1]
        if not body.startswith(" " * 6) or not body.strip():
            break
        pieces.append(body.strip())
    assert " ".join(pieces) == text  # rewrapped at the new width, under the text column


def test_a_long_paste_asks_first_and_a_short_one_is_one_message(connect, screen_chat) -> None:
    _alice, bob = _members(connect, "general", "alice", "bob")
    screen = screen_chat("alice")
    screen.wait(lambda s: _listed_plain(s, "#general"))
    screen.paste("\n".join(f"pasted {n}" for n in range(6)))
    screen.wait_for("send these 6 pasted lines?")
    screen.send("y")
    for number in range(6):
        assert bob.next_event("message")["text"] == f"pasted {number}"
    screen.paste("first line\nsecond line")
    screen.send("\r")
    assert bob.next_event("message")["text"] == "first line\nsecond line"
    screen.paste("\n".join(f"never {n}" for n in range(7)))
    screen.wait_for("send these 7 pasted lines?")
    screen.send("n")
    screen.wait_for("paste cancelled")
    screen.type_line("after")
    assert bob.next_event("message")["text"] == "after"  # nothing of the cancelled paste


def test_focus_decides_what_is_read(connect, screen_chat) -> None:
    alice, bob = _members(connect, "general", "alice", "bob")
    screen = screen_chat("alice")
    screen.wait(lambda s: _listed_plain(s, "#general"))
    screen.send(FOCUS_OUT)
    screen.settle()
    bob.ok("send", room="general", text="while unfocused")
    screen.wait(lambda s: _in_list(s, "#general", "1"))
    screen.send(FOCUS_IN)
    screen.wait(lambda s: _listed_plain(s, "#general"))
    newest = bob.ok("history", room="general")["messages"][-1]["id"]
    event = alice.next_event("read", timeout=10)
    assert event["room"] == "general" and event["last_read"] == newest


def test_a_read_on_another_device_clears_the_count(connect, screen_chat) -> None:
    alice, bob = _members(connect, "general", "alice", "bob")
    alice.ok("join", room="ops")
    bob.ok("join", room="ops")
    screen = screen_chat("alice")
    screen.wait(lambda s: _listed_plain(s, "#ops"))
    bob.ok("send", room="ops", text="one")
    message = bob.ok("send", room="ops", text="two")["message"]
    screen.wait(lambda s: _in_list(s, "#ops", "2"))
    alice.ok("mark_read", room="ops", message_id=message["id"])
    screen.wait(lambda s: _listed_plain(s, "#ops"))


def test_f1_shows_the_keys(connect, screen_chat) -> None:
    _members(connect, "general", "alice")
    screen = screen_chat("alice")
    screen.wait(lambda s: _listed_plain(s, "#general"))
    screen.send(F1)
    screen.wait_for("next conversation with activity")


def test_the_input_line_says_offline_and_pacing(start_server) -> None:
    server = start_server(send_rate=4, send_burst=2)
    alice = WireClient(server.address)
    alice.ok("register", username="alice", password="correct horse")
    alice.ok("login", username="alice", password="correct horse")
    alice.ok("join", room="r")
    bob = WireClient(server.address)
    bob.ok("register", username="bob", password="correct horse")
    bob.ok("login", username="bob", password="correct horse")
    bob.ok("join", room="r")
    screen = ScreenChat(server.address, "alice")
    try:
        screen.wait(lambda s: _listed_plain(s, "#r"))
        screen.paste("\n".join(f"paced {n}" for n in range(8)))
        screen.wait_for("send these 8 pasted lines?")
        screen.send("y")
        screen.wait_for("[pacing")
        for number in range(8):
            assert bob.next_event("message", timeout=15)["text"] == f"paced {number}"
        screen.wait(lambda s: "[pacing" not in s.text())
        port = server.address[1]
        server.stop()
        screen.wait_for("[offline]")
        start_server(port=port)
        screen.wait(lambda s: "[offline]" not in s.text(), timeout=30)
        screen.wait_for("reconnected")
    finally:
        screen.close()
        alice.close()
        bob.close()
