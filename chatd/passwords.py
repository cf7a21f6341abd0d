"""bcrypt hashing, bounded so that a burst of logins cannot starve chat traffic.

bcrypt releases the GIL but holds a whole core per hash, so at most one hash
per core runs at a time; the others wait their turn. bcrypt 5 raises on
passwords over 72 bytes, so the length is checked before it is called.
"""

from __future__ import annotations

import os
import threading

import bcrypt

from chatd.names import PASSWORD_MAX_BYTES

# why: as in /etc/shadow, a hash that starts so matches no password (an IRC guest's account).
LOCKED = "!"


class PasswordHasher:
    def __init__(self, rounds: int = 12, concurrency: int | None = None) -> None:
        self.rounds = rounds
        # why: the cores this process may use, which under taskset is fewer than the machine's.
        self._slots = threading.BoundedSemaphore(concurrency or len(os.sched_getaffinity(0)))
        # why: an unknown user is checked against this, so it costs what a wrong password costs.
        self._dummy_hash = self.hash("not anybody's password")

    def hash(self, password: str) -> str:
        """A bcrypt hash of a password already checked to be at most 72 bytes."""
        secret = password.encode("utf-8")
        with self._slots:
            return bcrypt.hashpw(secret, bcrypt.gensalt(self.rounds)).decode("ascii")

    def verify(self, password: str, hashed: str | None) -> bool:
        """True when `password` matches; `hashed=None` (no such user) spends the same time."""
        secret = password.encode("utf-8")
        usable = hashed is not None and not hashed.startswith(LOCKED)
        target = hashed if usable and len(secret) <= PASSWORD_MAX_BYTES else None
        if target is None:
            secret = b"x" * min(len(secret), PASSWORD_MAX_BYTES)
        with self._slots:
            matched = bcrypt.checkpw(secret, (target or self._dummy_hash).encode("ascii"))
        return target is not None and matched
