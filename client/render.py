"""Pure formatting of what the `chat` client shows: no sockets, no terminal, no clock.

Everything received from the network passes through `sanitize` before it is
put into a line, because the terminal would obey any escape sequence a peer
(or a broken server) managed to slip in: the server's text rules are a
promise about its own checks, not a guarantee about the bytes we receive.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, tzinfo
from typing import Any, TypeGuard
from urllib.parse import quote

from chatd.errors import ErrorCode
from chatd.events import EventName
from chatd.names import parse_ts
from client.errors import AnyErrorCode, ClientErrorCode, error_code
from client.layout import PLAIN as PLAIN  # re-exported
from client.layout import Run, hang, paint, text_width
from client.layout import Style as Style  # re-exported

# Escape sequences are removed whole, so that no "[31m" debris is left behind.
_ESCAPES = re.compile(
    r"""
      \x1b\[[0-?]*[ -/]*[@-~]?              # CSI ... final byte
    | \x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?   # OSC ... BEL or ST
    | \x1b[PX^_][^\x1b\x9c]*(?:\x1b\\|\x9c)?        # DCS, SOS, PM, APC ... ST
    | \x1b[ -/]*[0-~]?                      # any other ESC sequence (nF, Fp, Fe, Fs)
    | \x9b[0-?]*[ -/]*[@-~]?                # 8-bit CSI
    | [\x90\x98\x9d\x9e\x9f][^\x1b\x9c\x07]*(?:\x9c|\x07|\x1b\\)?   # 8-bit DCS/SOS/OSC/PM/APC
    """,
    re.VERBOSE,
)
# why: bidirectional overrides and isolates can make a line display as
# something other than what was sent ("Trojan Source"); they are Cf, not Cc.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_LINE_BREAKS = frozenset("\u2028\u2029\x85")
TAB = "    "

# Readable on dark and light backgrounds alike; black and white are left out.
NAME_COLOURS = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)
DIM = "2"
BOLD = "1"
ERROR = "1;31"
NOTICE = "36"
# a message that mentions us: reverse video reads on every background, even without colour names
HIGHLIGHT = "1;7"
QUOTE_CHARS = 50
# Runs of printable non-space characters after http:// or https://; the text
# they are found in is already sanitized, so it holds no ESC or control character.
_URL = re.compile(r"\bhttps?://[^\s<>\"'`\x00-\x1f\x7f-\x9f]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?*"
_PAIRS = {")": "(", "]": "[", "}": "{"}
# why: OSC 8 allows only bytes 32-126 in the URI; anything else is percent-encoded.
_URL_SAFE = "".join(chr(c) for c in range(33, 127))
PROGRESS_WIDTH = 20
NOTICE_MARK = "-!-"
NOTICE_WIDTH = len(NOTICE_MARK) + 1
COLUMN_GAP = 2

# A line of text from chat.py, one per client-side problem, keyed by error code.
ERROR_TEXT: Mapping[AnyErrorCode, str] = {
    ErrorCode.BAD_REQUEST: "the server did not understand the request",
    ErrorCode.UNKNOWN_OP: "the server does not know that request",
    ErrorCode.AUTH_REQUIRED: "log in first",
    ErrorCode.INVALID_USERNAME: (
        "a username is 2-32 characters of A-Z a-z 0-9 _ . -, starting with a letter, digit or _"
    ),
    ErrorCode.INVALID_PASSWORD: "a password is 8-72 bytes",
    ErrorCode.USERNAME_TAKEN: "that username is taken",
    ErrorCode.REGISTRATION_CLOSED: "registration is closed on this server",
    ErrorCode.INVALID_CREDENTIALS: "wrong username or password",
    ErrorCode.ALREADY_LOGGED_IN: "already logged in",
    ErrorCode.ACCOUNT_DISABLED: "this account is disabled",
    ErrorCode.RATE_LIMITED: "slow down: too many requests",
    ErrorCode.INVALID_ROOM: "a room name is 1-32 characters of a-z 0-9 _ -",
    ErrorCode.NO_SUCH_ROOM: "there is no such room",
    ErrorCode.NOT_IN_ROOM: "you are not in that room",
    ErrorCode.INVALID_TEXT: "a message is 1-4000 characters without control characters",
    ErrorCode.NO_SUCH_USER: "there is no such user",
    ErrorCode.INTERNAL: "the server had an internal error",
    ErrorCode.INVALID_NAME: "a file name is 1-255 characters without / \\ or control characters",
    ErrorCode.NO_SUCH_UPLOAD: "the upload was discarded by the server; start again",
    ErrorCode.CHECKSUM_MISMATCH: "the bytes did not arrive intact; start again",
    ErrorCode.NO_SUCH_FILE: "there is no such file, or you may not see it",
    ClientErrorCode.NOT_SENT: "not sent: the connection was lost",
}
# Codes whose `message` says more than our text for them, which is then only
# for a reply without one: the server's names the room, the user, the size,
# or what is limited and for how long; not_sent's says why it was not sent.
MESSAGE_FIRST: frozenset[AnyErrorCode] = frozenset(
    {
        ErrorCode.INVALID_ROOM,
        ErrorCode.INVALID_TEXT,
        ErrorCode.NO_SUCH_USER,
        ErrorCode.NO_SUCH_ROOM,
        ErrorCode.NOT_IN_ROOM,
        ErrorCode.FILE_TOO_LARGE,
        ErrorCode.RATE_LIMITED,
        ClientErrorCode.NOT_SENT,
    }
)
# chatd ends a rate_limited message with "; try again in N s"; no second hint then.
_SAYS_WHEN = re.compile(r"\btry again\b", re.IGNORECASE)


_NOTICE_HEAD = [Run(NOTICE_MARK, NOTICE), Run(" ")]
_DM_STAR = Run("*", BOLD)


def sanitize(text: object, *, keep_newlines: bool = False) -> str:
    """Received text made safe to print: no escape sequence, no control character.

    Tabs become spaces; with keep_newlines, `\n` survives so that a multi-line
    message can be laid out by the caller, otherwise it becomes a space.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = _ESCAPES.sub("", text).replace("\t", TAB)
    kept: list[str] = []
    for ch in text:
        if ch == "\n" or ch in _LINE_BREAKS:
            kept.append("\n" if keep_newlines else " ")
        elif unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS:
            continue
        else:
            kept.append(ch)
    return "".join(kept)


def name_colour(name: str) -> int:
    """The SGR colour of a username, the same in every session and on every machine."""
    # why: crc32, not hash(): str hashes are salted per process.
    return NAME_COLOURS[zlib.crc32(name.lower().encode("utf-8")) % len(NAME_COLOURS)]


def local_time(ts: object, tz: tzinfo | None = None) -> datetime | None:
    """A message's RFC 3339 `ts` in local time (or `tz`); None if it is not a timestamp."""
    if not isinstance(ts, str):
        return None
    try:
        ms = parse_ts(ts)
        return datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)
    except (ValueError, OverflowError, OSError):
        return None


