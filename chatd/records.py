"""The values the server passes around: immutable msgspec Structs, never ORM objects.

The store returns them, the hub and handlers consume them. `Message` and
`FileInfo` are the wire's message and file objects themselves: each dialect
encodes them as they are (JSON) or reads their fields (IRC). A Struct costs
about 0.1 us to build, a frozen dataclass 2.4 us, and every stored message
is built once. None of them can be part of a reference cycle (they hold
strings, numbers and one another), so the garbage collector does not track
them (gc=False): tracked, they made it run twice as often under load.
"""

from __future__ import annotations

import time

from msgspec import UNSET, Struct, UnsetType

from chatd.names import parse_ts


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class UserRecord(Struct, frozen=True, gc=False):
    id: int
    username: str
    password_hash: str
    disabled: bool
    created_ms: int = 0


class RoomRecord(Struct, frozen=True, gc=False):
    id: int
    name: str
    topic: str


class RoomSummary(Struct, frozen=True, gc=False):
    """One entry of the `rooms` reply, as the wire has it."""

    room: str
    topic: str
    members: int
    messages: int


class FileInfo(Struct, frozen=True, gc=False):
    """An attachment's metadata: the `file` object of a message and of a `fetch` reply."""

    id: int
    name: str
    size: int
    mime: str
    sha256: str


class Message(Struct, frozen=True, omit_defaults=True, gc=False):
    """A stored message: the message object of PROTOCOL.md, field for field.

    `room` is null for a direct message, which has `to` instead; `file` only
    when the message announces one. UNSET fields are left out on the wire.
    """

    id: int
    room: str | None
    user: str
    text: str
    ts: str
    to: str | UnsetType = UNSET
    file: FileInfo | UnsetType = UNSET
    reply_to: int | UnsetType = UNSET
    mentions: list[str] | UnsetType = UNSET  # registered users it mentions, only when some
    edited: str | UnsetType = UNSET  # when it was last edited
    deleted: bool | UnsetType = UNSET  # True for a deleted message, whose text is ""

    @property
    def ts_ms(self) -> int:
        return parse_ts(self.ts)


def dm_pair(a: int, b: int) -> str:
    low, high = sorted((a, b))
    return f"{low}:{high}"


class NewFile(Struct, frozen=True, gc=False):
    """An upload's metadata, stored with the message that announces it."""

    sha256: str
    size: int
    name: str
    mime: str


class FileAccess(Struct, frozen=True, gc=False):
    """A stored file and who may fetch it: a room's members, or a conversation's two parties."""

    file: FileInfo
    room: str | None
    parties: tuple[int | None, int | None]


class NewMessage(Struct, frozen=True, gc=False):
    """A message to store: to a room (by name), or to a recipient, perhaps announcing a file."""

    author: UserRecord
    text: str
    room: str | None = None
    recipient: UserRecord | None = None
    attachment: NewFile | None = None
    reply_to: int | None = None

    @property
    def is_room_text(self) -> bool:
        """A room message without a file: the common kind, which has its own fast paths."""
        return self.room is not None and self.attachment is None

    def stored_as(
        self, message_id: int, ts: str, file: FileInfo | None, mentions: list[str]
    ) -> Message:
        """The message as stored with that id, time (format_ts), file and mentions."""
        to: str | UnsetType = UNSET
        if self.room is None:
            assert self.recipient is not None
            to = self.recipient.username
        return Message(
            message_id,
            self.room,
            self.author.username,
            self.text,
            ts,
            to,
            UNSET if file is None else file,
            UNSET if self.reply_to is None else self.reply_to,
            mentions or UNSET,
        )


class NewJoin(Struct, frozen=True, gc=False):
    """`user` joins `room` (by name), which is made if it does not exist."""

    user: UserRecord
    room: str


class NewPart(Struct, frozen=True, gc=False):
    user: UserRecord
    room: str


class NewTopic(Struct, frozen=True, gc=False):
    user: UserRecord
    room: str
    topic: str


class NewEdit(Struct, frozen=True, gc=False):
    """`user` replaces the text of message `message_id` (theirs, or it is refused)."""

    user: UserRecord
    message_id: int
    text: str


class NewDelete(Struct, frozen=True, gc=False):
    user: UserRecord
    message_id: int


class NewRead(Struct, frozen=True, gc=False):
    """`user` has read up to `message_id` in `room`, or in the conversation with `peer`."""

    user: UserRecord
    message_id: int
    room: str | None = None
    peer: UserRecord | None = None


NewChange = NewMessage | NewJoin | NewPart | NewTopic | NewEdit | NewDelete | NewRead


def deleted_message(message: Message) -> Message:
    """What is left of a deleted message: PROTOCOL.md's placeholder, text empty."""
    return Message(message.id, message.room, message.user, "", message.ts, message.to, deleted=True)
