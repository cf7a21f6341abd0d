"""chatd's events as IRC lines, and the few helpers every reply uses.

A `Renderer` is shared by every IRC connection of the server and keeps no
per-connection state: what it makes depends only on the event and the
`Flags` of the client (its tag capabilities), so Outgoing caches it under
("irc", flags) and clients alike share the bytes. Labels and batches,
which are per connection, are added to finished lines by `add_tag` and
`labeled`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from msgspec import UnsetType

from chatd.events import AnyEvent, ErrorEvent, Joined, Parted, Shutdown, TopicChanged
from chatd.irc.away import AwayChanged
from chatd.irc.caps import Flags
from chatd.irc.codec import MAX_LINE_BYTES, encode_line, escape_value
from chatd.irc.names import GUEST_PREFIX, channel_of, msgid_of, nick_of
from chatd.irc.text import ME, to_irc
from chatd.records import Message

USER_HOST = "chatd"  # why: chatd knows accounts, not hosts; one host keeps masks short
GUEST_HOST = "guest"  # a guest's mask says so: guest-bob!bob@guest
# why: a deleted message stays in history as a placeholder (PROTOCOL.md); IRC cannot draw one
DELETED_PLACEHOLDER = "[message deleted]"
# why: the longest single-line text the fast path may send without measuring it in bytes
# (a character is at most 4 bytes of UTF-8).
_CRLF = b"\r\n"


class Renderer:
    """Events and server lines in IRC, for a server name and a msgid prefix."""

    def __init__(self, server: str, msgid_prefix: Callable[[], str]) -> None:
        self.server = server
        self._msgid_prefix = msgid_prefix
        self._sources: dict[str, str] = {}

    # sources and server lines

    def source(self, username: str) -> str:
        """`nick!user@host` of a chatd user."""
        found = self._sources.get(username)
        if found is None:
            nick = nick_of(username)
            if username.startswith(GUEST_PREFIX):
                found = f"{nick}!{nick[len(GUEST_PREFIX) :]}@{GUEST_HOST}"
            else:
                found = f"{nick}!{nick}@{USER_HOST}"
            if len(self._sources) < 100_000:  # why: bounded; names are few but not trusted
                self._sources[username] = found
        return found

    def numeric(self, code: str, target: str, *params: str) -> bytes:
        """`:server CODE target params...`: a numeric to the client named `target`."""
        return encode_line(code, [target, *params], self.server)

    def line(self, verb: str, *params: str, tags: dict[str, str] | None = None) -> bytes:
        """A line from the server itself (PONG, CAP, ACK, FAIL, BATCH)."""
        return encode_line(verb, list(params), self.server, tags)

    def msgid(self, message_id: int) -> str:
        return msgid_of(self._msgid_prefix(), message_id)

    # events

    def event(self, event: AnyEvent, flags: Flags) -> bytes:
        """The lines of one event for clients with these flags; b"" for one IRC does not show."""
        if isinstance(event, Message):
            return self.message(event, flags)
        if isinstance(event, Joined):
            return encode_line("JOIN", [channel_of(event.room)], self.source(event.user))
        if isinstance(event, Parted):
            return encode_line("PART", [channel_of(event.room)], self.source(event.user))
        if isinstance(event, TopicChanged):
            return encode_line(
                "TOPIC", [channel_of(event.room), event.topic], self.source(event.user)
            )
        if isinstance(event, ErrorEvent):
            return encode_line("ERROR", [f"Closing link: {event.message}"])
        if isinstance(event, Shutdown):
            return encode_line("ERROR", [f"Closing link: {event.reason}"])
        if isinstance(event, AwayChanged):
            params = [event.message] if event.message else []
            return encode_line("AWAY", params, self.source(event.user))
        return b""

    def message(self, message: Message, flags: Flags, verb: str = "PRIVMSG") -> bytes:
        """A stored message as one line, or several when it is long or has line breaks.

        `msgid` goes on the first line only, `time` and `account` on each.
        """
        target = channel_of(message.room) if message.room is not None else nick_of(message.to or "")
        source = self.source(message.user)
        if message.deleted is True:
            text = DELETED_PLACEHOLDER
        elif isinstance(message.file, UnsetType):
            text = message.text
        else:
            text = _with_file(message)
        head = f":{source} {verb} {target} :"
        if (
            "\n" not in text
            and len(text) * 4 + len(head) + 2 <= MAX_LINE_BYTES
            and not text.startswith(ME)
        ):
            body = (head + text).encode("utf-8") + _CRLF  # the common case: one short line
            return self._tags(message, flags, True) + body if flags.tagged else body
        pieces = to_irc(text, len(head.encode("utf-8")) + 2)
        lines = []
        for index, piece in enumerate(pieces):
            body = (head + piece).encode("utf-8") + _CRLF
            lines.append(self._tags(message, flags, index == 0) + body if flags.tagged else body)
        return b"".join(lines)

    def _tags(self, message: Message, flags: Flags, first: bool) -> bytes:
        tags = []
        if flags.time:
            tags.append(f"time={message.ts}")
        if flags.msgid and first:
            tags.append(f"msgid={self.msgid(message.id)}")
        if flags.account and not message.user.startswith(GUEST_PREFIX):
            tags.append(f"account={escape_value(message.user)}")
        return ("@" + ";".join(tags) + " ").encode("utf-8") if tags else b""


def _with_file(message: Message) -> str:
    """A file announcement's text: the caption (or the name), and what the file is."""
    file = message.file
    assert not isinstance(file, UnsetType)
    note = f"[file #{file.id}: {file.name}, {file.size} bytes, {file.mime}; fetch it with chat]"
    return note if message.text == file.name else f"{message.text} {note}"


