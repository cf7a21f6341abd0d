"""Server events as typed values: what the fan-out carries and each dialect renders.

A `message` or `dm` event is a records.Message itself (its `room` says
which); the other events are the Structs below, tagged with their wire name.
`EventName` is the one list of event names, shared with the `chat` client.
"""

from __future__ import annotations

from enum import StrEnum

from msgspec import UNSET, Struct, UnsetType

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


AnyEvent = Message | Event


def event_name(event: AnyEvent) -> EventName:
    if isinstance(event, Message):
        return EventName.DM if event.room is None else EventName.MESSAGE
    tag = event.__struct_config__.tag
    assert isinstance(tag, str)
    return EventName(tag)
