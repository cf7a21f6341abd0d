"""Real IRC clients against the gateway: weechat (headless, driven by its FIFO, read through its
logger) and irssi (in a pseudo-terminal, read through its autolog), each logging in with a chatd
account, joining #general, exchanging room and direct messages with a `chat` protocol user and
seeing the room's history replayed.

Without weechat-headless or irssi these tests skip with the reason, unless CI is set (then
they fail: .ci/run installs both from Debian).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pytest
from wire import WireClient

pytestmark = [
    pytest.mark.sqlite_only("a client suite: the server is only its fixture"),
    pytest.mark.timeout(120),
]

# why: real clients connect, negotiate and draw at their own pace on a shared 2-core machine
CLIENT_WAIT = 45.0
SECRET = "client-secret-1"  # no space: both clients pass it on a command line


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        reason = f"{name} is not installed (Debian: apt-get install {name})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so the real-client tests must run", pytrace=False)
        pytest.skip(reason)
    return found


def _wait_for(what: str, ready: Callable[[], bool], timeout: float = CLIENT_WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _logs(directory: Path) -> str:
    return "".join(_text(path) for path in sorted(directory.rglob("*")) if path.is_file())


def _chat_user(address: tuple[str, int], name: str) -> WireClient:
    client = WireClient(address)
    client.ok("register", username=name, password=SECRET)
    client.ok("login", username=name, password=SECRET)
    return client


def _setting_the_scene(server) -> WireClient:
    """A `chat` user in #general with a message from before the IRC client came."""
    chatter = _chat_user(server.json_address, "chatter")
    chatter.ok("join", room="general")
    chatter.ok("send", room="general", text="said before you came")
    return chatter


def _exchange(chatter: WireClient, nick: str, command: Callable[[str], None],
              send_room: Callable[[str], None], logs: Callable[[], str]) -> None:  # fmt: skip
    """Join #general, see its history, then room and direct messages both ways with `chatter`."""
    _wait_for("the welcome", lambda: "End of /MOTD" in logs() or "MOTD" in logs())
    command("/join #general")
    _wait_for("the history replay", lambda: "said before you came" in logs())
    assert chatter.next_event("join", timeout=CLIENT_WAIT)["user"] == nick
    send_room(f"hello from {nick}")
    event = chatter.next_event("message", timeout=CLIENT_WAIT)
    assert (event["user"], event["text"]) == (nick, f"hello from {nick}")
    command(f"/msg chatter a secret from {nick}")
    event = chatter.next_event("dm", timeout=CLIENT_WAIT)
    assert (event["user"], event["to"], event["text"]) == (nick, "chatter", f"a secret from {nick}")
    chatter.ok("send", room="general", text="hello from chat")
    chatter.ok("dm", to=nick, text="a secret from chat")
    _wait_for("the room message", lambda: "hello from chat" in logs())
    _wait_for("the direct message", lambda: "a secret from chat" in logs())


@pytest.fixture
def weechat(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    binary = _binary("weechat-headless")
    started: list[subprocess.Popen[bytes]] = []

    def start(commands: list[str]) -> subprocess.Popen[bytes]:
        home = tmp_path / "weechat"
        home.mkdir()
        process = subprocess.Popen(
            [binary, "--dir", str(home), "--run-command", ";".join(commands)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_weechat_logs_in_by_sasl_and_chats_both_ways(start_irc, weechat, tmp_path):
    server = start_irc()
    chatter = _setting_the_scene(server)
    _chat_user(server.json_address, "wee").close()
    host, port = server.irc_address
    fifo, logs = tmp_path / "weechat.fifo", tmp_path / "weechat-logs"
    weechat(
        [
            f"/set fifo.file.path {fifo}",
            "/set fifo.file.enabled on",
            f"/set logger.file.path {logs}",
            "/set logger.file.flush_delay 0",
            "/set logger.level.irc 9",
            f"/server add chatd {host}/{port}",
            "/set irc.server.chatd.ssl off",
            "/set irc.server.chatd.tls off",
            "/set irc.server.chatd.nicks wee",
            "/set irc.server.chatd.sasl_mechanism plain",
            "/set irc.server.chatd.sasl_username wee",
            f"/set irc.server.chatd.sasl_password {SECRET}",
            "/connect chatd",
        ]
    )
    _wait_for("weechat's FIFO", fifo.exists)

    def command(buffer: str, text: str) -> None:
        with fifo.open("w") as pipe:
            pipe.write(f"{buffer} *{text}\n")

    _exchange(
        chatter,
        "wee",
        lambda text: command("irc.server.chatd", text),
        lambda text: command("irc.chatd.#general", text),
        lambda: _logs(logs),
    )
    chatter.close()


def test_irssi_logs_in_by_pass_and_chats_both_ways(start_irc, tmp_path):
    binary = _binary("irssi")
    server = start_irc()
    chatter = _setting_the_scene(server)
    _chat_user(server.json_address, "irssi-user").close()
    host, port = server.irc_address
    home, logs = tmp_path / "irssi", tmp_path / "irssi-logs"
    home.mkdir()
    (home / "config").write_text(
        'settings = {\n  core = { real_name = "chatd test"; user_name = "irssi"; };\n'
        '  "fe-common/core" = {\n    autolog = "yes";\n'
        f'    autolog_path = "{logs}/$0.log";\n    autolog_level = "all";\n  }};\n}};\n'
    )
    child = pexpect.spawn(
        binary,
        [
            "--home",
            str(home),
            "-n",
            "irssi-user",
            "-c",
            host,
            "-p",
            str(port),
            "-w",
            f"irssi-user:{SECRET}",
        ],
        env={**os.environ, "TERM": "xterm"},
        dimensions=(50, 200),
        timeout=CLIENT_WAIT,
    )
    try:
        screen: list[str] = []

        def seen() -> str:
            """What irssi logged, and drew (read away, so that it never blocks on its terminal)."""
            try:
                while True:
                    screen.append(child.read_nonblocking(65536, timeout=0).decode(errors="replace"))
            except (pexpect.TIMEOUT, pexpect.EOF):
                pass
            return "".join(screen) + _logs(logs)

        def say(line: str) -> None:
            child.sendline(line)

        _exchange(chatter, "irssi-user", say, lambda text: say(f"/msg #general {text}"), seen)
    finally:
        child.kill(signal.SIGTERM)
        child.close(force=True)
        chatter.close()