def clock(moment: datetime | None) -> str:
    return "--:--" if moment is None else f"{moment:%H:%M}"


def day_line(day: date, style: Style) -> str:
    """The separator printed when the date of the shown lines changes."""
    return style.paint(DIM, f"-- {day:%A %d %B %Y} --")


def notice_lines(
    text: str, style: Style, *, width: int | None = None, error: bool = False
) -> list[str]:
    """A line from the client itself (not from a peer); `text` is already safe.

    Wrapped to `width`, continuation lines under the text.
    """
    if error:
        return hang([Run(NOTICE_MARK + " ", ERROR)], [[Run(text, ERROR)]], width, style)
    return hang(_NOTICE_HEAD, [[Run(text)]], width, style)


def counted(count: int, noun: str) -> str:
    """`1 member`, `2 members`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def human_size(size: int) -> str:
    """A byte count for people: `512 B`, `2.0 KiB`, `1.2 MiB` (binary units, one decimal)."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        # why: 1048575 bytes is 1023.999 KiB, which would print as "1024.0 KiB"
        if round(value, 1) < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def linkify(text: str, style: Style) -> str:
    """Sanitized text with each http(s) URL made an underlined OSC 8 hyperlink.

    Only for a terminal (`style.links`). The text must already be sanitized:
    the escape sequences here are the only ones in the result, and the URL
    inside them is percent-encoded down to printable ASCII.
    """
    return paint(text_runs(text), style)


def text_runs(text: str) -> list[Run]:
    """Sanitized text as runs in which each http(s) URL is a link to itself.

    A URL cut by wrapping stays a link to the whole URL on every line.
    """
    runs = []
    done = 0
    for found in _URL.finditer(text):
        url = _trim_url(found.group(0))
        runs.append(Run(text[done : found.start()]))
        runs.append(Run(url, link=quote(url, safe=_URL_SAFE)))
        done = found.start() + len(url)
    runs.append(Run(text[done:]))
    return [run for run in runs if run.text]


