"""Slash commands as a table: each declares its syntax and help, and one place checks them.

`/help` is generated from the registry and Tab completion (completion.py)
reads it to know what each argument is (its `ArgKind`: a room, a joined
room, a user, a command, a path, a file id), so a new command is one
decorated function here and nothing else. The dependency goes one way:
completion imports this table, never the reverse. Handlers are headed by
their syntax and talk to the chat only through `ChatApi`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from chatd.errors import ChatError
from chatd.names import normalize_room
from client.files import take_word

Frame = dict[str, Any]
# What a parameter is, which tells Tab completion what to offer for it.
ArgKind = Literal["room", "joined", "user", "command", "text", "number", "target", "path", "file"]
HISTORY_DEFAULT = 20
HISTORY_MAX = 500


class ChatApi(Protocol):
    """What a command may do to the chat (implemented by client.chat.Chat)."""

    current: str | None
    topics: dict[str, str]
    key_rows: list[tuple[str, str]]

    def joined(self) -> list[str]: ...
    def request(
        self, op: str, on_ok: Callable[[Frame], None] | None = None, **args: Any
    ) -> None: ...
    def say(self, text: str) -> None: ...
    def notice(self, text: str) -> None: ...
    def error(self, text: str) -> None: ...
    def show_table(self, rows: list[tuple[str, str]]) -> None: ...
    def entered(self, reply: Frame) -> None: ...
    def left(self, room: str) -> None: ...
    def switch(self, room: str) -> None: ...
    def show_own(self, reply: Frame) -> None: ...
    def show_rooms(self, reply: Frame) -> None: ...
    def show_who(self, reply: Frame) -> None: ...
    def older(self, room: str, count: int) -> None: ...
    def quit(self) -> None: ...
    def reconnect(self) -> None: ...
    def upload(
        self, path: str, *, room: str | None, to: str | None, caption: str | None
    ) -> None: ...
    def download(self, file_id: int, dest: str | None) -> None: ...
    def open_file(self, file_id: int) -> None: ...
    def show_unread(self, reply: Frame) -> None: ...
    def show_search(self, query: str, reply: Frame) -> None: ...
    def reply_to(self, message_id: int, text: str) -> None: ...
    def show_edit_reply(self, reply: Frame) -> None: ...
    def deleted_by_me(self, message_id: int) -> None: ...
    def set_ids(self, on: bool) -> None: ...


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
    usage: str | None = None  # when the parameters alone cannot say it

    @property
    def syntax(self) -> str:
        if self.usage is not None:
            return self.usage
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
        self,
        name: str,
        params: Sequence[Param],
        summary: str,
        aliases: Sequence[str] = (),
        usage: str | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            cmd = Command(name, tuple(params), summary, handler, tuple(aliases), usage)
            self.commands[name] = cmd
            for alias in (name, *aliases):
                self._by_alias[alias] = cmd
            return handler

        return register

    def lookup(self, name: str) -> Command | None:
        return self._by_alias.get(name.lower())

    def names(self) -> list[str]:
        return sorted(self._by_alias)

    def help_rows(self) -> list[tuple[str, str]]:
        """/help as (syntax, summary) rows, laid out by whoever shows them."""
        rows = [(cmd.syntax, cmd.summary) for cmd in self.commands.values()]
        rows.append(("//TEXT", "send a line that begins with /"))
        rows.append(("TEXT", "send TEXT to the current room"))
        return rows


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
    chat.older(room, count)


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


UPLOAD_USAGE = "/upload [@USER] PATH [CAPTION]"


@COMMANDS.command(
    "upload",
    [Param("PATH", "target", rest=True)],
    "send a file to the current room, or to @USER",
    usage=UPLOAD_USAGE,
)
def cmd_upload(chat: ChatApi, args: list[str]) -> None:
    """/upload [@USER] PATH [CAPTION]  (quote a PATH with spaces, or escape them with \\)"""
    rest, to = args[0], None
    if rest.startswith("@"):
        word, _, rest = rest.partition(" ")
        to = word[1:]
    try:
        path, caption = take_word(rest)
    except ValueError as exc:
        raise UsageError(f"{exc}: {UPLOAD_USAGE}") from None
    if not path or to == "":
        raise UsageError(f"usage: {UPLOAD_USAGE}")
    room = None if to is not None else _current(chat)
    chat.upload(path, room=room, to=to, caption=caption or None)


def _file_id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise UsageError(f"not a file id: {text} (the number after /download in a file message)")
    return int(text)


@COMMANDS.command(
    "download",
    [Param("ID", "file"), Param("DEST", "path", optional=True, rest=True)],
    "save a shared file (into ~/Downloads, or the current directory)",
)
def cmd_download(chat: ChatApi, args: list[str]) -> None:
    """/download ID [DEST]  (DEST: a directory, or a file path)"""
    file_id = _file_id(args[0])
    dest = None
    if len(args) > 1:
        try:
            dest, extra = take_word(args[1])
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if extra:
            raise UsageError("usage: /download ID [DEST] (quote a DEST with spaces)")
    chat.download(file_id, dest or None)


@COMMANDS.command("open", [Param("ID", "file")], "download a shared file and open it")
def cmd_open(chat: ChatApi, args: list[str]) -> None:
    """/open ID"""
    chat.open_file(_file_id(args[0]))


@COMMANDS.command("unread", [], "list the conversations with unread messages")
def cmd_unread(chat: ChatApi, args: list[str]) -> None:
    """/unread"""
    chat.request("unread", chat.show_unread)


SEARCH_USAGE = "/search [-room ROOM] WORDS"


@COMMANDS.command(
    "search",
    [Param("WORDS", "text", rest=True)],
    'search your rooms and direct messages ("a phrase" in quotes; -room ROOM for one room)',
    usage=SEARCH_USAGE,
)
def cmd_search(chat: ChatApi, args: list[str]) -> None:
    """/search [-room ROOM] WORDS"""
    words, where = args[0], {}
    if words.startswith("-room "):
        _flag, _, rest = words.partition(" ")
        room, _, words = rest.strip().partition(" ")
        where["room"] = _room(room)
    words = words.strip()
    if not words:
        raise UsageError(f"usage: {SEARCH_USAGE}")
    chat.request("search", lambda reply: chat.show_search(words, reply), query=words, **where)


def _message_id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise UsageError(f"not a message id: {text} (/ids on shows them)")
    return int(text)


ID = Param("ID", "number")


@COMMANDS.command("reply", [ID, Param("TEXT", "text", rest=True)], "answer message ID")
def cmd_reply(chat: ChatApi, args: list[str]) -> None:
    """/reply ID TEXT  (in the room or conversation of message ID)"""
    chat.reply_to(_message_id(args[0]), args[1])


@COMMANDS.command(
    "edit", [ID, Param("TEXT", "text", rest=True)], "replace the text of your message ID"
)
def cmd_edit(chat: ChatApi, args: list[str]) -> None:
    """/edit ID TEXT"""
    chat.request("edit", chat.show_edit_reply, message_id=_message_id(args[0]), text=args[1])


@COMMANDS.command("delete", [ID], "delete your message ID for good")
def cmd_delete(chat: ChatApi, args: list[str]) -> None:
    """/delete ID"""
    message_id = _message_id(args[0])
    chat.request("delete", lambda reply: chat.deleted_by_me(message_id), message_id=message_id)


@COMMANDS.command("ids", [Param("on|off", "text", optional=True)], "show message ids, or stop")
def cmd_ids(chat: ChatApi, args: list[str]) -> None:
    """/ids [on|off]  (on when neither is given)"""
    word = args[0].lower() if args else "on"
    if word not in ("on", "off"):
        raise UsageError("usage: /ids [on|off]")
    chat.set_ids(word == "on")


@COMMANDS.command(
    "quit",
    [Param("REASON", "text", optional=True, rest=True)],
    "leave the chat (Ctrl-D does the same)",
    aliases=["exit"],
)
def cmd_quit(chat: ChatApi, args: list[str]) -> None:
    """/quit [REASON]  (the protocol's quit carries no reason, so it is only accepted)"""
    if args:
        chat.notice("the reason is not sent: chatd has no quit messages")
    chat.quit()


@COMMANDS.command("reconnect", [], "connect to the server again now")
def cmd_reconnect(chat: ChatApi, args: list[str]) -> None:
    """/reconnect  (also cuts a backoff wait short)"""
    chat.reconnect()


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
    chat.show_table(COMMANDS.help_rows() + chat.key_rows)
