"""The values the server passes around: frozen records, never ORM objects.

The store returns them, the hub and handlers consume them, and `wire()`
turns a message into the message object of PROTOCOL.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from chatd.names import format_ts


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    username: str
    password_hash: str
    disabled: bool
    created_ms: int = 0


@dataclass(frozen=True, slots=True)
class RoomRecord:
    id: int
    name: str
    topic: str


@dataclass(frozen=True, slots=True)
class RoomSummary:
    name: str
    topic: str
    members: int
    messages: int


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: int
    name: str
    size: int
    mime: str
    sha256: str

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "mime": self.mime,
            "sha256": self.sha256,
        }


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: int
    room: str | None
    user: str
    text: str
    ts_ms: int
    to: str | None = None
    file: FileRecord | None = None

    def wire(self) -> dict[str, Any]:
        """The message object of PROTOCOL.md."""
        message: dict[str, Any] = {
            "id": self.id,
            "room": self.room,
            "user": self.user,
            "text": self.text,
            "ts": format_ts(self.ts_ms),
        }
        if self.room is None:
            message["to"] = self.to
        if self.file is not None:
            message["file"] = self.file.wire()
        return message


def dm_pair(a: int, b: int) -> str:
    low, high = sorted((a, b))
    return f"{low}:{high}"


@dataclass(frozen=True, slots=True)
class NewFile:
    """An upload's metadata, stored with the message that announces it."""

    sha256: str
    size: int
    name: str
    mime: str


@dataclass(frozen=True, slots=True)
class FileAccess:
    """A stored file and who may fetch it: a room's members, or a conversation's two parties."""

    file: FileRecord
    room: str | None
    parties: tuple[int | None, int | None]


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store: to a room, or to a recipient, perhaps announcing a file."""

    author: UserRecord
    text: str
    room: RoomRecord | None = None
    recipient: UserRecord | None = None
    attachment: NewFile | None = None

    @property
    def is_room_text(self) -> bool:
        """A room message without a file: the common kind, which has its own fast paths."""
        return self.room is not None and self.attachment is None

    def stored_as(self, message_id: int, ts_ms: int, file: FileRecord | None) -> MessageRecord:
        """The record of this message once stored with that id, time and file."""
        return MessageRecord(
            message_id,
            None if self.room is None else self.room.name,
            self.author.username,
            self.text,
            ts_ms,
            None if self.recipient is None else self.recipient.username,
            file,
        )


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """What committing a batch gave each message, in batch order: its id and its file."""

    ts_ms: int  # one timestamp for the whole batch
    ids: list[int]
    files: list[FileRecord | None]