def _trim_url(url: str) -> str:
    """Drop trailing punctuation that ends the sentence, not the URL (and unmatched closers)."""
    while url:
        last = url[-1]
        if last in _URL_TRAILING or (last in _PAIRS and url.count(last) > url.count(_PAIRS[last])):
            url = url[:-1]
        else:
            break
    return url


def progress_bar(done: int, total: int, width: int = PROGRESS_WIDTH) -> str:
    """`[#########...........]  45%  1.3 MiB / 3.0 MiB`: a transfer's progress as text."""
    fraction = 1.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
    filled = int(fraction * width)
    bar = "#" * filled + "." * (width - filled)
    return f"[{bar}] {fraction * 100:3.0f}%  {human_size(done)} / {human_size(total)}"


def file_lines(
    message: Mapping[str, Any],
    *,
    me: str,
    current_room: str | None,
    style: Style,
    tz: tzinfo | None = None,
    width: int | None = None,
) -> list[str]:
    """A file message: `HH:MM alice shared cat.png (2.0 KiB, image/png) - /download 3`.

    The caption, when it says more than the file name, follows on lines
    indented under the time, where the file line continues when it wraps.
    Direct messages are marked as in `message_lines`.
    """
    file = message.get("file")
    file = file if isinstance(file, Mapping) else {}
    user = sanitize(message.get("user")) or "?"
    name = sanitize(file.get("name")) or "?"
    size = file.get("size")
    size_text = human_size(size) if _is_count(size) else "? B"
    mime = sanitize(file.get("mime")) or "application/octet-stream"
    file_id = file.get("id")
    room = message.get("room")
    if room is None:
        if user.lower() == me.lower():
            who = [Run("-> *"), _name(sanitize(message.get("to")) or "?"), Run("* you")]
        else:
            who = [_DM_STAR, _name(user), _DM_STAR]
    else:
        room_name = sanitize(room)
        where = [] if room_name == current_room else [Run(f"#{room_name}", BOLD), Run(" ")]
        who = [*where, _name(user)]
    fetch = f"/download {file_id}" if _is_count(file_id) else "(no file id)"
    shared = [*who, Run(f" shared {name} ({size_text}, {mime}) - "), Run(fetch, BOLD)]
    bodies = [shared]
    caption = sanitize(message.get("text"), keep_newlines=True)
    if caption.strip() and caption != name:
        bodies.extend(text_runs(line) for line in caption.split("\n"))
    return hang(_time_head(message, tz), bodies, width, style)


def _time_head(message: Mapping[str, Any], tz: tzinfo | None) -> list[Run]:
    return [Run(clock(local_time(message.get("ts"), tz)) + " ")]


def _name(name: str) -> Run:
    """A username in its own colour."""
    return Run(name, str(name_colour(name)))


def _count(value: object, noun: str) -> str:
    """`counted` for a number received from the server, which may not be one."""
    return counted(value, noun) if _is_count(value) else f"? {noun}s"


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def mentions_me(message: Mapping[str, Any], me: str) -> bool:
    """The server's `mentions` of the message name us (compared ignoring ASCII case)."""
    names = message.get("mentions")
    if not isinstance(names, list):
        return False
    return any(isinstance(name, str) and name.lower() == me.lower() for name in names)


def calls_me(message: Mapping[str, Any], me: str, words: Sequence[str] = ()) -> bool:
    """A mention of us, or one of our highlight words as a whole word (ignoring case)."""
    if mentions_me(message, me):
        return True
    text = message.get("text")
    if not words or not isinstance(text, str):
        return False
    return any(_word_in(word, text) for word in words if word)


