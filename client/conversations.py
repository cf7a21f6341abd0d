"""Conversation state on the client's side: marking read as messages are shown, and alerts.

`ReadMarks` sends `mark_read` a moment after a conversation's messages were
shown (one request per conversation however many arrive, as Slack and
Zulip batch theirs), and never for less than was already marked, here or on
another device (`read` events). Only an interactive terminal makes one: a
script reads nothing. `Notifier` rings the terminal bell for a mention or a
direct message and, with --notify, raises a desktop notification:
`notify-send` where it is installed and a display is there, else the
terminal's own (OSC 9 for the terminals known to show it, OSC 777 for the rest).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from typing import Any

# why: one mark_read per conversation per this long, however many messages are shown
MARK_DELAY = 1.0
# terminals that show OSC 9 notifications (the rest get OSC 777, VTE's and foot's)
OSC9_TERMINALS = frozenset({"iTerm.app", "WezTerm", "ghostty"})
NOTIFY_SEND = "notify-send"

# ("room", name) or ("with", username): a conversation as mark_read names it
Conversation = tuple[str, str]


class ReadMarks:
    def __init__(
        self, send: Callable[[Conversation, int], None], delay: float = MARK_DELAY
    ) -> None:
        self._send = send
        self._delay = delay
        # guards the fields below; shown() runs on the reader and the input threads
        self._lock = threading.Lock()
        self._marked: dict[Conversation, int] = {}  # sent, or known from a `read` event
        self._pending: dict[Conversation, int] = {}
        self._timer: threading.Timer | None = None
        self._closed = False

    def shown(self, conversation: Conversation, message_id: int) -> None:
        """A message of `conversation` was shown: mark it read soon."""
        with self._lock:
            known = max(self._marked.get(conversation, 0), self._pending.get(conversation, 0))
            if message_id <= known or self._closed:
                return
            self._pending[conversation] = message_id
            if self._timer is None:
                self._timer = threading.Timer(self._delay, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def elsewhere(self, conversation: Conversation, last_read: int) -> None:
        """A `read` event: another device (or our own message) moved the marker."""
        with self._lock:
            if last_read > self._marked.get(conversation, 0):
                self._marked[conversation] = last_read
            if self._pending.get(conversation, 0) <= last_read:
                self._pending.pop(conversation, None)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._timer = None
            for conversation, message_id in pending.items():
                self._marked[conversation] = message_id
        for conversation, message_id in pending.items():
            self._send(conversation, message_id)

    def close(self) -> None:
        """Send what waits now; nothing after."""
        with self._lock:
            self._closed = True
            timer = self._timer
        if timer is not None:
            timer.cancel()
        self.flush()


def conversation_of(message: Mapping[str, Any], me: str) -> Conversation | None:
    """The conversation a message belongs to, seen from `me`."""
    room = message.get("room")
    if isinstance(room, str):
        return ("room", room)
    user, to = message.get("user"), message.get("to")
    if not isinstance(user, str) or not isinstance(to, str):
        return None
    return ("with", to if user.lower() == me.lower() else user)


class Notifier:
    """The bell, and with `desktop` a notification, for what calls the user."""

    def __init__(
        self,
        write: Callable[[str], None],
        env: Mapping[str, str],
        *,
        desktop: bool = False,
        which: Callable[[str], str | None] = shutil.which,
        spawn: Callable[[list[str]], object] | None = None,
    ) -> None:
        self._write = write
        self._desktop = desktop
        self._env = env
        self._notify_send = which(NOTIFY_SEND) if desktop else None
        self._spawn = spawn or _spawn_quietly

    def alert(self, title: str, body: str) -> None:
        """`title` and `body` are sanitized already: no control character is in them."""
        self._write("\a")
        if not self._desktop:
            return
        display = self._env.get("DISPLAY") or self._env.get("WAYLAND_DISPLAY")
        if self._notify_send is not None and display:
            self._spawn([self._notify_send, "--app-name=chat", title, body])
        elif self._env.get("TERM_PROGRAM") in OSC9_TERMINALS or "WT_SESSION" in self._env:
            self._write(f"\x1b]9;{title}: {body}\x07")
        else:
            self._write(f"\x1b]777;notify;{title.replace(';', ',')};{body}\x07")


def _spawn_quietly(argv: list[str]) -> object:
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        return None
