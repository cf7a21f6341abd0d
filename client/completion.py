"""Tab completion: commands, and each argument by the kind its command declares.

Reads the command registry (client.commands) to know what an argument is,
so a new command completes without any code here. The registry knows
nothing of completion: whoever builds the prompt (client/ui.py) brings the two
together.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from client.commands import COMMANDS, ArgKind, Registry
from client.files import escape_path

# why: a Tab in a huge directory should not freeze the input line.
MAX_PATHS = 200


@dataclass(frozen=True, slots=True)
class Names:
    """What completion can offer: every known room, the joined ones, known users, file ids."""

    rooms: Iterable[str] = ()
    joined: Iterable[str] = ()
    users: Iterable[str] = ()
    files: Iterable[str] = ()


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
        before = text[:start].split()[1:]
        if cmd.params and cmd.params[0].kind == "target":
            return start, _complete_target(before, word, names)
        index = len(before)
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
    if kind == "file":
        return [file_id + " " for file_id in sorted(_matches(word, names.files), key=int)]
    if kind == "path":
        return complete_path(word)
    return []


def _complete_target(before: list[str], word: str, names: Names) -> list[str]:
    """`/upload [@USER] PATH ...`: a user after `@`, then a path, then nothing (the caption)."""
    if not before and word.startswith("@"):
        return ["@" + user + " " for user in _matches(word[1:], names.users)]
    if not before or (len(before) == 1 and before[0].startswith("@")):
        return complete_path(word)
    return []


def complete_path(word: str) -> list[str]:
    """Files and directories that start with `word`; a directory ends in `/` to go on."""
    head, tail = os.path.split(word)
    directory = os.path.expanduser(head) if head else "."
    try:
        with os.scandir(directory) as entries:
            found = []
            for entry in entries:
                if entry.name.startswith(tail) and (tail.startswith(".") or entry.name[0] != "."):
                    found.append((entry.name, entry.is_dir()))
                if len(found) > MAX_PATHS:
                    return []
    except OSError:
        return []
    return [
        escape_path(os.path.join(head, name)) + ("/" if is_dir else " ")
        for name, is_dir in sorted(found)
    ]


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