def lines_of(data: bytes) -> Iterator[bytes]:
    """The lines of some rendered bytes, each with its CRLF."""
    start = 0
    while start < len(data):
        end = data.find(_CRLF, start)
        end = len(data) if end < 0 else end + 2
        yield data[start:end]
        start = end


def add_tag(line: bytes, tag: str) -> bytes:
    """`line` with one more tag (`key=value`, already escaped) in front of the others."""
    raw = tag.encode("utf-8")
    if line.startswith(b"@"):
        return b"@" + raw + b";" + line[1:]
    return b"@" + raw + b" " + line


def has_tag(line: bytes, key: str) -> bool:
    if not line.startswith(b"@"):
        return False
    head = line[1 : line.find(b" ")]
    return any(item.split(b"=", 1)[0] == key.encode() for item in head.split(b";"))


def in_batch(data: bytes, batch: str) -> bytes:
    """Every line of `data` not already in a batch, put in `batch`."""
    tag = f"batch={batch}"
    return b"".join(
        line if has_tag(line, "batch") else add_tag(line, tag) for line in lines_of(data)
    )


def wrap_batch(renderer: Renderer, batch: str, kind: str, data: bytes, *params: str) -> bytes:
    """`data` inside `BATCH +batch kind params...` and `BATCH -batch`."""
    return (
        renderer.line("BATCH", f"+{batch}", kind, *params)
        + in_batch(data, batch)
        + renderer.line("BATCH", f"-{batch}")
    )


def labeled(renderer: Renderer, data: bytes, label: str, batch: str) -> bytes:
    """A command's whole response labeled (IRCv3 labeled-response).

    No line: ACK. One line: that line with the label. More: a
    labeled-response batch named `batch`, its start line labeled.
    """
    tag = f"label={escape_value(label)}"
    if not data:
        return add_tag(renderer.line("ACK"), tag)
    first_end = data.find(_CRLF) + 2
    if first_end >= len(data):
        return add_tag(data, tag)
    start = add_tag(renderer.line("BATCH", f"+{batch}", "labeled-response"), tag)
    return start + in_batch(data, batch) + renderer.line("BATCH", f"-{batch}")
