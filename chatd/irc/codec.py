"""The IRC line format (modern.ircdocs.horse, IRCv3 message-tags) as pure code.

Bytes go in, lines come out, in the manner of chatd/protocol.py: no
sockets, threads or logging. `LineDecoder` splits a byte stream into lines
and enforces the size limits; `parse` turns one line into a `Line`;
`format_line` and `escape_value` write them. Clients send lines ending in
CRLF, or LF alone; both are read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

# why: RFC 1459's limit, CRLF included, for everything after the tags.
MAX_LINE_BYTES = 512
# why: IRCv3 message-tags: a client's tags take at most 4094 bytes, plus `@` and a space.
MAX_CLIENT_TAG_BYTES = 4096
# why: past this many bytes without a line end no valid line can be under way.
MAX_BUFFERED_BYTES = MAX_LINE_BYTES + MAX_CLIENT_TAG_BYTES

_TAG_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_TAG_ESCAPES = str.maketrans({";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"})


class TooLong:
    """What the decoder yields in place of a line over the limits (417 ERR_INPUTTOOLONG)."""

    __slots__ = ()


TOO_LONG = TooLong()


@dataclass(slots=True)
class Line:
    """One IRC line: tags (values unescaped, "" when absent), source, verb, parameters.

    `verb` is as sent; commands compare it upper-cased. `valid_utf8` is False
    when the bytes were not UTF-8: the text then holds U+FFFD where they
    were, and commands that relay text refuse it (FAIL ... INVALID_UTF8).
    """

    verb: str
    params: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    source: str | None = None
    valid_utf8: bool = True


class LineDecoder:
    """Splits a byte stream into lines (line end removed), skipping empty ones.

    A line over the limits becomes TOO_LONG, once, and its bytes are read
    away up to its end; so a peer that never sends a line end cannot grow
    the buffer beyond MAX_BUFFERED_BYTES.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skipping = False  # reading away the rest of a line already reported too long

    def feed(self, data: bytes) -> Iterator[bytes | TooLong]:
        self._buffer += data
        start = 0
        buffer = self._buffer
        try:
            while (end := buffer.find(b"\n", start)) >= 0:
                line = bytes(buffer[start:end])
                start = end + 1
                if self._skipping:
                    self._skipping = False
                    continue
                if line.endswith(b"\r"):
                    line = line[:-1]
                if not line.strip(b" "):
                    continue
                yield TOO_LONG if too_long(line) else line
            if len(buffer) - start > MAX_BUFFERED_BYTES:
                start = len(buffer)
                if not self._skipping:
                    self._skipping = True
                    yield TOO_LONG
        finally:
            del buffer[:start]


def too_long(line: bytes) -> bool:
    """Whether a line (without its line end) breaks the tag or the body limit."""
    body = line
    if line.startswith(b"@"):
        space = line.find(b" ")
        if space < 0:
            return len(line) + 1 > MAX_CLIENT_TAG_BYTES
        if space + 1 > MAX_CLIENT_TAG_BYTES:
            return True
        body = line[space + 1 :].lstrip(b" ")
    return len(body) + 2 > MAX_LINE_BYTES


def unescape_value(value: str) -> str:
    """A tag value as meant: `\\:` is `;`, `\\s` a space, an unknown escape the character."""
    if "\\" not in value:
        return value
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        following = next(chars, "")
        out.append(_TAG_UNESCAPES.get(following, following))
    return "".join(out)


def escape_value(value: str) -> str:
    return value.translate(_TAG_ESCAPES)


def parse_tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in text.split(";"):
        if not item:
            continue
        key, _eq, value = item.partition("=")
        tags[key] = unescape_value(value)
    return tags


def parse(data: bytes) -> Line | None:
    """One line as a Line; None when it holds no command."""
    try:
        text = data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        valid = False
    return parse_text(text, valid)


def parse_text(text: str, valid_utf8: bool = True) -> Line | None:
    rest = text.lstrip(" ")
    tags: dict[str, str] = {}
    source = None
    if rest.startswith("@"):
        head, _sp, rest = rest.partition(" ")
        tags = parse_tags(head[1:])
        rest = rest.lstrip(" ")
    if rest.startswith(":"):
        head, _sp, rest = rest.partition(" ")
        source = head[1:]
        rest = rest.lstrip(" ")
    verb, _sp, rest = rest.partition(" ")
    if not verb:
        return None
    # why: the first " :" is where the trailing parameter starts (a middle one holds no
    # space), so one partition and one split take a line apart
    if rest.startswith(":"):
        return Line(verb, [rest[1:]], tags, source, valid_utf8)
    middle, trailing, last = rest.partition(" :")
    params = [param for param in middle.split(" ") if param]
    if trailing:
        params.append(last)
    return Line(verb, params, tags, source, valid_utf8)


def split_source(source: str) -> tuple[str, str, str]:
    """`nick!user@host` as (nick, user, host); the parts it lacks are ""."""
    rest, _at, host = source.partition("@")
    nick, _bang, user = rest.partition("!")
    return nick, user, host


def format_tags(tags: dict[str, str]) -> str:
    """`@a=b;c` (values escaped) and a space, or "" for no tags."""
    if not tags:
        return ""
    items = [key if value == "" else f"{key}={escape_value(value)}" for key, value in tags.items()]
    return "@" + ";".join(items) + " "


def format_line(
    verb: str, params: list[str] | tuple[str, ...] = (), source: str | None = None
) -> str:
    """A line without tags or its end: the last parameter trailing when it must be."""
    parts = [f":{source}", verb] if source else [verb]
    if params:
        *middle, last = params
        parts.extend(middle)
        if not last or " " in last or last.startswith(":"):
            last = ":" + last
        parts.append(last)
    return " ".join(parts)


def encode_line(
    verb: str,
    params: list[str] | tuple[str, ...] = (),
    source: str | None = None,
    tags: dict[str, str] | None = None,
) -> bytes:
    """A full line, tags first and CRLF last, as bytes."""
    prefix = format_tags(tags) if tags else ""
    return (prefix + format_line(verb, params, source) + "\r\n").encode("utf-8")
