"""commands.py: parsing typed lines, the command table, /help, and Tab completion."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from client.commands import COMMANDS, Invocation, Text, UsageError, parse_line, run_line
from client.completion import ChatCompleter, Names, complete


class FakeChat:
    """Records what commands ask of the chat, in place of client.chat.Chat."""

    def __init__(self, current: str | None = "general", joined: tuple[str, ...] = ("general",)):
        self.current = current
        self.topics: dict[str, str] = {"general": "welcome all"}
        self._joined = list(joined)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.callbacks: list[Callable[[dict[str, Any]], None] | None] = []
        self.said: list[str] = []
        self.notices: list[str] = []
        self.tables: list[list[tuple[str, str]]] = []
        self.errors: list[str] = []
        self.switched: list[str] = []
        self.quitted = False
        self.key_rows: list[tuple[str, str]] = []

    def joined(self) -> list[str]:
        return self._joined

    def request(self, op: str, on_ok: Any = None, **args: Any) -> None:
        self.requests.append((op, args))
        self.callbacks.append(on_ok)

    def say(self, text: str) -> None:
        self.said.append(text)

    def notice(self, text: str) -> None:
        self.notices.append(text)

    def error(self, text: str) -> None:
        self.errors.append(text)

    def show_table(self, rows: list[tuple[str, str]]) -> None:
        self.tables.append(rows)

    def entered(self, reply: dict[str, Any]) -> None: ...
    def left(self, room: str) -> None: ...

    def switch(self, room: str) -> None:
        self.switched.append(room)

    def show_own(self, reply: dict[str, Any]) -> None: ...
    def show_rooms(self, reply: dict[str, Any]) -> None: ...
    def show_who(self, reply: dict[str, Any]) -> None: ...

    def older(self, room: str, count: int) -> None:
        self.requests.append(("older", {"room": room, "count": count}))

    def quit(self) -> None:
        self.quitted = True

    def reconnect(self) -> None:
        self.requests.append(("reconnect", {}))


def run(line: str, chat: FakeChat | None = None) -> FakeChat:
    chat = chat or FakeChat()
    run_line(chat, line)
    return chat


def test_parse_line_kinds() -> None:
    assert parse_line("") is None
    assert parse_line("   ") is None
    assert parse_line("hello") == Text("hello")
    assert parse_line("  indented") == Text("  indented")
    assert parse_line("//etc/passwd is a path") == Text("/etc/passwd is a path")
    assert parse_line("/JOIN #General") == Invocation("join", "#General")
    assert parse_line("/msg bob  two  spaces") == Invocation("msg", "bob  two  spaces")


def test_plain_line_is_said_and_double_slash_escapes() -> None:
    assert run("hello there").said == ["hello there"]
    assert run("//shrug").said == ["/shrug"]


def test_join_normalises_and_requests() -> None:
    chat = run("/join #Random")
    assert chat.requests == [("join", {"room": "random"})]


def test_join_of_a_joined_room_only_switches() -> None:
    chat = run("/join #general")
    assert chat.requests == [] and chat.switched == ["general"]


def test_join_refuses_an_invalid_room_without_asking_the_server() -> None:
    chat = run("/join bad!room")
    assert chat.requests == [] and "room name" in chat.errors[0]


def test_usage_errors_show_the_syntax() -> None:
    assert run("/join").errors == ["usage: /join ROOM"]
    assert run("/msg bob").errors == ["usage: /msg USER TEXT..."]
    assert run("/rooms extra").errors == ["usage: /rooms"]
    assert run("/history lots").errors == ["/history takes a number of messages, 1-500"]
    assert run("/history 501").errors == ["/history takes a number of messages, 1-500"]


def test_unknown_command() -> None:
    assert run("/frobnicate").errors == ["unknown command /frobnicate: /help lists them"]


def test_msg_keeps_the_rest_of_the_line_verbatim() -> None:
    chat = run("/msg bob hello   there, bob ")
    assert chat.requests == [("dm", {"to": "bob", "text": "hello   there, bob"})]
    assert run("/dm bob hi").requests == [("dm", {"to": "bob", "text": "hi"})]


def test_part_defaults_to_the_current_room() -> None:
    assert run("/part").requests == [("part", {"room": "general"})]
    assert run("/part #other").requests == [("part", {"room": "other"})]
    assert run("/part", FakeChat(current=None)).errors[0].startswith("you are in no room")


def test_switch_needs_a_joined_room() -> None:
    chat = FakeChat(joined=("general", "random"))
    run("/switch #random", chat)
    assert chat.switched == ["random"]
    assert "not in #nowhere" in run("/switch nowhere").errors[0]


def test_who_rooms_history() -> None:
    assert run("/who").requests == [("who", {"room": "general"})]
    assert run("/who lobby").requests == [("who", {"room": "lobby"})]
    assert run("/rooms").requests == [("rooms", {})]
    assert run("/history").requests == [("older", {"room": "general", "count": 20})]
    assert run("/history 5").requests == [("older", {"room": "general", "count": 5})]


def test_topic_shows_sets_and_clears() -> None:
    assert run("/topic").notices == ["topic of #general: welcome all"]
    assert run("/topic new news").requests == [("topic", {"room": "general", "topic": "new news"})]
    assert run("/topic -delete").requests == [("topic", {"room": "general", "topic": ""})]


def test_me_sends_an_action() -> None:
    assert run("/me waves").said == ["/me waves"]


def test_quit_and_exit() -> None:
    assert run("/quit").quitted
    assert run("/exit").quitted
    assert run("/quit").notices == []


def test_quit_takes_a_reason_and_says_it_is_not_sent() -> None:
    chat = run("/quit bye all")
    assert chat.quitted and chat.errors == []
    assert chat.notices == ["the reason is not sent: chatd has no quit messages"]


def test_help_is_generated_from_the_registry() -> None:
    (rows,) = run("/help").tables
    syntaxes = [syntax for syntax, _ in rows]
    for name in (
        "join",
        "part",
        "switch",
        "rooms",
        "who",
        "history",
        "msg",
        "topic",
        "me",
        "quit",
        "help",
    ):
        assert any(syntax.startswith(f"/{name}") for syntax in syntaxes), name
    assert len(rows) == len(COMMANDS.commands) + 2
    assert ("/msg USER TEXT...", "send a direct message") in rows
    assert run("/help msg").notices == [
        "/msg USER TEXT...  send a direct message",
        "also: /dm",
    ]
    assert run("/help nope").errors == ["unknown command /nope"]


def test_split_counts_arguments() -> None:
    join = COMMANDS.lookup("join")
    assert join is not None
    assert join.split("  #a  ") == ["#a"]
    with pytest.raises(UsageError):
        join.split("a b")


NAMES = Names(
    rooms=["general", "random", "rust"], joined=["general"], users=["alice", "Albert", "bob"]
)


@pytest.mark.parametrize(
    ("text", "start", "expected"),
    [
        ("/jo", 0, ["/join "]),
        ("/h", 0, ["/help ", "/history "]),
        ("/", 0, [f"/{name} " for name in sorted(COMMANDS.names())]),
        ("/join r", 6, ["random ", "rust "]),
        ("/join #ra", 6, ["#random "]),
        ("/switch ", 8, ["general "]),
        ("/part g", 6, ["general "]),
        ("/msg al", 5, ["Albert ", "alice "]),
        ("/msg alice hel", 11, []),
        ("/help hi", 6, ["history "]),
        ("/nope x", 6, []),
        ("/join general x", 14, []),
        ("al", 0, ["Albert: ", "alice: "]),
        ("hi b", 3, ["bob "]),
        ("see #ge", 4, ["#general"]),
        ("hello ", 6, []),
        ("", 0, []),
    ],
)
def test_complete(text: str, start: int, expected: list[str]) -> None:
    assert complete(text, NAMES) == (start, expected)


def test_prompt_toolkit_completer_replaces_the_word() -> None:
    completer = ChatCompleter(lambda: NAMES)
    document = Document("/join ra", cursor_position=8)
    found = list(completer.get_completions(document, CompleteEvent(completion_requested=True)))
    assert [(c.text, c.start_position) for c in found] == [("random ", -2)]
    buffer_text = document.text[: 8 + found[0].start_position] + found[0].text
    assert buffer_text == "/join random "
