"""Attachment bytes in the database (a cluster's store), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from chatd.blobs import DatabaseBlobs
from chatd.store import open_store
from chatd.store.blobs import BLOB_CHUNK_BYTES


@pytest.fixture
def blobs(db_url: str, tmp_path: Path):
    store = open_store(db_url)
    yield DatabaseBlobs(tmp_path / "files", store)
    store.close()


def keep(blobs: DatabaseBlobs, data: bytes) -> str:
    path, handle = blobs.open_incoming()
    with handle:
        handle.write(data)
    sha256 = hashlib.sha256(data).hexdigest()
    blobs.keep(path, sha256)
    assert not path.exists()  # the upload's local file is gone once stored
    return sha256


@pytest.mark.parametrize(
    "size", [0, 1, BLOB_CHUNK_BYTES - 1, BLOB_CHUNK_BYTES, 3 * BLOB_CHUNK_BYTES + 17]
)
def test_bytes_read_back_at_any_offset(blobs: DatabaseBlobs, size: int) -> None:
    data = os.urandom(size)
    sha256 = keep(blobs, data)
    assert blobs.read(sha256, 0, size + 10) == data
    for offset in {0, 1, size // 2, BLOB_CHUNK_BYTES - 3, size}:
        if offset <= size:
            assert blobs.read(sha256, offset, 5000) == data[offset : offset + 5000]


def test_the_same_bytes_are_stored_once(blobs: DatabaseBlobs, db_url: str) -> None:
    data = os.urandom(BLOB_CHUNK_BYTES + 5)
    first = keep(blobs, data)
    assert keep(blobs, data) == first
    from sqlalchemy import text

    store = open_store(db_url)
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT COUNT(*) FROM blob_chunks")).scalar_one()
    store.close()
    assert rows == 2


def test_leftover_uploads_are_removed_at_start(db_url: str, tmp_path: Path) -> None:
    store = open_store(db_url)
    leftover = tmp_path / "files" / "incoming" / "partial"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half an upload")
    DatabaseBlobs(tmp_path / "files", store)
    assert not leftover.exists()
    store.close()


def chunk_rows(db_url: str, sha256: str) -> int:
    from sqlalchemy import text

    store = open_store(db_url)
    with store.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT COUNT(*) FROM blob_chunks WHERE sha256 = :sha"), {"sha": sha256}
        ).scalar_one()
    store.close()
    return int(rows)


def test_discard_erases_bytes_once_no_upload_holds_them(blobs: DatabaseBlobs, db_url: str) -> None:
    data = os.urandom(BLOB_CHUNK_BYTES + 1)
    sha256 = keep(blobs, data)
    blobs.discard(sha256)  # an upload of these bytes awaits its message: kept
    assert blobs.read(sha256, 0, len(data)) == data
    blobs.release(sha256)
    blobs.discard(sha256)
    assert chunk_rows(db_url, sha256) == 0
    assert blobs.read(sha256, 0, len(data)) == b""


def test_a_second_upload_of_the_same_bytes_holds_them_until_its_release(
    blobs: DatabaseBlobs, db_url: str
) -> None:
    data = os.urandom(100)
    sha256 = keep(blobs, data)
    keep(blobs, data)
    blobs.release(sha256)
    blobs.discard(sha256)
    assert chunk_rows(db_url, sha256) == 1
    blobs.release(sha256)
    blobs.discard(sha256)
    assert chunk_rows(db_url, sha256) == 0
