"""Mentions: which usernames a message's text calls with `@name`, by PROTOCOL.md's rule.

A text mentions user U when it holds `@` followed by U's username (ignoring
ASCII case) and the next character is not a username character, or the text
ends there. So the run of username characters after an `@` is the whole
candidate: `@alice.b` names `alice.b`, never `alice`, and `@alice.` at the
end of a sentence names `alice.` (PROTOCOL.md counts `.` as a username
character). Nothing is said about the character before the `@`. Pure: the
store looks the candidates up among registered users.
"""

from __future__ import annotations

import re

from chatd.names import is_valid_username, username_key

# a run of username characters after an @, taken whole (greedy)
_CANDIDATE = re.compile(r"@([A-Za-z0-9_.-]+)")


def mention_keys(text: str) -> list[str]:
    """The username keys `text` may mention, in order of first appearance, each once."""
    if "@" not in text:
        return []
    seen: dict[str, None] = {}
    for found in _CANDIDATE.finditer(text):
        name = found.group(1)
        if is_valid_username(name):
            seen.setdefault(username_key(name), None)
    return list(seen)


def join_mentions(usernames: list[str]) -> str | None:
    """How a message's mentions are stored: the registered names separated by spaces."""
    return " ".join(usernames) if usernames else None


def split_mentions(stored: str | None) -> list[str]:
    return stored.split() if stored else []
