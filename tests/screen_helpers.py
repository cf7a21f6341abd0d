"""The full-screen `chat` in a real pseudo-terminal, its screen read through pyte.

pyte is a terminal emulator: what it holds after the client's output is what
a person would see, so the tests assert on rows of text, not on escape codes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pexpect
import pyte
from client_helpers import PTY_TIMEOUT, chat_env, spawn_chat
from conftest import PASSWORD


class CountingScreen(pyte.Screen):  # type: ignore[misc]
    """A pyte screen that counts the bells it was sent."""

    def __init__(self, columns: int, lines: int) -> None:
        super().__init__(columns, lines)
        self.bells = 0

    def bell(self, *args: object) -> None:
        self.bells += 1


class ScreenChat:
    def __init__(
        self, address: tuple[str, int], user: str, *, columns: int = 100, rows: int = 30
    ) -> None:
        env = chat_env(CHAT_PASSWORD=PASSWORD, CHAT_LINE="no", NO_COLOR="1")
        self.child = spawn_chat(address, "login", "--user", user, env=env, columns=columns)
        self.child.setwinsize(rows, columns)
        self.screen = CountingScreen(columns, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = b""  # everything the client wrote

    # -- reading -----------------------------------------------------------------

    def pump(self, seconds: float = 0.05) -> None:
        """Feed what the client wrote in the next `seconds` to the emulator."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                data = self.child.read_nonblocking(
                    65536, timeout=max(0.0, deadline - time.monotonic())
                )
            except pexpect.TIMEOUT:
                data = ""
            except pexpect.EOF:
                return
            if data:
                chunk = data.encode("utf-8")
                self.raw += chunk
                self.stream.feed(chunk)
            if time.monotonic() >= deadline:
                return

    def rows(self) -> list[str]:
        return [row.rstrip() for row in self.screen.display]

    def text(self) -> str:
        return "\n".join(self.rows())

    def wait(self, ready: Callable[[ScreenChat], bool], timeout: float = PTY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not ready(self):
            if time.monotonic() > deadline:
                raise AssertionError("the screen never showed it:\n" + self.text())
            self.pump(0.05)

    def wait_for(self, text: str, timeout: float = PTY_TIMEOUT) -> None:
        self.wait(lambda screen: text in screen.text(), timeout)

    def settle(self, seconds: float = 0.3) -> None:
        """Let the client finish drawing (a redraw is at most ~30 a second)."""
        self.pump(seconds)

    # -- acting ------------------------------------------------------------------

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def type_line(self, text: str) -> None:
        self.child.send(text + "\r")

    def paste(self, text: str) -> None:
        self.child.send("\x1b[200~" + text + "\x1b[201~")

    def resize(self, columns: int, rows: int | None = None) -> None:
        rows = rows or self.screen.lines
        self.child.setwinsize(rows, columns)
        self.screen.resize(rows, columns)
        self.pump(0.1)

    def close(self) -> None:
        if self.child.isalive():
            self.child.sendcontrol("d")
            with contextlib.suppress(pexpect.TIMEOUT, pexpect.EOF):
                self.child.expect(pexpect.EOF, timeout=5)
        self.child.close(force=True)


PAGE_UP, PAGE_DOWN = "\x1b[5~", "\x1b[6~"
ALT_DOWN, ALT_UP = "\x1b[1;3B", "\x1b[1;3A"
CTRL_N, CTRL_P = "\x0e", "\x10"
ALT_A = "\x1ba"
F1 = "\x1bOP"
FOCUS_IN, FOCUS_OUT = "\x1b[I", "\x1b[O"
