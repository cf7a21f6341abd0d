"""A full disk: writes are refused with storage_full, nothing is half-stored, one log line.

SQLite's `max_page_count` makes the database full exactly as a full disk
does (SQLITE_FULL, "database or disk is full"), on the writer's own
connection, without a filesystem of the test's own.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import logging
import os
import sqlite3

import pytest
from sqlalchemy.exc import OperationalError

from chatd.blobs import DirectoryBlobs
from chatd.diskspace import is_storage_full

# why: PostgreSQL has no per-connection size cap to stand in for a full disk.
MAX_PAGE_COUNT = pytest.mark.sqlite_only("SQLite's max_page_count stands in for a full disk")


def _fill_database(server) -> None:
    """No page more for the writer's connection: the next insert finds the disk full."""
    driver = server.services.store._raw.driver_connection
    pages = driver.execute("PRAGMA page_count").fetchone()[0]
    driver.execute(f"PRAGMA max_page_count = {pages}")


def _free_database(server) -> None:
    server.services.store._raw.driver_connection.execute("PRAGMA max_page_count = 1073741823")


def _disk_lines(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "chatd.diskspace"]


@MAX_PAGE_COUNT
def test_a_full_disk_refuses_messages_and_stores_nothing_until_space_is_back(
    connect, server, caplog
):
    caplog.set_level(logging.INFO)
    alice, bob = connect("alice"), connect("bob")
    for client in (alice, bob):
        client.ok("join", room="general")
    bob.drain()
    _fill_database(server)
    big = "€" * 4000  # 12000 bytes: more than a page, so it needs new ones
    for _ in range(3):
        reply = alice.request("send", room="general", text=big)
        assert reply["error"] == "storage_full", reply
        assert "disk space" in reply["message"]
    assert [e for e in bob.drain() if e["event"] == "message"] == []
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].name == "chatd.diskspace", errors
    assert not any(record.exc_info for record in caplog.records)

    _free_database(server)
    sent = alice.ok("send", room="general", text="space again")["message"]
    assert bob.next_event("message")["id"] == sent["id"]
    history = bob.ok("history", room="general")["messages"]
    assert [m["text"] for m in history] == ["space again"]
    assert [r.levelname for r in _disk_lines(caplog)] == ["ERROR", "WARNING"]


@MAX_PAGE_COUNT
def test_a_batch_refused_for_space_leaves_other_connections_working(connect, server):
    alice, bob = connect("alice"), connect("bob")
    for client in (alice, bob):
        client.ok("join", room="general")
    _fill_database(server)
    assert bob.error("send", room="general", text="€" * 4000) == "storage_full"
    assert alice.error("dm", to="bob", text="€" * 4000) == "storage_full"
    _free_database(server)
    assert bob.ok("dm", to="alice", text="hello")["message"]["to"] == "alice"


class _FullDisk(io.RawIOBase):
    """A file that takes no byte: every write fails as on a full disk."""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_an_upload_that_finds_the_disk_full_is_dropped_with_storage_full(
    connect, server, monkeypatch
):
    alice = connect("alice")
    alice.ok("join", room="general")
    opened: list = []

    def open_full(self):
        path, handle = DirectoryBlobs.open_incoming.__wrapped__(self)
        handle.close()
        opened.append(path)
        return path, io.BufferedWriter(_FullDisk(), buffer_size=16)

    open_full.__wrapped__ = DirectoryBlobs.open_incoming
    monkeypatch.setattr(DirectoryBlobs, "open_incoming", open_full)
    data = b"0123456789" * 10
    token = alice.ok(
        "upload", room="general", name="f", size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )["upload"]
    chunk = base64.b64encode(data).decode()
    reply = alice.request("chunk", upload=token, offset=0, data=chunk)
    assert reply["error"] == "storage_full", reply
    assert not opened[0].exists()
    assert alice.error("chunk", upload=token, offset=0, data=chunk) == "no_such_upload"


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
    ],
)
def test_out_of_space_errors_are_recognised(error):
    assert is_storage_full(error)


def test_sqlite_full_is_recognised_directly_and_through_sqlalchemy(tmp_path):
    connection = sqlite3.connect(tmp_path / "tiny.db", isolation_level=None)
    connection.execute("CREATE TABLE t (x)")
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.OperationalError) as raised:
        connection.execute("INSERT INTO t VALUES (?)", ("x" * 10_000,))
    connection.close()
    assert is_storage_full(raised.value)
    wrapped = OperationalError("INSERT ...", {}, raised.value)
    assert is_storage_full(wrapped)


def test_postgresql_disk_full_is_recognised():
    errors = pytest.importorskip("psycopg.errors")
    assert is_storage_full(errors.DiskFull("could not extend file"))


@pytest.mark.parametrize(
    "error",
    [
        OSError("disk full"),  # no errno: not known to be about space
        OSError(errno.EACCES, "Permission denied"),
        ValueError("nothing to do with disks"),
    ],
)
def test_other_errors_are_not_mistaken_for_a_full_disk(error):
    assert not is_storage_full(error)
