"""Name and text rules of PROTOCOL.md, as pure functions used at the boundary.

Each returns the normalised value or raises the protocol's error, so the rest
of the server only ever sees values that are already valid.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime

from chatd.errors import ChatError, ErrorCode

USERNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{1,31}")
ROOM_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
PASSWORD_MIN_BYTES = 8
# why: bcrypt reads at most 72 bytes; bcrypt 5 raises rather than truncating.
PASSWORD_MAX_BYTES = 72
TEXT_MAX_CHARS = 4000
TOPIC_MAX_CHARS = 300


def is_valid_username(name: str) -> bool:
    return USERNAME_RE.fullmatch(name) is not None


def check_username(name: str) -> str:
    """The username as given, or invalid_username."""
    if not is_valid_username(name):
        raise ChatError(
            ErrorCode.INVALID_USERNAME,
            "a username is 2-32 characters of A-Z a-z 0-9 _ . -, "
            "starting with a letter, digit or _",
        )
    return name


def username_key(name: str) -> str:
    """The key under which names are unique: ASCII case folded."""
    return name.lower()


def normalize_room(room: str) -> str:
    """`#General` -> `general`; invalid_room for anything outside the rules."""
    bare = room[1:] if room.startswith("#") else room
    if ROOM_RE.fullmatch(bare) is None:
        raise ChatError(
            ErrorCode.INVALID_ROOM,
            "a room name is 1-32 characters of a-z 0-9 _ - with an optional leading #",
        )
    return bare.lower()


def check_password(password: str) -> str:
    """The password if it is 8-72 bytes of UTF-8, else invalid_password."""
    size = len(password.encode("utf-8"))
    if not PASSWORD_MIN_BYTES <= size <= PASSWORD_MAX_BYTES:
        raise ChatError(
            ErrorCode.INVALID_PASSWORD,
            f"a password is {PASSWORD_MIN_BYTES}-{PASSWORD_MAX_BYTES} bytes as UTF-8",
        )
    return password


# Unicode category Cc is exactly C0, DEL and C1.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_NEWLINE_AND_TAB = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def has_control(text: str) -> bool:
    """True when `text` holds a character of Unicode category Cc."""
    return _CONTROL.search(text) is not None


def clean_text(text: str) -> str:
    """Message text with trailing whitespace removed, or invalid_text."""
    stripped = text.rstrip()
    if not 1 <= len(stripped) <= TEXT_MAX_CHARS:
        raise ChatError(
            ErrorCode.INVALID_TEXT,
            f"a message is 1-{TEXT_MAX_CHARS} characters after trailing whitespace is removed",
        )
    if _CONTROL_BUT_NEWLINE_AND_TAB.search(stripped):
        raise ChatError(
            ErrorCode.INVALID_TEXT, "a message may hold no control character but newline and tab"
        )
    return stripped


def clean_topic(topic: str) -> str:
    """A topic with trailing whitespace removed, or invalid_text."""
    stripped = topic.rstrip()
    if len(stripped) > TOPIC_MAX_CHARS:
        raise ChatError(ErrorCode.INVALID_TEXT, f"a topic is at most {TOPIC_MAX_CHARS} characters")
    if has_control(stripped):
        raise ChatError(ErrorCode.INVALID_TEXT, "a topic may hold no control character")
    return stripped


# why: a committed batch shares one timestamp, and history pages repeat theirs.
@functools.lru_cache(maxsize=1024)
def format_ts(ms: int) -> str:
    """Milliseconds since the epoch as RFC 3339 UTC with milliseconds and `Z`."""
    return f"{_format_second(ms // 1000)}.{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=1024)
def _format_second(seconds: int) -> str:
    # why: a batch of messages shares a second; formatting a datetime is the slow part.
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}"


_RFC3339_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})"
)


def parse_ts(text: str) -> int:
    """An RFC 3339 timestamp as milliseconds since the epoch; ValueError if it is not one."""
    match = _RFC3339_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    day, clock, fraction, zone = match.groups()
    offset = "+00:00" if zone in "Zz" else zone
    whole = datetime.fromisoformat(f"{day}T{clock}{offset}")
    return int(whole.timestamp()) * 1000 + int((fraction or "0")[:3].ljust(3, "0"))
