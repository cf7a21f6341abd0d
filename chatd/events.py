"""Server events as typed values: what the fan-out carries and each dialect renders.

A `message` or `dm` event is a records.Message itself (its `room` says
which), an `edit` event a MessageEdit holding one; the other events are the
Structs below, tagged with their wire name.
`EventName` is the one list of event names, shared with the `chat` client.
"""

from __future__ import annotations

from enum import StrEnum

from msgspec import UNSET, Struct, UnsetType, field

from chatd.records import Message


class EventName(StrEnum):
    WELCOME = "welcome"
    MESSAGE = "message"
    DM = "dm"
    JOIN = "join"
    PART = "part"
    TOPIC = "topic"
    ERROR = "error"
    SHUTDOWN = "shutdown"
    EDIT = "edit"
    DELETE = "delete"
    READ = "read"


class Event(Struct, frozen=True, tag_field="event", gc=False):
    """An event other than a message."""


class Welcome(Event, frozen=True, omit_defaults=True, tag=EventName.WELCOME.value):
    server: str
    version: str
    protocol: int
    history_size: int
    max_file_bytes: int
    features: list[str]  # the extensions spoken (PROTOCOL.md), possibly none
    node: str | UnsetType = UNSET  # the node that answered, in a cluster


class Joined(Event, frozen=True, tag=EventName.JOIN.value):
    room: str
    user: str


class Parted(Event, frozen=True, tag=EventName.PART.value):
    room: str
    user: str


class TopicChanged(Event, frozen=True, tag=EventName.TOPIC.value):
    room: str
    topic: str
    user: str


class ErrorEvent(Event, frozen=True, tag=EventName.ERROR.value):
    """Said before the server closes a connection on its own."""

    error: str
    message: str


class Shutdown(Event, frozen=True, tag=EventName.SHUTDOWN.value):
    reason: str


class MessageEdit(Struct, frozen=True, gc=False):
    """The `edit` event: the message object's fields as they are now (with `edited`)."""

    message: Message


class MessageDeleted(Event, frozen=True, omit_defaults=True, tag=EventName.DELETE.value):
    """A message was deleted: in `room`, or in the conversation `with` that user."""

    id: int
    room: str | UnsetType = UNSET
    with_: str | UnsetType = field(default=UNSET, name="with")


class ReadMarker(Event, frozen=True, omit_defaults=True, tag=EventName.READ.value):
    """The user's read marker moved, on another connection or by their own message."""

    last_read: int
    room: str | UnsetType = UNSET
    with_: str | UnsetType = field(default=UNSET, name="with")


AnyEvent = Message | MessageEdit | Event


def event_name(event: AnyEvent) -> EventName:
    if isinstance(event, Message):
        return EventName.DM if event.room is None else EventName.MESSAGE
    if isinstance(event, MessageEdit):
        return EventName.EDIT
    tag = event.__struct_config__.tag
    assert isinstance(tag, str)
    return EventName(tag)
