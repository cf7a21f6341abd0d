"""The real `chat` in a real pseudo-terminal (pexpect) against a real server.

We expect message text, never the prompt (prompt_toolkit draws it with cursor
codes), and every expect has a deadline.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator

import pexpect
import pytest
from client_helpers import FakeServer, Tmux, chat_env, finish, spawn_chat
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


def logged_in(
    address: tuple[str, int], user: str, children: list[pexpect.spawn], **env: str
) -> pexpect.spawn:
    """`chat login` as `user`, past the password prompt and into the chat."""
    child = spawn_chat(address, "login", "--user", user, env=chat_env(**env))
    children.append(child)
    child.expect("password: ")
    child.sendline(PASSWORD)
    # the whole first line, so that later expects cannot match its tail
    child.expect([r"you are in no room yet.*lists commands", r"now in #\S+"])
    return child


def test_register_prompts_and_retries_mismatched_passwords(server, children) -> None:
    child = spawn_chat(server.address, "register")
    children.append(child)
    child.expect("username: ")
    child.sendline("carol")
    child.expect("password: ")
    child.sendline("first secret")
    child.expect("password again: ")
    child.sendline("second secret")
    child.expect("the passwords do not match")
    child.expect("password: ")
    child.sendline("same secret")
    child.expect("password again: ")
    child.sendline("same secret")
    child.expect("registered carol")
    assert finish(child) == 0
    # never echoed
    assert "secret" not in (child.before or "")
    WireClient(server.address).ok("login", username="carol", password="same secret")


def test_register_a_taken_name_exits_1(connect, server, children) -> None:
    connect("alice")
    child = spawn_chat(server.address, "register", "--user", "alice")
    children.append(child)
    for prompt in ("password: ", "password again: "):
        child.expect(prompt)
        child.sendline(PASSWORD)
    child.expect("that username is taken")
    assert finish(child) == 1


def test_login_with_a_wrong_then_the_right_password(connect, server, children) -> None:
    connect("alice")
    child = spawn_chat(server.address, "login", "--user", "alice")
    children.append(child)
    child.expect("password: ")
    child.sendline("not my password")
    child.expect("wrong username or password")
    child.expect("password: ")
    child.sendline(PASSWORD)
    child.expect("you are in no room yet")
    child.sendline("/quit")
    assert finish(child) == 0


def test_join_shows_history_then_live_messages(connect, server, children) -> None:
    alice = connect("alice")
    alice.ok("join", room="general")
    alice.ok("send", room="general", text="said before bob came")
    connect("bob")
    child = logged_in(server.address, "bob", children)
    child.sendline("/join #general")
    child.expect("now in #general")
    child.expect("<alice> said before bob came")
    alice.ok("send", room="general", text="said after bob came")
    child.expect("<alice> said after bob came")
    child.sendline("/quit")
    assert finish(child) == 0


def test_incoming_message_does_not_garble_the_line_being_typed(connect, server, children) -> None:
    alice = connect("alice")
    alice.ok("join", room="general")
    connect("bob")
    child = logged_in(server.address, "bob", children)
    child.sendline("/join general")
    child.expect("now in #general")
    alice.drain()
    child.send("half of my")
    child.expect("half of my")  # the echo: prompt_toolkit has the keys
    alice.ok("send", room="general", text="an interruption")
    child.expect("<alice> an interruption")
    child.expect("half of my")  # the input line is drawn again below the message
    child.send(" sentence\r")
    event = alice.next_event("message")
    assert (event["user"], event["text"]) == ("bob", "half of my sentence")
    child.expect("<bob> half of my sentence")
    child.sendcontrol("d")
    assert finish(child) == 0


def test_direct_messages_both_ways(connect, server, children) -> None:
    alice = connect("alice")
    connect("bob")
    child = logged_in(server.address, "bob", children)
    child.sendline("/msg alice are you there?")
    child.expect(r"-> \*alice\* are you there\?")
    assert alice.next_event("dm")["text"] == "are you there?"
    alice.ok("dm", to="bob", text="yes I am")
    child.expect(r"\*alice\* yes I am")
    child.sendline("/quit")
    assert finish(child) == 0


def test_tab_completes_a_command(connect, server, children) -> None:
    alice = connect("alice")
    alice.ok("join", room="lounge")
    connect("bob")
    child = logged_in(server.address, "bob", children)
    # each key waits for the screen: a completion is computed after the keys
    # already typed, so text sent right behind a Tab would race it
    child.send("/jo")
    child.expect("/jo")
    child.send("\t")
    child.expect("in")
    child.send("lou")
    child.expect("lou")
    child.send("\t")
    child.expect("nge")
    child.send("\r")
    child.expect("now in #lounge")
    child.sendline("/quit")
    assert finish(child) == 0


def test_colour_and_hostile_text_from_a_server(children) -> None:
    """Whatever a server sends, no escape sequence of its own reaches the terminal."""
    hostile = "pwn\x1b]0;owned title\x07ed \x1b[2Jscreen \x9b31mred"
    fake = FakeServer(
        {
            "login": {"username": "bob", "rooms": []},
            "join": {
                "room": "general",
                "topic": "topic\x1b[5m",
                "members": ["bob"],
                "online": ["bob"],
                "history": [
                    {
                        "id": 1,
                        "room": "general",
                        "user": "mal\x1b[8mlory",
                        "text": hostile,
                        "ts": "2026-01-01T10:00:00.000Z",
                    }
                ],
            },
            "rooms": {"rooms": []},
        }
    )
    try:
        child = spawn_chat(
            fake.address, "login", "--user", "bob", env=chat_env(CHAT_PASSWORD="x", NO_COLOR="")
        )
        children.append(child)
        child.sendline("/join general")
        child.expect("pwned screen red")
        shown = child.before + child.after
        assert "\x1b]0;" not in shown and "owned title" not in shown
        assert "\x1b[2J" not in shown and "\x9b" not in shown and "\x1b[8m" not in shown
        assert "mallory" in shown
        assert "\x1b[" in shown  # colour is on: our own SGR codes are there
        child.sendline("/quit")
        assert finish(child) == 0
    finally:
        fake.close()


def test_reconnects_after_a_server_restart(start_server: Callable[..., Server], children) -> None:
    first = start_server()
    address = first.address
    setup = WireClient(address)
    for name in ("alice", "bob"):
        setup.ok("register", username=name, password=PASSWORD)
    setup.ok("login", username="alice", password=PASSWORD)
    setup.ok("join", room="general")
    setup.close()
    child = logged_in(address, "bob", children)
    child.sendline("/join general")
    child.expect("now in #general")

    first.stop()
    child.expect("connection lost")
    child.sendline("typed while the server was down")
    child.expect("will be sent after reconnecting")
    second = start_server(port=address[1])
    child.expect("reconnected")
    child.expect("<bob> typed while the server was down")
    alice = WireClient(second.address)
    alice.ok("login", username="alice", password=PASSWORD)
    texts = [m["text"] for m in alice.ok("history", room="general")["messages"]]
    assert texts == ["typed while the server was down"]
    alice.ok("send", room="general", text="welcome back")
    child.expect("<alice> welcome back")
    child.sendline("/quit")
    assert finish(child) == 0
    alice.close()


def test_a_server_shutdown_is_announced_once(server: Server, children) -> None:
    WireClient(server.address).ok("register", username="bob", password=PASSWORD)
    child = logged_in(server.address, "bob", children)
    # why: no request may be in flight: the server resets a connection it stops
    # reading mid-request, and the reset can swallow the shutdown event
    child.sendline("/rooms")
    child.expect("there are no rooms yet")
    server.stop()
    child.expect(r"the server is shutting down([^\r\n]*)\r\n")
    assert child.match.group(1) == ""
    child.sendline("/quit")
    assert finish(child) == 0


def test_an_action_in_a_direct_message_is_shown_as_an_action(connect, server, children) -> None:
    alice = connect("alice")
    connect("bob")
    child = logged_in(server.address, "bob", children)
    child.sendline("/msg alice /me waves")
    child.expect(r"-> \*alice\* \* bob waves")
    assert alice.next_event("dm")["text"] == "/me waves"
    alice.ok("dm", to="bob", text="/me waves back")
    child.expect(r"\*alice\* \* alice waves back")
    child.sendline("/quit")
    assert finish(child) == 0


def test_offline_join_is_queued_and_who_says_not_connected(
    start_server: Callable[..., Server], children
) -> None:
    first = start_server()
    address = first.address
    setup = WireClient(address)
    setup.ok("register", username="bob", password=PASSWORD)
    setup.close()
    child = logged_in(address, "bob", children)
    first.stop()
    child.expect("connection lost")
    # reconnect attempts are reported meanwhile: match the lines these commands cause
    child.sendline("/join lobby")
    child.expect(r"-!- ([^\r\n]*lobby[^\r\n]*)\r\n", timeout=5)
    assert child.match.group(1) == "not connected: will join #lobby after reconnecting"
    child.sendline("/who lobby")
    child.expect(r"-!- ([^\r\n]*who[^\r\n]*)\r\n")
    assert child.match.group(1) == "/who failed: not connected to the server"
    start_server(port=address[1])
    child.expect("reconnected")
    child.expect("now in #lobby")
    child.sendline("/quit")
    assert finish(child) == 0


FOX = "the quick brown fox jumps over the lazy dog again and again"


def test_long_lines_wrap_at_words_under_the_text_in_a_narrow_terminal(
    connect, server, children
) -> None:
    alice = connect("alice")
    alice.ok("join", room="general")
    connect("bob")
    child = spawn_chat(server.address, "login", "--user", "bob", columns=40)
    children.append(child)
    child.expect("password: ")
    child.sendline(PASSWORD)
    child.expect("lists commands")
    child.sendline("/join general")
    child.expect("now in #general")
    alice.ok("send", room="general", text=FOX)
    child.expect(r"\d\d:\d\d <alice> the quick brown fox jumps\r\n")
    child.expect_exact("              over the lazy dog again\r\n")
    child.expect_exact("              and again\r\n")
    child.sendline("/quit")
    assert finish(child) == 0


def test_help_and_rooms_wrap_under_their_own_column_in_a_narrow_terminal(
    connect, server, children
) -> None:
    alice = connect("alice")
    alice.ok("join", room="general")
    alice.ok("topic", room="general", topic="release planning for the next version")
    connect("bob")
    child = spawn_chat(server.address, "login", "--user", "bob", columns=40)
    children.append(child)
    child.expect("password: ")
    child.sendline(PASSWORD)
    child.expect("lists commands")
    child.sendline("/help")
    child.expect_exact("-!- /join ROOM        join a room\r\n")
    child.expect_exact("                      (creating it) and\r\n")
    child.expect_exact("-!- /upload [@USER] PATH [CAPTION]\r\n")
    child.expect_exact("                      send a file to the\r\n")
    child.sendline("/rooms")
    child.expect_exact("-!-   #general  1 member, 0 msgs\r\n")
    child.expect_exact("                release planning for the\r\n")
    child.sendline("/quit")
    assert finish(child) == 0


@pytest.fixture
def tmux_chat(server) -> Iterator[Callable[..., Tmux]]:
    """tmux_chat(user) -> `chat login` as `user` in a tmux pane, a terminal that reflows."""
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is not installed (CI is set: install tmux)")
        pytest.skip("tmux is not installed")
    panes: list[Tmux] = []

    def start(user: str) -> Tmux:
        address = "{}:{}".format(*server.address)
        command = [sys.executable, "-m", "client", "login", "--user", user, "--server", address]
        env = {
            "CHAT_PASSWORD": PASSWORD,
            "CHAT_LINE": "yes",
            "NO_COLOR": "1",
            "PROMPT_TOOLKIT_NO_CPR": "1",
        }
        pane = Tmux(command, env, columns=100, rows=20)
        panes.append(pane)
        return pane

    yield start
    for pane in panes:
        pane.close()


def test_resizing_a_reflowing_terminal_leaves_no_duplicated_prompt(connect, tmux_chat) -> None:
    """A prompt row the narrower terminal rewrapped is erased whole, not its last row only."""
    alice = connect("alice")
    alice.ok("join", room="general")
    connect("bob")
    pane = tmux_chat("bob")
    # keys typed before the prompt is drawn would be echoed by the tty, outside the app
    pane.wait_for(lambda lines: "(no room)>" in lines, "the prompt")
    pane.type("/join general", enter=True)
    pane.wait_for(lambda lines: "-!- now in #general" in lines, "the join")
    prompt = "#general> typing a fairly long line of text here"
    pane.type(prompt.removeprefix("#general> "))
    pane.wait_for(lambda lines: prompt in lines, "the typed text")
    for columns in (30, 60, 25, 100, 20):
        pane.resize(columns)
        # a line printed after the resize: the app has handled the resize by then
        said = f"at {columns}"
        alice.ok("send", room="general", text=said)
        lines = pane.wait_for(prompt_below(f"<alice> {said}"), f"the prompt below {said!r}")
        prompts = [line for line in lines if line.startswith("#general>")]
        assert prompts == [prompt[:columns]], "\n".join(lines)


def prompt_below(text: str) -> Callable[[list[str]], bool]:
    """A screen on which the prompt has been drawn again below the line ending with `text`."""

    def drawn(lines: list[str]) -> bool:
        shown = [index for index, line in enumerate(lines) if line.endswith(text)]
        return bool(shown) and any(line.startswith("#general>") for line in lines[shown[-1] :])

    return drawn
