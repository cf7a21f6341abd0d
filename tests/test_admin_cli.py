"""`chatd user ...` and `chatd backup` beside a live server."""

from __future__ import annotations

import io
import sqlite3
import stat

import pytest
from conftest import PASSWORD
from wire import WireClient

from chatd.cli import main


@pytest.fixture
def env(db_url, tmp_path):
    return {"CHATD_DB": db_url, "CHATD_BCRYPT_ROUNDS": "4", "XDG_DATA_HOME": str(tmp_path)}


def run(env, monkeypatch, *argv: str, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(list(argv), env)


def test_operator_creates_accounts_when_registration_is_closed(
    start_server, env, monkeypatch, capsys
):
    server = start_server(registration="closed")
    assert run(env, monkeypatch, "user", "add", "Alice", stdin=PASSWORD + "\n") == 0
    assert capsys.readouterr().out == "created Alice\n"
    client = WireClient(server.address)
    assert client.error("register", username="bob", password=PASSWORD) == "registration_closed"
    assert client.ok("login", username="alice", password=PASSWORD)["username"] == "Alice"


def test_user_add_refuses_bad_names_passwords_and_taken_names(env, monkeypatch, capsys):
    assert run(env, monkeypatch, "user", "add", "x", stdin=PASSWORD + "\n") == 2
    assert run(env, monkeypatch, "user", "add", "alice", stdin="short\n") == 2
    assert run(env, monkeypatch, "user", "add", "alice", stdin=PASSWORD + "\n") == 0
    assert run(env, monkeypatch, "user", "add", "ALICE", stdin=PASSWORD + "\n") == 1
    err = capsys.readouterr().err
    assert "taken" in err and "8-72 bytes" in err and "Traceback" not in err
    assert PASSWORD not in err


def test_list_passwd_disable_enable(start_server, env, monkeypatch, capsys):
    server = start_server()
    for name in ("bob", "alice"):
        run(env, monkeypatch, "user", "add", name, stdin=PASSWORD + "\n")
    capsys.readouterr()
    assert run(env, monkeypatch, "user", "list") == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listing] == ["alice", "bob"]
    assert run(env, monkeypatch, "user", "passwd", "alice", stdin="new password\n") == 0
    client = WireClient(server.address)
    assert client.error("login", username="alice", password=PASSWORD) == "invalid_credentials"
    bob = WireClient(server.address)
    bob.ok("login", username="bob", password=PASSWORD)
    assert run(env, monkeypatch, "user", "disable", "bob") == 0
    assert bob.next_event("error", timeout=15)["error"] == "account_disabled"
    again = WireClient(server.address)
    assert again.error("login", username="bob", password=PASSWORD) == "account_disabled"
    assert run(env, monkeypatch, "user", "list") == 0
    assert "disabled" in capsys.readouterr().out
    assert run(env, monkeypatch, "user", "enable", "bob") == 0
    assert again.ok("login", username="bob", password=PASSWORD)["username"] == "bob"
    assert run(env, monkeypatch, "user", "disable", "nobody") == 1


@pytest.mark.sqlite_only("chatd backup is for SQLite databases (pg_dump for PostgreSQL)")
def test_backup_of_a_live_database(start_server, env, monkeypatch, tmp_path, capsys):
    server = start_server()
    client = WireClient(server.address)
    client.ok("register", username="alice", password=PASSWORD)
    client.ok("login", username="alice", password=PASSWORD)
    client.ok("join", room="general")
    for n in range(20):
        client.ok("send", room="general", text=f"message {n}")
    target = tmp_path / "backup.db"
    assert run(env, monkeypatch, "backup", str(target)) == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    copy = sqlite3.connect(target)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("SELECT count(*) FROM messages").fetchone() == (20,)
    finally:
        copy.close()
    assert not list(tmp_path.glob(".backup.db.partial"))


def test_backup_refuses_a_missing_database(monkeypatch, tmp_path, capsys):
    env = {"CHATD_DB": f"sqlite:///{tmp_path / 'none.db'}"}
    assert run(env, monkeypatch, "backup", str(tmp_path / "out.db")) == 1
    assert "chatd init-db" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()
