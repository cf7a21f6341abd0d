"""`chat` as a function: register and login flows, exit statuses, and the scripted mode."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

import pytest
from client_helpers import ROOT, chat_env
from conftest import CLIENT_SUITE, PASSWORD, registered
from wire import WireClient

import chatd
from client.cli import Console, main, parse_server

pytestmark = CLIENT_SUITE


def console(
    stdin: str = "",
    *,
    terminal: bool = False,
    answers: Iterable[str] = (),
    passwords: Iterable[str] = (),
) -> Console:
    answer_list, password_list = iter(answers), iter(passwords)
    return Console(
        stdin=io.StringIO(stdin),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
        ask=lambda prompt: next(answer_list),
        ask_password=lambda prompt: next(password_list),
        terminal=terminal,
        can_prompt=lambda: False,
    )


def out(con: Console) -> str:
    assert isinstance(con.stdout, io.StringIO)
    return con.stdout.getvalue()


def err(con: Console) -> str:
    assert isinstance(con.stderr, io.StringIO)
    return con.stderr.getvalue()


def run(server: Any, *argv: str, con: Console, password: str | None = PASSWORD) -> int:
    env = {"CHAT_SERVER": "{}:{}".format(*server.address)}
    if password is not None:
        env["CHAT_PASSWORD"] = password
    return main(list(argv), env, con)


def test_register_then_taken(server) -> None:
    con = console()
    assert run(server, "register", "--user", "alice", con=con) == 0
    assert "registered alice" in out(con)
    con = console()
    assert run(server, "register", "--user", "ALICE", con=con) == 1
    assert "that username is taken" in err(con)


def test_register_asks_twice_and_retries_a_mismatch(server) -> None:
    con = console(
        terminal=True,
        answers=["bob"],
        passwords=["first pass", "other pass", "right pass", "right pass"],
    )
    assert run(server, "register", con=con, password=None) == 0
    assert "the passwords do not match" in err(con)
    assert "registered bob" in out(con)
    login = console("/rooms\n")
    assert run(server, "login", "--user", "bob", con=login, password="right pass") == 0


def test_register_gives_up_after_three_mismatches(server) -> None:
    con = console(terminal=True, passwords=["aaaaaaaa", "bbbbbbbb"] * 3)
    assert run(server, "register", "--user", "bob", con=con, password=None) == 1
    assert err(con).count("do not match") == 3


def test_register_refuses_a_short_password_before_asking_again(server) -> None:
    con = console(terminal=True, passwords=["short", "long enough", "long enough"])
    assert run(server, "register", "--user", "bob", con=con, password=None) == 0
    assert "8-72 bytes" in err(con)


def test_register_refuses_an_invalid_username(server) -> None:
    con = console()
    assert run(server, "register", "--user=-bad-", con=con) == 1
    assert "a username is" in err(con)


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        ([], {}),
        (["dance"], {}),
        (["login", "--server", "host:port"], {"CHAT_PASSWORD": "x"}),
        (["login", "--user", "a"], {"CHAT_SERVER": ":7700", "CHAT_PASSWORD": "x"}),
        (["login"], {"CHAT_PASSWORD": "x"}),  # no --user and no terminal to ask
        (["login", "--user", "alice"], {}),  # no CHAT_PASSWORD and no terminal
    ],
)
def test_usage_errors_exit_2(argv: list[str], env: dict[str, str]) -> None:
    assert main(argv, env, console()) == 2


@pytest.mark.parametrize(
    ("family", "host", "shown"),
    [
        (socket.AF_INET, "127.0.0.1", "127.0.0.1"),
        (socket.AF_INET6, "::1", "[::1]"),
    ],
    ids=["ipv4", "ipv6"],
)
def test_unreachable_server_exits_1_in_plain_words(family: int, host: str, shown: str) -> None:
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    con = console()
    env = {"CHAT_SERVER": f"{shown}:{port}", "CHAT_PASSWORD": "x"}
    assert main(["login", "--user", "a"], env, con) == 1
    assert (
        err(con) == f"chat: cannot reach {shown}:{port}: connection refused (is chatd running?)\n"
    )


def test_parse_server() -> None:
    assert parse_server("example.org:7000") == ("example.org", 7000)
    assert parse_server("example.org") == ("example.org", 7700)
    assert parse_server("[::1]:7001") == ("::1", 7001)
    assert parse_server("[::1]") == ("::1", 7700)


def test_login_with_a_wrong_password_from_the_environment_exits_1(connect, server) -> None:
    connect("alice")
    con = console("hello\n")
    assert run(server, "login", "--user", "alice", con=con, password="wrong password") == 1
    assert "wrong username or password" in err(con)


def test_a_throttled_login_says_what_the_server_limits(start_server) -> None:
    server = start_server(login_failures=2)
    registered(server.address, "alice").close()
    for _ in range(2):
        assert run(server, "login", "--user", "alice", con=console(), password="wrong guess") == 1
    con = console("hello\n")
    assert run(server, "login", "--user", "alice", con=con) == 1
    limited = "too many failed logins for this account from your address; try again in 60 s"
    assert err(con) == f"chat: {limited}\n"


def test_scripted_mode_runs_each_line_and_exits_0(connect, server) -> None:
    bob = connect("bob")
    bob.ok("join", room="general")
    bob.ok("send", room="general", text="earlier words")
    connect("alice")
    script = "/join #general\nhello from a script\n/me nods\n/msg bob psst\n/who\n"
    con = console(script)
    assert run(server, "login", "--user", "alice", con=con) == 0, err(con)
    text = out(con)
    assert "<bob> earlier words" in text
    assert "<alice> hello from a script" in text
    assert "* alice nods" in text
    assert "-> *bob* psst" in text
    assert "+alice" in text
    assert "\x1b" not in text
    assert bob.next_event("message")["text"] == "hello from a script"
    assert bob.next_event("message")["text"] == "/me nods"
    assert bob.next_event("dm")["text"] == "psst"
    assert err(con) == ""


def test_scripted_mode_rejoins_rooms_quietly_and_exits_1_on_a_refusal(connect, server) -> None:
    alice = connect("alice")
    alice.ok("join", room="general")
    alice.ok("send", room="general", text="old news")
    con = console("in general again\n/msg nobody-here hi\n")
    assert run(server, "login", "--user", "alice", con=con) == 1
    assert "old news" not in out(con)  # no backlog for scripts
    assert "<alice> in general again" in out(con)
    assert "not sent to *nobody-here*" in err(con)


def test_scripted_mode_through_the_installed_entry_point(connect, server) -> None:
    """The real process: stdin is a pipe, so `chat login` runs the script and exits."""
    bob = connect("bob")
    bob.ok("join", room="lobby")
    connect("alice")
    result = subprocess.run(
        [sys.executable, "-m", "client", "login", "--user", "alice"],
        input="/join lobby\nfrom a pipe\n",
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env=chat_env(CHAT_SERVER="{}:{}".format(*server.address), CHAT_PASSWORD=PASSWORD),
    )
    assert result.returncode == 0, result.stderr
    assert "<alice> from a pipe" in result.stdout
    assert bob.next_event("message")["text"] == "from a pipe"


def test_version_prints_the_package_version_and_exits_0() -> None:
    con = console()
    assert main(["--version"], {}, con) == 0
    assert out(con) == f"chat {chatd.__version__}\n"
    assert err(con) == ""


def test_register_reads_the_password_from_a_pipe(server) -> None:
    con = console("piped secret\nnot read\n")
    assert run(server, "register", "--user", "alice", con=con, password=None) == 0, err(con)
    assert "registered alice" in out(con)
    WireClient(server.address).ok("login", username="alice", password="piped secret")


def test_chat_password_wins_over_a_pipe(server) -> None:
    con = console("piped secret\n")
    assert run(server, "register", "--user", "alice", con=con) == 0, err(con)
    WireClient(server.address).ok("login", username="alice", password=PASSWORD)


def test_register_with_an_empty_pipe_is_a_usage_error(server) -> None:
    con = console("")
    assert run(server, "register", "--user", "alice", con=con, password=None) == 2
    assert "CHAT_PASSWORD" in err(con)


def test_register_hint_repeats_the_server_flag(server) -> None:
    con = console()
    address = "{}:{}".format(*server.address)
    argv = ["register", "--server", address, "--user", "alice"]
    assert main(argv, {"CHAT_PASSWORD": PASSWORD}, con) == 0
    assert out(con) == f"registered alice; now: chat login --server {address} --user alice\n"


def test_readme_quickstart_shows_the_client_against_its_own_server() -> None:
    """Two fenced blocks stay (CI runs the second); the chat example is an indented one."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert quickstart.count("```sh") == 2
    indented = [line.strip() for line in quickstart.splitlines() if line.startswith("    ")]
    assert ".venv/bin/chat register --user alice" in indented
    assert ".venv/bin/chat login --user alice" in indented
