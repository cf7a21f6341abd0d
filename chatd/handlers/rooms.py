"""Rooms: join, part, topic, who, rooms.

join, part and topic take the room's order lock (chatd/hub.py) before they
change anything and hold it until their reply is queued, so the reply and
the events around it are in order for everyone; a first join's database
write (and its fsync) holds up that room only.
"""

from __future__ import annotations

from chatd.commands import Request
from chatd.errors import ChatError, ErrorCode
from chatd.events import Joined, Parted, TopicChanged
from chatd.fanout import to_room, to_room_and_user
from chatd.handlers.common import room_as_member
from chatd.names import clean_topic, normalize_room
from chatd.outgoing import Outgoing
from chatd.records import RoomRecord
from chatd.replies import JoinReply, PartReply, RoomList, TopicReply, WhoReply
from chatd.requests import Join, Part, Rooms, Topic, Who
from chatd.services import Services


def join(req: Request, args: Join) -> JoinReply:
    """join {room} -> {room, topic, members, online, history}; creates the room."""
    services, me = req.services, req.user
    hub = services.hub
    name = normalize_room(args.room)
    req.session.settle()
    req.hold(hub.order_lock(name))
    current = hub.room_of_member(name, me.username)
    if current is None:
        current, joined = services.store.join(me.id, name)
        hub.add_member(current, me.username)
        if joined:
            event = Joined(name, me.username)
            req.after_reply(
                lambda: to_room_and_user(hub, name, me.username, event, exclude=req.session)
            )
        current = hub.room(name) or current
    members, online = hub.members(name)
    return JoinReply(name, current.topic, members, online, _recent(services, current))


def _recent(services: Services, room: RoomRecord) -> list[Outgoing]:
    """The room's last messages as its members were sent them (order lock held)."""
    hub = services.hub
    history = hub.recent(room.name)
    if history is None:
        upto = hub.visible_upto(room.name)
        stored = services.store.room_page(room, upto + 1, services.config.history_size)
        history = [Outgoing(message) for message in stored]
        hub.keep_recent(room.name, history)
    return history


def part(req: Request, args: Part) -> PartReply:
    """part {room} -> {room}; the room stays, with its history."""
    services, me = req.services, req.user
    hub = services.hub
    name = normalize_room(args.room)
    req.session.settle()
    req.hold(hub.order_lock(name))
    record = room_as_member(req, name)
    services.store.part(me.id, record.id)
    hub.remove_member(name, me.username)
    event = Parted(name, me.username)
    req.after_reply(lambda: to_room_and_user(hub, name, me.username, event, exclude=req.session))
    return PartReply(name)


def topic(req: Request, args: Topic) -> TopicReply:
    """topic {room, topic} -> {room, topic}; members see a topic event."""
    services, me = req.services, req.user
    hub = services.hub
    name = normalize_room(args.room)
    text = clean_topic(args.topic)
    req.session.settle()
    req.hold(hub.order_lock(name))
    record = room_as_member(req, name)
    services.store.set_topic(record.id, text)
    hub.set_topic(name, text)
    event = TopicChanged(name, text, me.username)
    req.after_reply(lambda: to_room(hub, name, event, exclude=req.session))
    return TopicReply(name, text)


def who(req: Request, args: Who) -> WhoReply:
    """who {room} -> {room, members, online}; for any room, member or not."""
    services = req.services
    name = normalize_room(args.room)
    if services.hub.room(name) is None and services.store.room_by_name(name) is None:
        raise ChatError(ErrorCode.NO_SUCH_ROOM, f"there is no room #{name}")
    members, online = services.hub.members(name)
    return WhoReply(name, members, online)


def rooms(req: Request, args: Rooms) -> RoomList:
    """rooms -> {rooms: [{room, topic, members, messages}]} sorted by name."""
    return RoomList(req.services.store.room_summaries())
