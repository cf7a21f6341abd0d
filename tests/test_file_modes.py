"""Everything chatd writes is its user's alone: password hashes, every message, attachments."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_serve import ServeProcess, login
from test_files_e2e import upload

from chatd.cli import main
from chatd.db import sqlite_url, upgrade

sqlite_only = pytest.mark.skipif(
    bool(os.environ.get("CHATD_TEST_DB")), reason="file modes are about SQLite files"
)


pytestmark = pytest.mark.sqlite_only("the modes of an SQLite database and of the files beside it")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most users have, under which files come out readable by everyone."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_init_db_makes_a_private_data_directory_and_database(tmp_path):
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    assert main(["init-db"], env) == 0
    data_dir = tmp_path / "data" / "chatd"
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "chatd.db") == 0o600
    # why: directories made on the way are the command's too, made under its umask 077.
    assert mode(tmp_path / "data") == 0o700
    assert os.umask(0o022) == 0o022, "the command gave the caller its umask back"


def test_serve_writes_only_private_files(tmp_path):
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    env = {k: v for k, v in env.items() if not k.startswith("CHATD_")}
    server = ServeProcess(env=env)
    alice = login(server.address, "alice")
    alice.ok("join", room="general")
    alice.ok("send", room="general", text="a secret")
    data = b"the attachment's bytes"
    upload(alice, data, room="general")
    data_dir = tmp_path / "data" / "chatd"
    db = data_dir / "chatd.db"
    files = data_dir / "chatd.db.files"
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        assert {
            path.name: mode(path)
            for path in (
                data_dir,
                db,
                db.with_name("chatd.db-wal"),
                db.with_name("chatd.db-shm"),
                files,
                files / "incoming",
                files / sha256[:2],
                files / sha256[:2] / sha256,
            )
        } == {
            "chatd": 0o700,
            "chatd.db": 0o600,
            "chatd.db-wal": 0o600,
            "chatd.db-shm": 0o600,
            "chatd.db.files": 0o700,
            "incoming": 0o700,
            sha256[:2]: 0o700,
            sha256: 0o600,
        }
    finally:
        server.proc.send_signal(signal.SIGTERM)
        assert server.finish()[0] == 0


@sqlite_only
def test_backup_is_private_even_over_a_leftover_partial_file(db_url, tmp_path, capsys):
    target = tmp_path / "backup.db"
    leftover = tmp_path / ".backup.db.partial"
    leftover.write_bytes(b"from a backup that crashed")
    leftover.chmod(0o644)
    assert main(["backup", str(target)], {"CHATD_DB": db_url}) == 0
    assert mode(target) == 0o600
    assert not leftover.exists()


def exposure_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@sqlite_only
def test_a_readable_database_is_warned_about_at_start(start_server, tmp_path, caplog):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    db = shared / "chatd.db"
    url = sqlite_url(db)
    upgrade(url)
    db.chmod(0o644)
    shared.chmod(0o755)
    caplog.set_level(logging.WARNING)
    start_server(db=url, files_dir=str(tmp_path / "files"))
    [line] = exposure_warnings(caplog)
    assert f"{db} (mode 644)" in line and f"{shared} (mode 755)" in line
    assert f"chmod 600 {db}" in line and f"chmod 700 {shared}" in line
    # why: the open database's -wal and -shm take the database file's mode.
    assert f"{db}-wal" in line and f"{db}-shm" in line


@sqlite_only
def test_private_files_and_a_shared_sticky_directory_are_not_warned_about(
    start_server, tmp_path, caplog
):
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    url = sqlite_url(sticky / "chatd.db")
    upgrade(url)
    caplog.set_level(logging.WARNING)
    start_server(db=url, files_dir=str(tmp_path / "files"))
    assert exposure_warnings(caplog) == []


def test_a_readable_files_directory_is_warned_about(start_server, tmp_path, caplog):
    files = tmp_path / "files"
    files.mkdir(mode=0o755)
    files.chmod(0o755)
    caplog.set_level(logging.WARNING)
    start_server(files_dir=str(files))
    [line] = exposure_warnings(caplog)
    assert f"{files} (mode 755)" in line and f"chmod 700 {files}" in line
