"""The two faces of `chat login`: the prompt_toolkit terminal, and plain lines for scripts.

In a terminal, the input line is prompt_toolkit's and everything else is
printed above it through `patch_stdout(raw=True)`, so a message arriving
while the user types never garbles the line being typed. `raw=True` lets our
colour codes through, which is safe only because render.py has stripped
every control character from what was received. Without a terminal, each
stdin line is run in turn, waiting for its reply (and for a transfer it
started to end), and events are printed as plain lines. A transfer's progress
bar is the prompt's bottom toolbar, drawn by prompt_toolkit with the input
line, so it cannot garble it either; scripts get no progress lines.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.application import Application
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.patch_stdout import patch_stdout

from client.chat import Chat
from client.commands import ChatCompleter

# why: a script waits for each reply; a reconnect is bounded by the session's
# give_up_after, and this is the last resort if the server accepts but never answers.
SCRIPT_REPLY_TIMEOUT = 120.0
# why: a cancelled transfer removes its partial file at its next step.
CANCEL_GRACE = 5.0


class TerminalDisplay:
    """Lines go to the (patched) stdout; the prompt is redrawn on the app's own loop."""

    def __init__(self) -> None:
        # guards writes, so lines from the reader and the input thread never interleave
        self._lock = threading.Lock()
        self.app: Application[str] | None = None
        self.prompt: PromptSession[str] | None = None
        self._status: str | None = None

    def show(self, line: str, *, error: bool = False) -> None:
        with self._lock:
            # sys.stdout is looked up each time: inside patch_stdout it is the proxy
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def refresh(self) -> None:
        """Redraw the prompt (the room or the connection state changed), from any thread."""
        app = self.app
        loop = getattr(app, "loop", None) if app is not None else None
        if app is not None and app.is_running and loop is not None:
            loop.call_soon_threadsafe(app.invalidate)

    def status(self, text: str | None) -> None:
        """Show `text` in the bottom toolbar, or hide the toolbar; from any thread.

        prompt_toolkit reads `bottom_toolbar` (a plain attribute) each time it
        draws, on its own loop; the redraw itself is asked for thread-safely.
        """
        self._status = text
        if self.prompt is not None:
            self.prompt.bottom_toolbar = self._toolbar if text else None
        self.refresh()

    def _toolbar(self) -> str:
        return self._status or ""

    def width(self) -> int | None:
        """The terminal's width now (it may have been resized); None if it cannot be told."""
        app = self.app
        try:
            if app is not None:
                return app.output.get_size().columns
            return os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (OSError, ValueError, AttributeError):
            return None


class PlainDisplay:
    """Plain lines for scripts: events and results to stdout, errors to stderr."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self._stdout = stdout
        self._stderr = stderr
        # guards both streams, so lines from the reader and the main thread never interleave
        self._lock = threading.Lock()

    def show(self, line: str, *, error: bool = False) -> None:
        stream = self._stderr if error else self._stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()

    def refresh(self) -> None:
        """Nothing to redraw without a prompt."""

    def status(self, text: str | None) -> None:
        """No progress lines in scripts: the result line says what happened."""

    def width(self) -> None:
        """Scripts get whole lines, however long: whatever reads them does its own layout."""


def run_terminal(chat: Chat, display: TerminalDisplay) -> int:
    """The interactive loop: read lines until /quit or Ctrl-D (exit 0)."""
    prompt: PromptSession[str] = PromptSession(
        history=InMemoryHistory(),
        completer=ChatCompleter(chat.names),
        complete_while_typing=False,
        # why: the line comes back rendered (with time and name) once the server has it
        erase_when_done=True,
    )
    display.app = prompt.app
    display.prompt = prompt
    with patch_stdout(raw=True):
        while not chat.done:
            try:
                line = prompt.prompt(chat.prompt_text)
            except KeyboardInterrupt:
                continue  # Ctrl-C clears the line, as in irssi and weechat
            except EOFError:
                break
            chat.handle_line(line)
        if chat.transfers.active():
            chat.notice("cancelling the file transfers under way")
        chat.transfers.cancel()
        chat.session.close()
        chat.transfers.wait(CANCEL_GRACE)
    return 0


def run_script(chat: Chat, lines: Iterable[str]) -> int:
    """Run each line as if typed, waiting for its reply; 0 at end of input, 1 if any failed."""
    chat.session.wait_idle(SCRIPT_REPLY_TIMEOUT)
    for raw in lines:
        line = raw.rstrip("\r\n")
        chat.handle_line(line)
        # why: no overall deadline: every step of a transfer has its own (REPLY_TIMEOUT)
        chat.transfers.wait()
        if not chat.session.wait_idle(SCRIPT_REPLY_TIMEOUT):
            chat.error("no reply from the server in time")
            chat.failures += 1
            break
        if chat.done:
            break
    chat.session.close()
    return 1 if chat.failures else 0
