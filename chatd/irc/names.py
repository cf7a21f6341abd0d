"""Names as IRC writes them: nicks for usernames, `#room` for rooms, msgids for message ids.

Pure functions. A chatd username may hold `.`, which IRC reserves for
server names (Ergo and soju refuse it in nicks), so a dot is written `|`
in a nick, a character no username has: `alice.smith` is `alice|smith` on
IRC and back again. Rooms are lower-case `[a-z0-9_-]`, so `#General` is
`#general`; CASEMAPPING=ascii matches that, and usernames are unique
ignoring ASCII case.
"""

from __future__ import annotations

import functools
import re

from chatd.names import ROOM_RE, USERNAME_RE

NICKLEN = 32
CHANNELLEN = 33  # `#` and a room name of at most 32
NICK_DOT = "|"  # how a username's `.` is written in a nick
GUEST_PREFIX = "guest-"  # a guest's username: this and its nick
# why: what NICK accepts from a guest: a username's characters, with `|` for `.`
_GUEST_NICK = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_|-]{0,25}")


def nick_of(username: str) -> str:
    """The nick that shows `username` on IRC."""
    return username.replace(".", NICK_DOT) if "." in username else username


def username_of(nick: str) -> str | None:
    """The username a nick stands for; None when no username could be written so."""
    name = nick.replace(NICK_DOT, ".")
    return name if USERNAME_RE.fullmatch(name) else None


def guest_username(nick: str) -> str | None:
    """The account a guest with this nick chats as (`guest-` and the nick), if it may."""
    if not _GUEST_NICK.fullmatch(nick):
        return None
    name = username_of(GUEST_PREFIX + nick)
    return name


# why: a sender names the same few channels line after line; names are bounded in length
@functools.lru_cache(maxsize=4096)
def room_of(channel: str) -> str | None:
    """The room a channel name stands for: `#Room` is `room`; None when it is not a room."""
    if not channel.startswith("#"):
        return None
    bare = channel[1:]
    return bare.lower() if ROOM_RE.fullmatch(bare) else None


def channel_of(room: str) -> str:
    return "#" + room


def casefold(name: str) -> str:
    """CASEMAPPING=ascii: only A-Z fold."""
    return name.lower() if name.isascii() else name.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def msgid_of(prefix: str, message_id: int) -> str:
    """A message's IRCv3 msgid: the database's prefix and chatd's id (message-ids.md)."""
    return f"{prefix}-{message_id}"


def message_id_of(prefix: str, msgid: str) -> int | None:
    """The chatd id a msgid of this database names; None for anyone else's."""
    head, _dash, number = msgid.rpartition("-")
    if head != prefix or not number.isdigit() or len(number) > 18:
        return None
    return int(number)
