"""What `chat` remembers between runs on this machine: the newest direct message each account saw.

At login the client shows the direct messages that came in since then,
from everyone, so nothing sent while it was away stays hidden. The file is
small JSON under $XDG_STATE_HOME (the XDG base directory spec), readable by
its owner only, written atomically; several `chat`s at once merge their
markers rather than overwrite each other's.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

FORMAT_VERSION = 1


def state_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "chat"


def account_key(address: tuple[str, int], username: str) -> str:
    """One account on one server: `alice@chat.example.org:7700` (the name ignoring case)."""
    host, port = address
    return f"{username.lower()}@{host}:{port}"


class SeenMarkers:
    """The newest direct message id one account has been shown here."""

    def __init__(self, path: Path, key: str) -> None:
        self.path = path
        self.key = key
        self._lock = threading.Lock()  # guards _newest and the file
        self._newest = self._read().get(key)

    @classmethod
    def for_account(
        cls, env: Mapping[str, str], address: tuple[str, int], username: str
    ) -> SeenMarkers:
        return cls(state_dir(env) / "seen.json", account_key(address, username))

    def get(self) -> int | None:
        """None when this account has never been shown a direct message here."""
        return self._newest

    def advance(self, message_id: int) -> None:
        """Remember `message_id` if it is newer; a file that cannot be written is left alone."""
        with self._lock:
            if self._newest is not None and message_id <= self._newest:
                return
            self._newest = message_id
            markers = self._read()
            markers[self.key] = max(markers.get(self.key, 0), message_id)
            with contextlib.suppress(OSError):
                self._write(markers)

    def _read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        direct = data.get("direct") if isinstance(data, dict) else None
        if not isinstance(direct, dict):
            return {}
        return {
            key: value
            for key, value in direct.items()
            if isinstance(key, str) and isinstance(value, int) and not isinstance(value, bool)
        }

    def _write(self, markers: dict[str, int]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = json.dumps({"version": FORMAT_VERSION, "direct": markers}, indent=1)
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".seen-")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(data)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
