"""The result of each op on success, as typed values: what a dialect renders as the reply.

The JSON dialect encodes a result's fields after `"id"` and `"ok": true`; the
IRC dialect reads them (a join's members become 353 lines). `history` holds
Outgoing messages, whose encodings the fan-out has usually made already.
"""

from __future__ import annotations

from typing import Any

from msgspec import UNSET, Struct, UnsetType, field

from chatd.records import FileInfo, Message, RoomSummary


class Reply(Struct, frozen=True, gc=False):
    """A successful result with nothing to say (`ping`, `quit`): `{}`."""


class Registered(Reply, frozen=True):
    username: str


class LoggedIn(Reply, frozen=True):
    username: str
    rooms: list[str]


class JoinReply(Reply, frozen=True):
    room: str
    topic: str
    members: list[str]
    online: list[str]
    history: list[Any]  # outgoing.Outgoing, oldest first


class PartReply(Reply, frozen=True):
    room: str


class MessageReply(Reply, frozen=True):
    """send, dm, finish: the stored message (the fan-out usually answers these itself)."""

    message: Message


class Messages(Reply, frozen=True):
    messages: list[Message]


class RoomList(Reply, frozen=True):
    rooms: list[RoomSummary]


class WhoReply(Reply, frozen=True):
    room: str
    members: list[str]
    online: list[str]


class TopicReply(Reply, frozen=True):
    room: str
    topic: str


class UploadStarted(Reply, frozen=True):
    upload: str
    chunk_bytes: int


class ChunkReceived(Reply, frozen=True):
    received: int


class FileChunk(Reply, frozen=True):
    file: FileInfo
    offset: int
    data: str
    eof: bool


class ReadReply(Reply, frozen=True, omit_defaults=True):
    """mark_read: the marker after the call, in the conversation named."""

    last_read: int
    room: str | UnsetType = UNSET
    with_: str | UnsetType = field(default=UNSET, name="with")


class RoomUnread(Struct, frozen=True, gc=False):
    room: str
    last_read: int
    last_id: int
    unread: int
    mentions: int


class DirectUnread(Struct, frozen=True, gc=False, rename={"with_": "with"}):
    with_: str
    last_read: int
    last_id: int
    unread: int
    mentions: int


class UnreadReply(Reply, frozen=True):
    rooms: list[RoomUnread]
    dms: list[DirectUnread]


class DeleteReply(Reply, frozen=True):
    message_id: int