def _word_in(word: str, text: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


def quote_text(message: Mapping[str, Any] | None, reply_to: object) -> str:
    """The short quote a reply shows of what it answers: `alice: first line…`."""
    if message is None:
        return f"in reply to {reply_to}" if _is_count(reply_to) else "in reply"
    user = sanitize(message.get("user")) or "?"
    if message.get("deleted") is True:
        return f"{user}: (message deleted)"
    first = sanitize(message.get("text")).strip()
    if len(first) > QUOTE_CHARS:
        first = first[: QUOTE_CHARS - 1].rstrip() + "…"
    return f"{user}: {first}"


def message_lines(
    message: Mapping[str, Any],
    *,
    me: str,
    current_room: str | None,
    style: Style,
    tz: tzinfo | None = None,
    width: int | None = None,
    show_id: bool = False,
    quote: str | None = None,
    highlights: Sequence[str] = (),
) -> list[str]:
    """One room or direct message as display lines: `HH:MM [#room] <user> text`.

    A room other than the current one gets its `#room`; a direct message shows
    `*from*` when received and `-> *to*` when sent by us; a text starting with
    `/me ` is an action, `* user waves`, after that mark in a direct message
    (`*alice* * alice waves`, `-> *bob* * alice waves`). Continuation lines,
    of a multi-line text or of one wrapped to `width`, are indented under the
    text. A message announcing a file is shown by `file_lines`.

    Conversation state: `show_id` puts the message's id first (`[42]`), for
    /reply, /edit and /delete; `quote` (quote_text) is a first line for a
    reply; an edited text ends `(edited)`, a deleted one is `(message
    deleted)`, and a text that mentions us (or holds one of our `highlights`
    words) is highlighted.
    """
    if isinstance(message.get("file"), Mapping) and message.get("deleted") is not True:
        lines = file_lines(
            message, me=me, current_room=current_room, style=style, tz=tz, width=width
        )
        return _with_id(lines, message, show_id)
    user = sanitize(message.get("user")) or "?"
    text = sanitize(message.get("text"), keep_newlines=True)
    room = message.get("room")
    head = _time_head(message, tz)
    if show_id and _is_count(message.get("id")):
        head = [Run(f"[{message['id']}] ", DIM), *head]
    if room is None:
        if user.lower() == me.lower():
            head += [Run("-> *"), _name(sanitize(message.get("to")) or "?"), Run("* ")]
        else:
            head += [_DM_STAR, _name(user), _DM_STAR, Run(" ")]
    elif (room_name := sanitize(room)) != current_room:
        head += [Run(f"#{room_name}", BOLD), Run(" ")]
    if text.startswith("/me "):
        text = text[4:]
        head += [Run("* "), _name(user), Run(" ")]
    elif room is not None:
        head += [Run("<"), _name(user), Run("> ")]
    bodies = [text_runs(line) for line in text.split("\n")]
    if message.get("deleted") is True:
        bodies = [[Run("(message deleted)", DIM)]]
    elif calls_me(message, me, highlights if user.lower() != me.lower() else ()):
        bodies = [[Run(run.text, HIGHLIGHT, run.link) for run in body] for body in bodies]
    if isinstance(message.get("edited"), str) and message.get("deleted") is not True:
        bodies[-1] = [*bodies[-1], Run(" (edited)", DIM)]
    if quote is not None:
        bodies.insert(0, [Run(f"↳ {quote}", DIM)])
    return hang(head, bodies, width, style)


def _with_id(lines: list[str], message: Mapping[str, Any], show_id: bool) -> list[str]:
    if show_id and lines and _is_count(message.get("id")):
        lines[0] = f"[{message['id']}] {lines[0]}"
    return lines


def unread_lines(reply: Mapping[str, Any], style: Style, *, width: int | None = None) -> list[str]:
    """`#general 12 new, 2 mentions` per room with unread messages; `bob 3 new` per person."""
    rows = []
    for key, label in (("rooms", "#{}"), ("dms", "{}")):
        entries = reply.get(key)
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, Mapping) or not _is_count(entry.get("unread")):
                continue
            unread = entry["unread"]
            if not unread:
                continue
            name = sanitize(entry.get("room" if key == "rooms" else "with"))
            mentions = entry.get("mentions")
            count = f"{'1000+' if unread >= 1000 else unread} new"
            if key == "rooms" and _is_count(mentions) and mentions:
                count += ", " + counted(mentions, "mention")
            rows.append(f"{label.format(name)} {count}")
    return [line for row in rows for line in notice_lines(row, style, width=width)]


def event_lines(
    event: Mapping[str, Any], *, moment: datetime, style: Style, width: int | None = None
) -> list[str]:
    """A join, part or topic event as a dim line (a long topic wraps); [] for other events."""
    kind = event.get("event")
    user = sanitize(event.get("user")) or "?"
    room = sanitize(event.get("room"))
    if kind == EventName.JOIN:
        text = f"{user} joined #{room}"
    elif kind == EventName.PART:
        text = f"{user} left #{room}"
    elif kind == EventName.TOPIC:
        topic = sanitize(event.get("topic"))
        text = (
            f"{user} set the topic of #{room}: {topic}"
            if topic
            else f"{user} cleared the topic of #{room}"
        )
    else:
        return []
    return hang([Run(f"{clock(moment)} -- ", DIM)], [[Run(text, DIM)]], width, style)


