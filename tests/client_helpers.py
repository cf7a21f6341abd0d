"""Helpers for the `chat` client tests: a pty runner, a line-cutting proxy, a fake server.

Every socket has a timeout and every thread is a daemon that ends when its
socket closes, so a failing test cannot hang the suite.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pexpect
from conftest import PASSWORD

from chatd.protocol import FrameDecoder, encode
from client.recovery import Missed
from client.session import Session

ROOT = Path(__file__).resolve().parent.parent
PTY_TIMEOUT = 15.0
SOCKET_TIMEOUT = 10.0


def chat_env(**extra: str) -> dict[str, str]:
    """An environment for `chat` in a pty: no cursor-position requests, a known terminal."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CHAT_", "PYTEST_", "NO_COLOR"))
    }
    env.update(PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm", COLUMNS="100", LINES="30", NO_COLOR="1")
    # why: what chat remembers between runs goes to a fresh place, not the tester's home
    env["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="chat-state-")
    env["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="chat-config-")
    # why: these tests are of the line mode; the full screen's set CHAT_LINE=no
    env["CHAT_LINE"] = "yes"
    env.update(extra)
    return env


def spawn_chat(
    address: tuple[str, int],
    *args: str,
    env: dict[str, str] | None = None,
    columns: int = 100,
) -> pexpect.spawn:
    """The real `chat` command in a real pseudo-terminal, `columns` wide."""
    argv = ["-m", "client", *args, "--server", f"{address[0]}:{address[1]}"]
    child = pexpect.spawn(
        sys.executable,
        argv,
        env=env or chat_env(),
        cwd=str(ROOT),
        dimensions=(30, columns),
        timeout=PTY_TIMEOUT,
        encoding="utf-8",
        codec_errors="replace",
    )
    return child


def finish(child: pexpect.spawn, timeout: float = PTY_TIMEOUT) -> int:
    """Wait for the child to end; its exit status."""
    child.expect(pexpect.EOF, timeout=timeout)
    child.wait()
    status = child.exitstatus
    assert status is not None, f"chat died by signal {child.signalstatus}"
    return status


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "it") -> None:
    """Poll until predicate() holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Tmux:
    """A pane of a private tmux server: a terminal that rewraps its lines when resized.

    pexpect's pty has no screen; tmux keeps one, reflows it like most desktop
    terminals do, and shows it with `capture-pane`. Each instance has its own
    server socket, killed by `close()`.
    """

    _numbers = itertools.count(1)

    def __init__(self, command: list[str], env: dict[str, str], *, columns: int, rows: int) -> None:
        self.socket = f"chat-test-{os.getpid()}-{next(self._numbers)}"
        shell = shlex.join(["env", *(f"{key}={value}" for key, value in env.items()), *command])
        self._tmux(
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            str(columns),
            "-y",
            str(rows),
            "-c",
            str(ROOT),
            shell,
        )

    def _tmux(self, *args: str) -> str:
        tmux = shutil.which("tmux")
        assert tmux is not None
        result = subprocess.run(
            [tmux, "-L", self.socket, *args], capture_output=True, text=True, timeout=SOCKET_TIMEOUT
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def lines(self) -> list[str]:
        """The visible screen, one string per row, trailing spaces dropped."""
        return [line.rstrip() for line in self._tmux("capture-pane", "-p").splitlines()]

    def type(self, text: str, *, enter: bool = False) -> None:
        self._tmux("send-keys", "-l", text)
        if enter:
            self._tmux("send-keys", "Enter")

    def resize(self, columns: int) -> None:
        """Resize, and wait until the program in the pane has been told (SIGWINCH).

        tmux reflows its screen at once but may pass a new size on to the
        pane's pty a little later; whatever the program prints in between is
        laid out for the old width, which no program can get right.
        """
        self._tmux("resize-window", "-x", str(columns))
        tty = self._tmux("display-message", "-p", "#{pane_tty}").strip()
        wait_for(lambda: _pty_columns(tty) == columns, timeout=PTY_TIMEOUT, what="the pty's size")

    def wait_for(self, predicate: Callable[[list[str]], bool], what: str) -> list[str]:
        """Poll the screen until predicate(lines) holds; the lines that satisfied it."""
        screen: list[str] = []

        def seen() -> bool:
            nonlocal screen
            screen = self.lines()
            return predicate(screen)

        try:
            wait_for(seen, timeout=PTY_TIMEOUT, what=what)
        except AssertionError:
            raise AssertionError(
                f"timed out waiting for {what}; the screen:\n" + "\n".join(screen)
            ) from None
        return screen

    def close(self) -> None:
        with contextlib.suppress(AssertionError, OSError, subprocess.SubprocessError):
            self._tmux("kill-server")


def _pty_columns(tty: str) -> int:
    """The width the kernel gives a pty, the one its program reads."""
    fd = os.open(tty, os.O_RDONLY | os.O_NOCTTY)
    try:
        packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    finally:
        os.close(fd)
    return struct.unpack("HHHH", packed)[1]


class CuttingProxy:
    """A TCP proxy in front of a real server that can lose one reply with the connection.

    `lose_reply_to("send")` arms it: the next reply to a `send` request is
    dropped and both sides of that connection are closed, as if the network
    failed after the server stored the message but before the client heard.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(SOCKET_TIMEOUT)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        # guards _lose_op, _doomed and _pairs
        self._lock = threading.Lock()
        self._lose_op: str | None = None
        self._doomed: set[Any] = set()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lost = threading.Event()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def lose_reply_to(self, op: str) -> None:
        with self._lock:
            self._lose_op = op

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            pairs = list(self._pairs)
        for client, upstream in pairs:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=SOCKET_TIMEOUT)
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upward: bool) -> None:
        decoder = FrameDecoder(64 * 1024 * 1024)
        source.settimeout(None)
        try:
            while data := source.recv(65536):
                for line in decoder.feed(data):
                    frame = json.loads(line)
                    if not self._pass(frame, upward):
                        for sock in (source, sink):
                            with contextlib.suppress(OSError):
                                sock.shutdown(socket.SHUT_RDWR)
                        self.lost.set()
                        return
                    sink.sendall(line + b"\n")
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def _pass(self, frame: dict[str, Any], upward: bool) -> bool:
        with self._lock:
            if upward and self._lose_op is not None and frame.get("op") == self._lose_op:
                self._doomed.add(frame.get("id"))
                self._lose_op = None
                return True
            if not upward and "ok" in frame and frame.get("id") in self._doomed:
                self._doomed.discard(frame.get("id"))
                return False
            return True


