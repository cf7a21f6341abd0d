"""The real `chat` in a pseudo-terminal with conversation state: what is unread at login, the
bell and notifications for mentions, /ids, /reply, /edit, /delete, /search, /unread, and
marking read only what an interactive terminal has shown."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pexpect
import pytest
from client_helpers import chat_env, finish, spawn_chat, wait_for
from conftest import CLIENT_SUITE, PASSWORD
from wire import WireClient

pytestmark = CLIENT_SUITE


@pytest.fixture
def children() -> Iterator[list[pexpect.spawn]]:
    spawned: list[pexpect.spawn] = []
    yield spawned
    for child in spawned:
        if child.isalive():
            child.terminate(force=True)


def start(address, user: str, children, *args: str, **env: str) -> pexpect.spawn:
    child = spawn_chat(address, "login", "--user", user, *args, env=chat_env(**env))
    children.append(child)
    child.expect("password: ")
    child.sendline(PASSWORD)
    return child


def unread_in(client: WireClient, room: str) -> int:
    return next(e["unread"] for e in client.ok("unread")["rooms"] if e["room"] == room)


def test_login_shows_what_is_unread_and_the_direct_messages_of_the_time_away(
    connect, server, children
) -> None:
    alice = connect("alice")
    bob = connect("bob")
    alice.ok("join", room="general")
    bob.ok("join", room="general")
    bob.close()
    alice.ok("send", room="general", text="plain news")
    alice.ok("send", room="general", text="@bob look at this")
    alice.ok("dm", to="bob", text="first private word")
    alice.ok("dm", to="bob", text="second private word")
    child = start(server.address, "bob", children)
    child.expect("unread:")
    child.expect(r"#general 2 new, 1 mention")
    child.expect(r"alice 2 new")
    child.expect(r"while you were away: 2 direct messages")
    child.expect(r"\*alice\* first private word")
    child.expect(r"\*alice\* second private word")
    child.expect("now in #general")
    child.expect("look at this")
    check = connect("bob")
    # shown in the current room of a terminal: marked read, room and conversation
    wait_for(lambda: unread_in(check, "general") == 0, what="#general marked read")
    wait_for(lambda: check.ok("unread")["dms"][0]["unread"] == 0, what="the dms marked read")
    child.sendline("/quit")
    assert finish(child) == 0


def test_a_mention_rings_the_bell_and_notifies_through_the_terminal(
    connect, server, children
) -> None:
    alice = connect("alice")
    alice.ok("join", room="general")
    connect("bob")
    child = start(server.address, "bob", children, "--notify", DISPLAY="", TERM_PROGRAM="")
    child.expect("you are in no room yet")
    child.sendline("/join general")
    child.expect("now in #general")
    alice.ok("send", room="general", text="no bell for this")
    child.expect("no bell for this")
    assert "\x07" not in child.before
    alice.ok("send", room="general", text="ping @bob please")
    child.expect("<alice> ping @bob please")
    child.expect(re.escape("\x1b]777;notify;alice (#general);ping @bob please\x07"))
    assert "\x07" in child.before  # the bell, before the notification
    alice.ok("dm", to="bob", text="a direct one")
    child.expect(re.escape("\x1b]777;notify;alice (direct message);a direct one\x07"))
    child.sendline("/quit")
    assert finish(child) == 0


def test_ids_reply_edit_delete_and_search(connect, server, children) -> None:
    alice = connect("alice")
    alice.ok("join", room="general")
    connect("bob")
    child = start(server.address, "bob", children)
    child.expect("you are in no room yet")
    child.sendline("/join general")
    child.expect("now in #general")
    child.sendline("/ids on")
    child.expect("message ids are shown")
    asked = alice.ok("send", room="general", text="who wants tea?")["message"]["id"]
    child.expect(rf"\[{asked}\] \d\d:\d\d <alice> who wants tea\?")
    child.sendline(f"/reply {asked} me please")
    child.expect(r"<bob> ↳ alice: who wants tea\?\r\n +me please")
    answer = alice.next_event("message")
    assert (answer["text"], answer["reply_to"]) == ("me please", asked)
    child.sendline(f"/edit {answer['id']} me please, with milk")
    child.expect(r"me please, with milk \(edited\)")
    assert alice.next_event("edit")["text"] == "me please, with milk"
    alice.ok("edit", message_id=asked, text="who wants coffee?")
    child.expect(r"<alice> who wants coffee\? \(edited\)")
    child.sendline(f"/edit {asked} not mine")
    child.expect("not yours")
    child.sendline("/search coffee")
    child.expect("1 message found for coffee")
    child.expect(rf"\[{asked}\] .*who wants coffee")
    child.sendline(f"/delete {answer['id']}")
    child.expect(r"<bob> \(message deleted\)")
    assert alice.next_event("delete")["id"] == answer["id"]
    alice.ok("send", room="general", text="gone soon")
    gone = alice.ok("send", room="general", text="really gone soon")["message"]["id"]
    child.expect("really gone soon")
    alice.ok("delete", message_id=gone)
    child.expect(r"<alice> \(message deleted\)")
    check = connect("bob")
    wait_for(lambda: unread_in(check, "general") == 0, what="what was shown marked read")
    child.sendline("/unread")
    child.expect("nothing unread")
    child.sendline("/quit")
    assert finish(child) == 0


def test_a_room_not_in_view_stays_unread(connect, server, children) -> None:
    alice = connect("alice")
    bob = connect("bob")
    for room in ("general", "random"):
        alice.ok("join", room=room)
        bob.ok("join", room=room)
    child = start(server.address, "bob", children)
    child.expect("now in #general")
    child.expect("also in #random")
    alice.ok("send", room="random", text="elsewhere")
    child.expect("#random <alice> elsewhere")
    alice.ok("send", room="general", text="here")
    child.expect("<alice> here")
    wait_for(lambda: unread_in(bob, "general") == 0, what="#general marked read")
    assert unread_in(bob, "random") == 1
    child.sendline("/unread")
    child.expect("#random 1 new")
    child.sendline("/quit")
    assert finish(child) == 0
