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
from collections.abc import Iterable, Mapping
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.application import Application
from prompt_toolkit.data_structures import Point
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout.screen import Char
from prompt_toolkit.patch_stdout import patch_stdout

from chatd.exitstatus import ExitStatus
from client.chat import Chat
from client.completion import ChatCompleter
from client.display import StreamDisplay
from client.layout import cursor_after_reflow

# why: a script waits for each reply; a reconnect is bounded by the session's
# give_up_after, and this is the last resort if the server accepts but never answers.
SCRIPT_REPLY_TIMEOUT = 120.0
# why: a cancelled transfer removes its partial file at its next step.
CANCEL_GRACE = 5.0


class TerminalDisplay(StreamDisplay):
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

    def raw(self, text: str) -> None:
        """Terminal codes of our own (the bell, a notification) written as they are."""
        with self._lock:
            sys.stdout.write(text)
            sys.stdout.flush()

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
            stdout = sys.__stdout__
            return None if stdout is None else os.get_terminal_size(stdout.fileno()).columns
        except (OSError, ValueError, AttributeError):
            return None


class PlainDisplay(StreamDisplay):
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
        key_bindings=_key_bindings(chat),
    )
    display.app = prompt.app
    display.prompt = prompt
    if terminal_reflows(os.environ):
        follow_reflow(prompt.app)
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
        chat.close()
        chat.session.close()
        chat.transfers.wait(CANCEL_GRACE)
    return ExitStatus.OK


def _key_bindings(chat: Chat) -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("c-l")
    def _clear(event: KeyPressEvent) -> None:
        """Clear the screen, and let /history show the newest page again."""
        event.app.renderer.clear()
        chat.screen_cleared()

    return bindings


def terminal_reflows(env: Mapping[str, str]) -> bool:
    """Whether the terminal rewraps its lines when it gets narrower.

    Most do (VTE, Konsole, kitty, iTerm2, Terminal.app, Windows Terminal,
    Alacritty, WezTerm, foot, tmux); xterm, the Linux console and GNU screen
    cut lines instead, and say who they are.
    """
    term = env.get("TERM", "")
    if "XTERM_VERSION" in env or term == "linux":
        return False
    return not (term.startswith("screen") and "TMUX" not in env)


def follow_reflow(app: Application[str]) -> None:
    """Make prompt_toolkit erase its prompt where a reflowing terminal has moved it.

    prompt_toolkit erases its prompt on a resize, before patch_stdout prints
    a line above it, and when a line is entered (erase_when_done), always by
    going back as many rows as it drew. A narrower terminal that rewrapped a
    prompt row too wide for it has made that row several, so the rows above
    the cursor stayed on the screen as duplicated prompt lines. Before each
    erase, the renderer's idea of the cursor is moved to where the terminal
    put it (layout.cursor_after_reflow). This reads three private attributes
    of the renderer; should a prompt_toolkit release rename them, erasing
    is left as it was.
    """
    renderer = app.renderer
    erase = renderer.erase

    def erase_reflowed(leave_alternate_screen: bool = True) -> None:
        screen = getattr(renderer, "_last_screen", None)
        size = getattr(renderer, "_last_size", None)
        cursor = getattr(renderer, "_cursor_pos", None)
        if screen is not None and size is not None and isinstance(cursor, Point):
            width = app.output.get_size().columns
            if 0 < width < size.columns:
                rows = [_row_width(screen.data_buffer[y]) for y in range(cursor.y)]
                x, y = cursor_after_reflow(rows, (cursor.x, cursor.y), width)
                renderer._cursor_pos = Point(x=x, y=y)
        erase(leave_alternate_screen)

    renderer.erase = erase_reflowed  # type: ignore[method-assign]


def _row_width(row: Mapping[int, Char]) -> int:
    """Cells of a drawn row up to its last visible character, as prompt_toolkit writes it."""
    drawn = [x + cell.width for x, cell in row.items() if cell.char != " "]
    return max(drawn, default=0)


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
    return ExitStatus.FAILURE if chat.failures else ExitStatus.OK
