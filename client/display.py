"""What `Chat` hands whatever draws it: lines that know their conversation.

A line mode display (the prompt, or a script's stdout) prints every line
into one stream as it comes, wrapped at the terminal's width of the moment.
The full-screen display (client/screen.py) keeps one timeline per
conversation and wraps each line again whenever its column changes width,
so a `Shown` carries a way to draw itself at any width, not finished text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from client.conversations import Conversation

# painted lines (SGR codes) of one thing shown, wrapped to a width; None: not wrapped
Draw = Callable[[int | None], list[str]]


@dataclass(frozen=True, slots=True)
class Shown:
    """One thing to show: a message, a notice, a day line, a room's header.

    `where` is its conversation; None: wherever the user is looking. A
    message has its id (an edit or a delete draws it again in place), says
    whether the user sent it and whether it calls them (a mention, a direct
    message). `older` ones come from paging back and go above what is shown.
    """

    draw: Draw
    where: Conversation | None = None
    message_id: int | None = None
    error: bool = False
    own: bool = False
    calls_me: bool = False
    older: bool = False
    replaces: bool = False  # an edit or a delete: it takes the place of the message shown
    day: date | None = None  # the local date it happened, for a timeline's day lines


class Display(Protocol):
    @property
    def separate(self) -> bool:
        """One timeline per conversation (full screen), rather than one stream of lines."""
        ...

    def add(self, shown: Shown) -> None: ...

    def refresh(self) -> None: ...

    def status(self, text: str | None) -> None: ...

    def in_view(self, conversation: Conversation, current: Conversation | None) -> bool:
        """Whether the user sees this conversation's new messages as they arrive."""
        ...

    def older_loaded(self, where: Conversation, count: int) -> None:
        """A page of older messages was shown above (0: there are none left)."""
        ...

    def unread_at_login(self, reply: Mapping[str, Any]) -> None:
        """The `unread` reply at login: what each conversation holds unread."""
        ...

    def read_moved(self, conversation: Conversation, last_read: int) -> None:
        """The read marker moved on another device (or by the user's own message)."""
        ...


class StreamDisplay:
    """A display of one stream of lines: subclasses say how a line is printed."""

    separate = False

    def show(self, line: str, *, error: bool = False) -> None:
        raise NotImplementedError

    def width(self) -> int | None:
        """Columns to wrap lines at now; None: never wrap (scripts get whole lines)."""
        return None

    def add(self, shown: Shown) -> None:
        for line in shown.draw(self.width()):
            self.show(line, error=shown.error)

    def in_view(self, conversation: Conversation, current: Conversation | None) -> bool:
        """Every direct message is in the stream; a room's when it is the current one."""
        return conversation[0] == "with" or conversation == current

    def older_loaded(self, where: Conversation, count: int) -> None:
        """The stream said so in a notice already."""

    def unread_at_login(self, reply: Mapping[str, Any]) -> None:
        """A stream prints the counts once, as lines."""

    def read_moved(self, conversation: Conversation, last_read: int) -> None:
        """A stream keeps no counts."""
