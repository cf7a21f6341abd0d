"""Uploads in progress: each belongs to the connection that began it.

An upload is dropped, leaving nothing behind, when its connection closes or
when it has been idle for --upload-timeout; the housekeeping thread expires
them while the owner's reader thread may be writing, hence the lock on each.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from chatd.errors import ChatError, ErrorCode
from chatd.records import NewFile, UserRecord

log = logging.getLogger(__name__)


class Owner(Protocol):
    peer: str


@dataclass(slots=True)
class Upload:
    token: str
    owner: Owner
    user: UserRecord
    room: str | None
    recipient: UserRecord | None
    meta: NewFile
    caption: str | None
    path: Path
    handle: BinaryIO
    last_activity: float
    received: int = 0
    unsynced: int = 0  # bytes written since the last fdatasync
    digest: Any = field(default_factory=hashlib.sha256)
    # guards handle, received and digest against expiry from another thread
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False

    def close(self) -> None:
        with self.lock:
            if not self.closed:
                self.closed = True
                self.handle.close()


class Uploads:
    """Uploads in progress, by token."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_token: dict[str, Upload] = {}

    def add(self, upload: Upload) -> None:
        with self._lock:
            self._by_token[upload.token] = upload

    def owned(self, token: str, owner: Owner) -> Upload:
        """The caller's upload; no_such_upload for unknown, finished or others' tokens."""
        with self._lock:
            upload = self._by_token.get(token)
        if upload is None or upload.owner is not owner:
            raise ChatError(ErrorCode.NO_SUCH_UPLOAD, "there is no such upload on this connection")
        return upload

    def remove(self, upload: Upload, *, discard: bool) -> None:
        with self._lock:
            self._by_token.pop(upload.token, None)
        try:
            upload.close()
        finally:
            if discard:
                upload.path.unlink(missing_ok=True)

    def in_flight_bytes(self, user: UserRecord) -> int:
        with self._lock:
            return sum(u.meta.size for u in self._by_token.values() if u.user.id == user.id)

    def discard_owned_by(self, owner: Owner) -> None:
        with self._lock:
            mine = [u for u in self._by_token.values() if u.owner is owner]
        for upload in mine:
            self.remove(upload, discard=True)

    def expire(self, now: float, idle_seconds: float) -> int:
        with self._lock:
            stale = [u for u in self._by_token.values() if now - u.last_activity > idle_seconds]
        for upload in stale:
            log.info("%s: upload %s expired", upload.owner.peer, upload.meta.name)
            self.remove(upload, discard=True)
        return len(stale)
