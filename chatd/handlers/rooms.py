"""Rooms: join, part, topic, who, rooms.

A join by a non-member, a part and a topic change go to the writer like
messages, so they take effect in request order and in log order: the
fan-out applies each at its place, answers it and tells the others
(chatd/fanout.py). A join by a member already changes nothing: it is
answered at once, under the room's order lock.
"""

from __future__ import annotations

from chatd.commands import Deferred, Request
from chatd.errors import ChatError, ErrorCode
from chatd.handlers.common import is_member, not_in_room, submit
from chatd.names import clean_topic, normalize_room
from chatd.records import NewJoin, NewPart, NewTopic
from chatd.replies import JoinReply, RoomList, WhoReply
from chatd.requests import Join, Part, Rooms, Topic, Who


def join(req: Request, args: Join) -> JoinReply | Deferred:
    """join {room} -> {room, topic, members, online, history}; creates the room."""
    name = normalize_room(args.room)
    hub = req.services.hub
    if not is_member(req, name):
        req.session.expect(name, True)
        return submit(req, NewJoin(req.user, name))
    req.hold(hub.order_lock(name))
    record = hub.room(name)
    assert record is not None
    members, online = hub.members(name)
    history = req.services.fanout.history(record)
    return JoinReply(name, record.topic, members, online, history)


def part(req: Request, args: Part) -> Deferred:
    """part {room} -> {room}; the room stays, with its history."""
    name = normalize_room(args.room)
    if not is_member(req, name):
        raise not_in_room(name)
    req.session.expect(name, False)
    return submit(req, NewPart(req.user, name))


def topic(req: Request, args: Topic) -> Deferred:
    """topic {room, topic} -> {room, topic}; members see a topic event."""
    name = normalize_room(args.room)
    text = clean_topic(args.topic)
    if not is_member(req, name):
        raise not_in_room(name)
    return submit(req, NewTopic(req.user, name, text))


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