class FakeServer:
    """A scripted chatd for what a real server never sends: hostile text, silence.

    It accepts one connection at a time, says welcome, answers each op from
    `replies` (default `{}`), and `push(frame)` sends an event. With
    `answer_pings=False` it ignores pings, like a server that hung.
    """

    def __init__(self, replies: dict[str, dict[str, Any]], *, answer_pings: bool = True) -> None:
        self.replies = replies
        self.answer_pings = answer_pings
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(SOCKET_TIMEOUT)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self.requests: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self._conn: socket.socket | None = None
        threading.Thread(target=self._serve, daemon=True).start()

    def push(self, frame: dict[str, Any]) -> None:
        assert self._conn is not None
        self._conn.sendall(encode(frame))

    def close(self) -> None:
        self._listener.close()
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        self._conn = conn
        conn.settimeout(None)
        conn.sendall(encode({"event": "welcome", "server": "fake", "protocol": 1}))
        self.connected.set()
        decoder = FrameDecoder(1 << 20)
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                for line in decoder.feed(data):
                    request = json.loads(line)
                    self.requests.append(request)
                    op = request.get("op")
                    if op == "ping" and not self.answer_pings:
                        continue
                    reply = {"id": request.get("id"), "ok": True, **self.replies.get(op, {})}
                    conn.sendall(encode(reply))


class Recorder:
    """A session listener that keeps everything it is told, thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[tuple[str, Any]] = []

    def _add(self, kind: str, value: Any) -> None:
        with self._lock:
            self.calls.append((kind, value))

    def event(self, frame: dict[str, Any]) -> None:
        self._add("event", frame)

    def connection_lost(self, reason: str) -> None:
        self._add("lost", reason)

    def reconnecting(self, attempt: int, delay: float) -> None:
        self._add("reconnecting", attempt)

    def reconnected(self, missed: Missed) -> None:
        self._add("reconnected", missed)

    def gave_up(self, reason: str) -> None:
        self._add("gave_up", reason)

    def pacing(self, waiting: int) -> None:
        self._add("pacing", waiting)

    def of(self, kind: str) -> list[Any]:
        with self._lock:
            return [value for k, value in self.calls if k == kind]


def logged_in(
    make: Callable[..., Session], address: tuple[str, int], user: str, **options: Any
) -> tuple[Session, Recorder]:
    """A client session (from the `sessions` fixture) logged in and reading, with a Recorder."""
    session = make(address, **options)
    session.open()
    session.login(user, PASSWORD)
    recorder = Recorder()
    session.start(recorder)
    return session, recorder