def room_header(
    reply: Mapping[str, Any], style: Style, *, width: int | None = None, entered: bool = True
) -> list[str]:
    """What `/join` prints before the history: the room, its topic and who is there.

    `entered`: the stream moved into the room ("now in #room"); a timeline of its
    own only names it.
    """
    room = sanitize(reply.get("room"))
    topic = sanitize(reply.get("topic"))
    members = _names(reply.get("members"))
    online = _names(reply.get("online"))
    who = f"{counted(len(members), 'member')}, {len(online)} online: {', '.join(online)}"
    head = f"now in #{room}" if entered else f"#{room}"
    return [
        *notice_lines(head + (f": {topic}" if topic else ""), style, width=width),
        *notice_lines(who, style, width=width),
    ]


def _names(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [sanitize(name) for name in value]


def who_lines(reply: Mapping[str, Any], style: Style, *, width: int | None = None) -> list[str]:
    """Members of a room, the online ones first and marked with `+`."""
    room = sanitize(reply.get("room"))
    members = _names(reply.get("members"))
    online = set(_names(reply.get("online")))
    ordered = sorted(members, key=lambda name: (name not in online, name.lower()))
    shown = " ".join(("+" if name in online else "") + name for name in ordered)
    return [
        *notice_lines(
            f"#{room}: {counted(len(members), 'member')}, {len(online)} online", style, width=width
        ),
        *notice_lines(shown or "(nobody)", style, width=width),
    ]


def rooms_lines(
    reply: Mapping[str, Any], joined: set[str], style: Style, *, width: int | None = None
) -> list[str]:
    """The room list; `*` marks the rooms we are in."""
    rooms = reply.get("rooms")
    if not isinstance(rooms, list) or not rooms:
        return notice_lines("there are no rooms yet: /join NAME creates one", style, width=width)
    rows = []
    for entry in rooms:
        if not isinstance(entry, Mapping):
            continue
        name = sanitize(entry.get("room"))
        mark = "*" if name in joined else " "
        topic = sanitize(entry.get("topic"))
        counts = f"{_count(entry.get('members'), 'member')}, {_count(entry.get('messages'), 'msg')}"
        rows.append((f"{mark} #{name}", counts + (f"  {topic}" if topic else "")))
    return table_lines(rows, style, width=width)


def table_lines(
    rows: Sequence[tuple[str, str]], style: Style, *, width: int | None = None
) -> list[str]:
    """Two columns of notices (`/help`, `/rooms`), the second wrapped under its own column.

    With a width, the first column takes at most half of it; a first cell
    wider than that gets a line of its own, and its second cell starts on the
    next line, in the column.
    """
    widest = max((text_width(left) for left, _ in rows), default=0)
    column = widest + COLUMN_GAP
    if width is not None:
        column = min(column, max((width - NOTICE_WIDTH) // 2, COLUMN_GAP + 1))
    lines = []
    for left, right in rows:
        room = column - text_width(left)
        if room >= COLUMN_GAP:
            lines += hang([*_NOTICE_HEAD, Run(left + " " * room)], [[Run(right)]], width, style)
        else:
            lines += hang(_NOTICE_HEAD, [[Run(left)]], width, style)
            pad = [Run(" " * (NOTICE_WIDTH + column))]
            lines += hang(pad, [[Run(right)]], width, style)
    return lines


SHUTTING_DOWN = "the server is shutting down"


def shutdown_text(reason: object) -> str:
    """The `shutdown` event in words; a reason that already says it is not said twice."""
    why = sanitize(reason).strip()
    if not why:
        return SHUTTING_DOWN
    if why.lower().startswith(SHUTTING_DOWN):
        return why
    return f"{SHUTTING_DOWN}: {why}"


def error_text(reply: Mapping[str, Any]) -> str:
    """One clear line for an error reply or event.

    Our wording for the code, or the server's where it says more
    (MESSAGE_FIRST); for a code we do not know (a newer server's), the
    server's message, else the code itself.
    """
    code = error_code(reply)
    server_text = sanitize(reply.get("message"))
    ours = ERROR_TEXT.get(code) if code is not None else None
    first, second = (server_text, ours) if code in MESSAGE_FIRST else (ours, server_text)
    text = first or second or sanitize(reply.get("error")) or "unknown error"
    retry = reply.get("retry_after")
    if (
        code is ErrorCode.RATE_LIMITED
        and not _SAYS_WHEN.search(text)
        and isinstance(retry, int | float)
        and not isinstance(retry, bool)
    ):
        text += f"; try again in {max(retry, 0):.0f} s" if retry >= 1 else "; try again shortly"
    return text
