"""Slash commands as a table: each declares its syntax and help, and one place checks them.

`/help` is generated from the registry and Tab completion reads it to know
what each argument is (a room, a joined room, a user, a command), so a new
command is one decorated function here and nothing else. Handlers are headed
by their syntax and talk to the chat only through `ChatApi`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from chatd.errors import ChatError
from chatd.names import normalize_room

Frame = dict[str, Any]
ArgKind = Literal["room", "joined", "user", "command", "text", "number"]
HISTORY_DEFAULT = 20
HISTORY_MAX = 500


class ChatApi(Protocol):
    """What a command may do to the chat (implemented by client.chat.Chat)."""

    current: str | None
    topics: dict[str, str]

    def joined(self) -> list[str]: ...
    def request(
        self, op: str, on_ok: Callable[[Frame], None] | None = None, **args: Any
    ) -> None: ...
    def say(self, text: str) -> None: ...
    def notice(self, text: str) -> None: ...
    def error(self, text: str) -> None: ...
    def entered(self, reply: Frame) -> None: ...
    def left(self, room: str) -> None: ...
    def switch(self, room: str) -> None: ...
    def show_own(self, reply: Frame) -> None: ...
    def show_rooms(self, reply: Frame) -> None: ...
    def show_who(self, reply: Frame) -> None: ...
    def show_history(self, room: str, reply: Frame) -> None: ...
    def oldest(self, room: str) -> int | None: ...
    def quit(self) -> None: ...


class UsageError(Exception):
    """A command typed with the wrong arguments; the message is the line to show."""


Handler = Callable[[ChatApi, list[str]], None]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: ArgKind
    optional: bool = False
    rest: bool = False  # takes the remainder of the line verbatim

    def __str__(self) -> str:
        text = self.name + ("..." if self.rest else "")
        return f"[{text}]" if self.optional else text


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    params: tuple[Param, ...]
    summary: str
    handler: Handler
    aliases: tuple[str, ...] = ()

    @property
    def syntax(self) -> str:
        return " ".join([f"/{self.name}", *(str(p) for p in self.params)])

    def split(self, raw: str) -> list[str]:
        """The arguments of `raw`: words, and the whole rest for a `rest` parameter."""
        args: list[str] = []
        remaining = raw.strip()
        for param in self.params:
            if not remaining:
                break
            if param.rest:
                args.append(remaining)
                remaining = ""
                break
            word, _, remaining = remaining.partition(" ")
            args.append(word)
            remaining = remaining.lstrip()
        needed = sum(not p.optional for p in self.params)
        if len(args) < needed or remaining:
            raise UsageError(f"usage: {self.syntax}")
        return args


@dataclass
class Registry:
    commands: dict[str, Command] = field(default_factory=dict)
    _by_alias: dict[str, Command] = field(default_factory=dict)

    def command(
        self, name: str, params: Sequence[Param], summary: str, aliases: Sequence[str] = ()
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            cmd = Command(name, tuple(params), summary, handler, tuple(aliases))
            self.commands[name] = cmd
            for alias in (name, *aliases):
                self._by_alias[alias] = cmd
            return handler

        return register

    def lookup(self, name: str) -> Command | None:
        return self._by_alias.get(name.lower())

    def names(self) -> list[str]:
        return sorted(self._by_alias)

    def help_lines(self) -> list[str]:
        width = max(len(cmd.syntax) for cmd in self.commands.values())
        lines = [f"{cmd.syntax:<{width}}  {cmd.summary}" for cmd in self.commands.values()]
        lines.append(f"{'//TEXT':<{width}}  send a line that begins with /")
        lines.append(f"{'TEXT':<{width}}  send TEXT to the current room")
        return lines


COMMANDS = Registry()


@dataclass(frozen=True, slots=True)
class Invocation:
    name: str
    raw_args: str


@dataclass(frozen=True, slots=True)
class Text:
    text: str


def parse_line(line: str) -> Invocation | Text | None:
    """A typed line as a command, text to send, or None for a blank line."""
    if not line.strip():
        return None
    if line.startswith("//"):
        return Text(line[1:])
    if line.startswith("/"):
        name, _, raw = line[1:].partition(" ")
        return Invocation(name.lower(), raw)
    return Text(line)


def run_line(chat: ChatApi, line: str, registry: Registry = COMMANDS) -> None:
    """Do what a typed line says; mistakes become one error line."""
    parsed = parse_line(line)
    if parsed is None:
        return
    if isinstance(parsed, Text):
        chat.say(parsed.text)
        return
    cmd = registry.lookup(parsed.name)
    if cmd is None:
        chat.error(f"unknown command /{parsed.name}: /help lists them")
        return
    try:
        cmd.handler(chat, cmd.split(parsed.raw_args))
    except UsageError as exc:
        chat.error(str(exc))
    except ChatError as exc:  # a room name the server would refuse anyway
        chat.error(exc.message)


def _room(text: str) -> str:
    return normalize_room(text)


def _current(chat: ChatApi) -> str:
    if chat.current is None:
        raise UsageError("you are in no room: /join ROOM first")
    return chat.current


ROOM = Param("ROOM", "room")
JOINED = Param("ROOM", "joined")


@COMMANDS.command("join", [ROOM], "join a room (creating it) and make it current")
def cmd_join(chat: ChatApi, args: list[str]) -> None:
    """/join ROOM"""
    room = _room(args[0])
    if room in chat.joined():
        chat.switch(room)
        return
    chat.request("join", chat.entered, room=room)


@COMMANDS.command("part", [Param("ROOM", "joined", optional=True)], "leave a room")
def cmd_part(chat: ChatApi, args: list[str]) -> None:
    """/part [ROOM]  (the current room when none is named)"""
    room = _room(args[0]) if args else _current(chat)
    chat.request("part", lambda reply: chat.left(room), room=room)


@COMMANDS.command("switch", [JOINED], "make another joined room current")
def cmd_switch(chat: ChatApi, args: list[str]) -> None:
    """/switch ROOM"""
    room = _room(args[0])
    if room not in chat.joined():
        raise UsageError(f"you are not in #{room}: /join {room}")
    chat.switch(room)


@COMMANDS.command("rooms", [], "list every room on the server")
def cmd_rooms(chat: ChatApi, args: list[str]) -> None:
    """/rooms"""
    chat.request("rooms", chat.show_rooms)


@COMMANDS.command("who", [Param("ROOM", "room", optional=True)], "who is in a room, and online")
def cmd_who(chat: ChatApi, args: list[str]) -> None:
    """/who [ROOM]"""
    room = _room(args[0]) if args else _current(chat)
    chat.request("who", chat.show_who, room=room)


@COMMANDS.command(
    "history", [Param("N", "number", optional=True)], "show N older messages of the current room"
)
def cmd_history(chat: ChatApi, args: list[str]) -> None:
    """/history [N]  (default 20)"""
    room = _current(chat)
    try:
        count = int(args[0]) if args else HISTORY_DEFAULT
    except ValueError:
        raise UsageError(f"/history takes a number of messages, 1-{HISTORY_MAX}") from None
    if not 1 <= count <= HISTORY_MAX:
        raise UsageError(f"/history takes a number of messages, 1-{HISTORY_MAX}")
    before = chat.oldest(room)
    extra = {} if before is None else {"before": before}
    chat.request(
        "history", lambda reply: chat.show_history(room, reply), room=room, limit=count, **extra
    )


@COMMANDS.command(
    "msg",
    [Param("USER", "user"), Param("TEXT", "text", rest=True)],
    "send a direct message",
    aliases=["dm"],
)
def cmd_msg(chat: ChatApi, args: list[str]) -> None:
    """/msg USER TEXT"""
    chat.request("dm", chat.show_own, to=args[0], text=args[1])


@COMMANDS.command(
    "topic",
    [Param("TEXT", "text", optional=True, rest=True)],
    "show the current room's topic, or set it (/topic -delete clears it)",
)
def cmd_topic(chat: ChatApi, args: list[str]) -> None:
    """/topic [TEXT]"""
    room = _current(chat)
    if not args:
        topic = chat.topics.get(room, "")
        chat.notice(f"topic of #{room}: {topic}" if topic else f"#{room} has no topic")
        return
    text = "" if args[0] == "-delete" else args[0]

    def done(reply: Frame) -> None:
        chat.topics[room] = str(reply.get("topic", text))
        chat.notice(f"topic of #{room} set" if text else f"topic of #{room} cleared")

    chat.request("topic", done, room=room, topic=text)


@COMMANDS.command("me", [Param("ACTION", "text", rest=True)], "send an action: * you ACTION")
def cmd_me(chat: ChatApi, args: list[str]) -> None:
    """/me ACTION  (sent as the text "/me ACTION", which clients show as an action)"""
    chat.say(f"/me {args[0]}")


@COMMANDS.command("quit", [], "leave the chat (Ctrl-D does the same)", aliases=["exit"])
def cmd_quit(chat: ChatApi, args: list[str]) -> None:
    """/quit"""
    chat.quit()


@COMMANDS.command("help", [Param("COMMAND", "command", optional=True)], "list the commands")
def cmd_help(chat: ChatApi, args: list[str]) -> None:
    """/help [COMMAND]"""
    if args:
        cmd = COMMANDS.lookup(args[0].lstrip("/"))
        if cmd is None:
            raise UsageError(f"unknown command /{args[0].lstrip('/')}")
        chat.notice(f"{cmd.syntax}  {cmd.summary}")
        if cmd.aliases:
            chat.notice("also: " + ", ".join(f"/{alias}" for alias in cmd.aliases))
        return
    for line in COMMANDS.help_lines():
        chat.notice(line)


# -- Tab completion -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Names:
    """What completion can offer: every known room, the joined ones, known users."""

    rooms: Iterable[str] = ()
    joined: Iterable[str] = ()
    users: Iterable[str] = ()


def _matches(prefix: str, words: Iterable[str]) -> list[str]:
    folded = prefix.lower()
    return sorted({w for w in words if w.lower().startswith(folded)}, key=str.lower)


def complete(text: str, names: Names, registry: Registry = COMMANDS) -> tuple[int, list[str]]:
    """Completions for the text before the cursor: (start of the word, replacements).

    `/jo` completes commands; the arguments of a command complete by the
    parameter's kind; in a message `#ra` completes rooms and any other word
    usernames, with `: ` added when the name starts the line.
    """
    start = max(text.rfind(" "), text.rfind("\t")) + 1
    word = text[start:]
    if text.startswith("/") and not text.startswith("//"):
        if start == 0:
            return 0, [f"/{name} " for name in _matches(word[1:], registry.names())]
        cmd = registry.lookup(text[1:].split(" ", 1)[0])
        if cmd is None:
            return start, []
        index = len(text[:start].split()) - 1
        if index >= len(cmd.params) or (index > 0 and cmd.params[index - 1].rest):
            return start, []
        kind = cmd.params[index].kind
        return start, _complete_kind(kind, word, names, registry)
    if not word:
        return start, []
    if word.startswith("#"):
        return start, [f"#{room}" for room in _matches(word[1:], names.rooms)]
    suffix = ": " if start == 0 else " "
    return start, [user + suffix for user in _matches(word, names.users)]


def _complete_kind(kind: ArgKind, word: str, names: Names, registry: Registry) -> list[str]:
    hash_ = "#" if word.startswith("#") else ""
    bare = word[len(hash_) :]
    if kind == "room":
        return [hash_ + room + " " for room in _matches(bare, names.rooms)]
    if kind == "joined":
        return [hash_ + room + " " for room in _matches(bare, names.joined)]
    if kind == "user":
        return [user + " " for user in _matches(word, names.users)]
    if kind == "command":
        return [name + " " for name in _matches(word.lstrip("/"), registry.commands)]
    return []


class ChatCompleter(Completer):
    """prompt_toolkit's view of `complete`; `names` is asked afresh on every Tab."""

    def __init__(self, names: Callable[[], Names], registry: Registry = COMMANDS) -> None:
        self._names = names
        self._registry = registry

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        text = document.text_before_cursor
        start, candidates = complete(text, self._names(), self._registry)
        for candidate in candidates:
            yield Completion(
                candidate, start_position=start - len(text), display=candidate.rstrip(": ")
            )
