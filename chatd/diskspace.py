"""Running out of disk space: recognised whichever layer reports it, and told once.

A full disk is not a bug in chatd, so it must not be answered `internal`
with a traceback per request. Writes are refused with `storage_full` (the
transaction rolled back, nothing half-stored), the operator gets one log
line when it starts and one when storing works again, and clients may
retry: the first write after space is freed succeeds.
"""

from __future__ import annotations

import errno
import logging
import threading

from chatd.errors import ChatError, ErrorCode

log = logging.getLogger(__name__)

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# SQLite's primary result code for "database or disk is full" (sqlite3.h).
_SQLITE_FULL = 13
# PostgreSQL's SQLSTATE disk_full (class 53, insufficient resources).
_POSTGRES_DISK_FULL = "53100"


def is_storage_full(exc: BaseException) -> bool:
    """True when `exc`, or what it wraps (SQLAlchemy's `orig`, a cause), means no space left."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return True
        code = getattr(current, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF == _SQLITE_FULL:
            return True
        if getattr(current, "sqlstate", None) == _POSTGRES_DISK_FULL:
            return True
        wrapped = getattr(current, "orig", None)
        current = wrapped if isinstance(wrapped, BaseException) else current.__cause__
    return False


class DiskAlarm:
    """One log line when writes start failing for lack of space, one when they work again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards _full
        self._full = False

    def refusal(self, exc: BaseException) -> ChatError:
        """The error to answer for a write that found the disk full."""
        with self._lock:
            if not self._full:
                self._full = True
                first = next(iter(str(exc).splitlines()), type(exc).__name__)
                log.error(
                    "the disk is full (%s): writes are refused with storage_full "
                    "until space is freed",
                    first,
                )
        return ChatError(
            ErrorCode.STORAGE_FULL,
            "the server is out of disk space and stored nothing; try again later",
        )

    def wrote(self) -> None:
        """A write succeeded: if the disk was full, it is not any more."""
        if not self._full:  # the common case reads one attribute, without the lock
            return
        with self._lock:
            if self._full:
                self._full = False
                log.warning("the disk has space again: writes work")
