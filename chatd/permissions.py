"""File modes: what chatd writes is readable by its own user only.

The database holds password hashes and every direct message; attachments,
backups and transcripts are as private. So every chatd command runs under
umask 077, and the places that create files or directories also give their
mode explicitly, so that a library call that changes the umask cannot widen
it. SQLite creates a database's -wal and -shm files with the database file's
own mode, which is why creating that file 0600 is enough for all three.
Files that exist already are never changed behind the operator's back: the
server warns about them at start instead.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

PRIVATE_UMASK = 0o077
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
READABLE_BY_OTHERS = stat.S_IRGRP | stat.S_IROTH


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Umask 077 while a command runs, then the caller's again (tests run commands in-process).

    Right for every chatd command: none writes anything meant for other users.
    A transcript someone wants to share is theirs to chmod afterwards.
    """
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def make_private_dir(path: Path) -> None:
    """Create `path` (and missing parents) 0700; an existing directory keeps its mode."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)


def create_private_file(path: Path) -> None:
    """Create `path` empty and 0600 unless it exists, so whatever opens it next keeps that mode."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))


def _exposed_mode(path: Path) -> int | None:
    """The mode of `path` if other users can read it, else None (also when it is missing).

    A sticky directory such as /tmp is shared on purpose and not chatd's to judge.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if not mode & READABLE_BY_OTHERS or (stat.S_ISDIR(mode) and mode & stat.S_ISVTX):
        return None
    return stat.S_IMODE(mode)


def exposure_warning(paths: Iterable[Path]) -> str | None:
    """One line naming the paths other users can read and the chmod that fixes them, or None."""
    exposed = [(path, mode) for path in paths if (mode := _exposed_mode(path)) is not None]
    if not exposed:
        return None
    listed = ", ".join(f"{path} (mode {mode:o})" for path, mode in exposed)
    commands = []
    for wanted, is_dir in ((PRIVATE_FILE_MODE, False), (PRIVATE_DIR_MODE, True)):
        targets = [shlex.quote(str(path)) for path, _ in exposed if path.is_dir() == is_dir]
        if targets:
            commands.append(f"chmod {wanted:o} {' '.join(targets)}")
    return (
        f"other local users can read chatd's data (password hashes, messages): {listed}; "
        f"run `{' && '.join(commands)}`"
    )
