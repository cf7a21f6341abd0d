"""Attachment bytes, by content: a directory on a single server, the database in a cluster.

A single server keeps a content-addressed directory, one file per distinct
sha256. Why files and not database rows: a 25 MiB attachment in SQLite would
pass through the WAL and bloat every backup of the chat history, and chunked
reads of a file are cheap with no transaction held. Naming each file by its
sha256 stores the same content once, however often it is shared. The
database keeps the metadata and which message announced it.

A cluster's nodes share no disk, so there the bytes go into the database
(chatd/store/blobs.py): an attachment uploaded through one node downloads
through any other, and PostgreSQL's backups hold them with the messages.

Either way uploads arrive in a local `incoming/` directory and are stored
only once complete and verified (after an fsync, renamed into place, or
copied into the database in one transaction), so a crash never leaves a
partial file under a content name; whatever `incoming/` holds at start-up
is a crash leftover and is removed.

Bytes no message refers to any more (their last message was deleted) are
removed after the delete commits (`discard`), unless an upload of the same
content is between `keep` and its message's commit (`release`) on this node.
"""

from __future__ import annotations

import os
import secrets
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO, Protocol

from chatd.permissions import PRIVATE_DIR_MODE, make_private_dir


class Blobs(Protocol):
    root: Path  # the local directory: uploads in progress, and the bytes on a single server

    def open_incoming(self) -> tuple[Path, BinaryIO]: ...

    def keep(self, incoming: Path, sha256: str) -> None:
        """Make a complete, verified upload durable under its content name.

        Held until `release`: its message is not stored yet, so no delete
        may take these bytes away meanwhile.
        """
        ...

    def release(self, sha256: str) -> None:
        """The message of a kept upload was stored, or refused."""
        ...

    def discard(self, sha256: str) -> None:
        """Remove bytes that no file refers to any more, unless an upload holds them."""
        ...

    def read(self, sha256: str, offset: int, size: int) -> bytes: ...


class BlobRowStore(Protocol):
    def keep_blob(self, sha256: str, source: BinaryIO, size: int) -> None: ...

    def read_blob(self, sha256: str, offset: int, size: int) -> bytes: ...

    def erase_blob(self, sha256: str) -> None: ...


class _HeldUploads(ABC):
    """The local directory of uploads in progress (emptied at start), and the holds on
    kept bytes whose message is not stored yet."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"
        for directory in (root, self.incoming):
            make_private_dir(directory)
        for leftover in self.incoming.iterdir():
            leftover.unlink(missing_ok=True)
        # guards _held and the existence of the stored bytes between a keep and a discard
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}  # sha256 -> uploads kept whose message is not stored yet

    def open_incoming(self) -> tuple[Path, BinaryIO]:
        """A fresh private file for an upload in progress."""
        path = self.incoming / secrets.token_hex(16)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        return path, os.fdopen(descriptor, "wb")

    def keep(self, incoming: Path, sha256: str) -> None:
        with self._lock:
            self._held[sha256] = self._held.get(sha256, 0) + 1
            try:
                self._store(incoming, sha256)
            except BaseException:
                self._unhold(sha256)  # nothing was kept: nothing to hold
                raise

    def release(self, sha256: str) -> None:
        with self._lock:
            self._unhold(sha256)

    def discard(self, sha256: str) -> None:
        with self._lock:
            if sha256 not in self._held:
                self._erase(sha256)

    def _unhold(self, sha256: str) -> None:
        count = self._held.get(sha256, 0) - 1
        if count > 0:
            self._held[sha256] = count
        else:
            self._held.pop(sha256, None)

    @abstractmethod
    def _store(self, incoming: Path, sha256: str) -> None: ...

    @abstractmethod
    def _erase(self, sha256: str) -> None: ...


class DirectoryBlobs(_HeldUploads):
    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def _store(self, incoming: Path, sha256: str) -> None:
        target = self.path_for(sha256)
        if target.exists():
            incoming.unlink(missing_ok=True)
            return
        with open(incoming, "rb") as written:
            os.fsync(written.fileno())
        target.parent.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
        os.replace(incoming, target)
        _fsync_directory(target.parent)

    def _erase(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)

    def read(self, sha256: str, offset: int, size: int) -> bytes:
        with open(self.path_for(sha256), "rb") as blob:
            blob.seek(offset)
            return blob.read(size)


class DatabaseBlobs(_HeldUploads):
    def __init__(self, root: Path, rows: BlobRowStore) -> None:
        super().__init__(root)
        self._rows = rows

    def _store(self, incoming: Path, sha256: str) -> None:
        try:
            with open(incoming, "rb") as upload:
                self._rows.keep_blob(sha256, upload, os.fstat(upload.fileno()).st_size)
        finally:
            incoming.unlink(missing_ok=True)

    def _erase(self, sha256: str) -> None:
        self._rows.erase_blob(sha256)

    def read(self, sha256: str, offset: int, size: int) -> bytes:
        return self._rows.read_blob(sha256, offset, size)


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
