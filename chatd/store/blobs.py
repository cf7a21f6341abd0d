"""Attachment bytes as rows, for a cluster: nodes share the database, not a disk.

Chunks are written in a transaction of their own, outside the writers'
turn (chatd/db.py): a 25 MiB upload must not hold up every node's messages.
Keyed by content, so the same bytes are stored once; two nodes storing the
same bytes at once both succeed (the second finds them there).

Erasing (after a delete left bytes unreferenced) rechecks in its own
statement that no file row refers to them: a message with the same bytes
may have been stored through another node since.
"""

from __future__ import annotations

from typing import BinaryIO

from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.exc import IntegrityError

from chatd.store.base import StoreBase, blob_chunks, files

# why: a fetch reads about 48 KiB (a frame's worth); chunks near that size keep the
# rows read per fetch to one or two, and a 25 MiB file to 400 rows.
BLOB_CHUNK_BYTES = 64 * 1024


class BlobRows(StoreBase):
    def keep_blob(self, sha256: str, source: BinaryIO, size: int) -> None:
        """Store `size` bytes read from `source` under `sha256`, unless they are there."""
        if self.has_blob(sha256, size):
            return
        try:
            with self._refusing_when_full(), self.engine.begin() as connection:
                chunk = 0
                while data := source.read(BLOB_CHUNK_BYTES):
                    connection.execute(
                        insert(blob_chunks).values(sha256=sha256, chunk=chunk, data=data)
                    )
                    chunk += 1
        except IntegrityError:
            if not self.has_blob(sha256, size):
                raise

    def has_blob(self, sha256: str, size: int) -> bool:
        expected = -(-size // BLOB_CHUNK_BYTES)
        with self._read() as connection:
            count = connection.execute(
                select(func.count()).where(blob_chunks.c.sha256 == sha256)
            ).scalar_one()
        return int(count) == expected

    def read_blob(self, sha256: str, offset: int, size: int) -> bytes:
        """Up to `size` bytes from `offset`; fewer at the end."""
        if size <= 0:
            return b""
        first, last = offset // BLOB_CHUNK_BYTES, (offset + size - 1) // BLOB_CHUNK_BYTES
        with self._read() as connection:
            rows = connection.execute(
                select(blob_chunks.c.data)
                .where(blob_chunks.c.sha256 == sha256, blob_chunks.c.chunk.between(first, last))
                .order_by(blob_chunks.c.chunk)
            ).scalars()
            data = b"".join(rows)
        start = offset - first * BLOB_CHUNK_BYTES
        return data[start : start + size]

    def erase_blob(self, sha256: str) -> None:
        still_used = exists().where(files.c.sha256 == sha256)
        with self._refusing_when_full(), self.engine.begin() as connection:
            connection.execute(
                delete(blob_chunks).where(blob_chunks.c.sha256 == sha256, ~still_used)
            )
