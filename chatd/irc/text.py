"""Message text between IRC and chatd, as pure functions.

In: IRC formatting (bold, colours, ...) is stripped, since chatd refuses
control characters; CTCP ACTION becomes `/me `, and other CTCP requests are
not messages at all. Out: a chatd message may be 4000 characters with
newlines, and an IRC line holds one line of at most 512 bytes, so it goes
out as several lines split at word boundaries; `/me ` becomes ACTION.
"""

from __future__ import annotations

import re

from chatd.irc.codec import MAX_LINE_BYTES

CTCP = "\x01"
ME = "/me "
# why: mIRC colours take up to two digits of foreground and, after a comma, of background;
# hex colours (\x04) six hex digits each.
_FORMATTING = re.compile(
    "\x03(?:\\d{1,2}(?:,\\d{1,2})?)?"
    "|\x04(?:[0-9A-Fa-f]{6}(?:,[0-9A-Fa-f]{6})?)?"
    "|[\x02\x0f\x11\x16\x1d\x1e\x1f]"
)
# every other control character but tab: chatd would refuse the text
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def strip_formatting(text: str) -> str:
    """Text without IRC formatting codes or other control characters (tab stays)."""
    return _CONTROL.sub("", _FORMATTING.sub("", text))


def ctcp_of(text: str) -> tuple[str, str] | None:
    """(command, argument) of a CTCP message (`\\x01ACTION waves\\x01`), else None."""
    if not text.startswith(CTCP):
        return None
    body = text[1:].removesuffix(CTCP)
    command, _sp, argument = body.partition(" ")
    return command.upper(), argument


def from_irc(text: str) -> str | None:
    """What chatd stores for an IRC message's text; None for a CTCP request that is no message."""
    if text.isascii() and text.isprintable():
        return text  # the common case: nothing to strip (one C call)
    ctcp = ctcp_of(text)
    if ctcp is not None:
        command, argument = ctcp
        if command != "ACTION":
            return None
        return ME + strip_formatting(argument)
    return strip_formatting(text)


def utf8_prefix(text: str, budget: int) -> int:
    """How many characters of `text` fit in `budget` bytes of UTF-8 (at least one)."""
    size = 0
    for index, char in enumerate(text):
        size += len(char.encode("utf-8")) if not char.isascii() else 1
        if size > budget:
            return max(index, 1)
    return len(text)


def split_line(text: str, budget: int) -> list[str]:
    """One line of text in pieces of at most `budget` bytes, cut after a space when one is near."""
    pieces: list[str] = []
    while len(text.encode("utf-8")) > budget:
        cut = utf8_prefix(text, budget)
        space = text.rfind(" ", 0, cut)
        if space > cut // 2:  # a word boundary in the second half of the piece
            cut = space + 1
        pieces.append(text[:cut].rstrip(" ") or text[:cut])
        text = text[cut:]
    if text:
        pieces.append(text)
    return pieces


def to_irc(text: str, overhead: int) -> list[str]:
    """A chatd message's text as the trailing parameters of IRC lines.

    `overhead` is what the rest of each line takes (source, command, target,
    separators and CRLF), so every line stays within MAX_LINE_BYTES. Empty
    lines are left out; `/me ` makes every piece an ACTION.
    """
    action = text.startswith(ME)
    if action:
        text = text[len(ME) :]
        overhead += len("\x01ACTION \x01")
    budget = max(MAX_LINE_BYTES - overhead, 16)
    pieces = [
        piece
        for line in text.split("\n")
        if line.strip()
        for piece in split_line(line.rstrip(), budget)
    ]
    if not pieces:
        pieces = [text.strip() or " "]
    if action:
        return [f"{CTCP}ACTION {piece}{CTCP}" for piece in pieces]
    return pieces
