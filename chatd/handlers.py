"""One function per op of PROTOCOL.md, each headed by its wire form.

Handlers validate with names.py, change state through the Store and the Hub,
and return the reply's data; the dispatcher in commands.py sends it.
"""

from __future__ import annotations

import logging
from typing import Any

from chatd.commands import DEFERRED, Deferred, Request, op
from chatd.errors import ChatError, ErrorCode
from chatd.names import (
    check_password,
    check_username,
    clean_text,
    clean_topic,
    is_valid_username,
    normalize_room,
)
from chatd.protocol import EncodedList, message_body
from chatd.records import MessageRecord, NewMessage, RoomRecord, UserRecord
from chatd.session import rate_limited
from chatd.writer import Post

log = logging.getLogger(__name__)

HISTORY_LIMIT_MAX = 500


def _me(req: Request) -> UserRecord:
    user = req.session.user
    assert user is not None, "the dispatcher lets only logged-in sessions through"
    return user


def _page_limit(req: Request, limit: int | None) -> int:
    if limit is None:
        return req.session.services.config.history_size
    if not 1 <= limit <= HISTORY_LIMIT_MAX:
        raise ChatError(ErrorCode.BAD_REQUEST, f"limit must be 1-{HISTORY_LIMIT_MAX}")
    return limit


def room_as_member(req: Request, name: str) -> RoomRecord:
    """The room, or not_in_room unless we are a member."""
    room = req.session.services.hub.room_of_member(name, _me(req).username)
    if room is None:
        raise ChatError(ErrorCode.NOT_IN_ROOM, f"you are not in #{name}")
    return room


def submit_message(req: Request, message: NewMessage) -> Deferred:
    """Hand a message to the group-commit writer; it answers once the batch is on disk."""
    slot, rid = req.defer()
    req.session.posts_submitted += 1
    req.session.services.writer.submit(Post(req.session, rid, slot, message))
    return DEFERRED


def existing_user(name: str, req: Request) -> UserRecord:
    user = req.session.services.store.user_by_name(name) if is_valid_username(name) else None
    if user is None:
        raise ChatError(ErrorCode.NO_SUCH_USER, f"there is no user {name[:32]!r}")
    return user


def _messages(records: list[MessageRecord]) -> dict[str, Any]:
    return {"messages": [record.wire() for record in records]}


@op("register", login_required=False, required={"username": str, "password": str})
def register(req: Request, username: str, password: str) -> dict[str, Any]:
    """register {username, password} -> {username}; does not log in."""
    services = req.session.services
    check_username(username)
    check_password(password)
    if services.config.registration == "closed":
        raise ChatError(ErrorCode.REGISTRATION_CLOSED, "ask the operator for an account")
    if services.store.user_by_name(username) is not None:
        raise ChatError(ErrorCode.USERNAME_TAKEN, "that username is taken")
    wait = services.limits.registrations.take(req.session.address)
    if wait:
        raise rate_limited(wait)
    user = services.store.create_user(username, services.hasher.hash(password))
    log.info("%s: registered %s", req.session.peer, user.username)
    return {"username": user.username}


def _name_for_log(username: str) -> str:
    """A login's username as the log may show it.

    A name outside the username rules is most often a password typed into
    the wrong field (and could hold terminal escapes), so only its length is
    logged.
    """
    if is_valid_username(username):
        return username
    return f"a name that is not a valid username ({len(username)} characters)"


@op("login", login_required=False, required={"username": str, "password": str})
def login(req: Request, username: str, password: str) -> dict[str, Any]:
    """login {username, password} -> {username, rooms}."""
    session = req.session
    services = session.services
    if session.user is not None:
        raise ChatError(ErrorCode.ALREADY_LOGGED_IN, "this connection is already logged in")
    throttle = services.limits.failed_logins
    refusal = throttle.refusal(session.address, username)
    if refusal is not None:
        log.log(
            logging.INFO if refusal.first else logging.DEBUG,
            "%s: login as %s refused for %.0f s: %s (further refusals of this block are "
            "logged at debug level)",
            session.peer,
            _name_for_log(username),
            refusal.retry_after,
            refusal.logged_reason,
        )
        raise rate_limited(refusal.retry_after, refusal.reason)
    user = services.store.user_by_name(username) if is_valid_username(username) else None
    if not services.hasher.verify(password, None if user is None else user.password_hash):
        log.info(
            "%s: failed login as %s%s",
            session.peer,
            _name_for_log(username),
            " (no such account)" if user is None and is_valid_username(username) else "",
        )
        throttle.failed(session.address, username)
        raise ChatError(ErrorCode.INVALID_CREDENTIALS, "wrong username or password")
    assert user is not None
    throttle.succeeded(session.address, username)
    if user.disabled:
        raise ChatError(ErrorCode.ACCOUNT_DISABLED, "this account is disabled")
    session.user = user
    services.hub.connect(user.username, session)
    log.info("%s: logged in as %s", session.peer, user.username)
    return {"username": user.username, "rooms": services.store.memberships_of(user.id)}


@op("join", required={"room": str})
def join(req: Request, room: str) -> dict[str, Any]:
    """join {room} -> {room, topic, members, online, history}; creates the room."""
    services = req.session.services
    me = _me(req)
    name = normalize_room(room)
    req.session.settle()
    req.hold(services.hub.delivery_lock)
    current = services.hub.room_of_member(name, me.username)
    if current is None:
        current, joined = services.store.join(me.id, name)
        if joined:
            services.hub.add_member(current, me.username)
            req.after_reply(
                lambda: services.hub.to_room_and_user(
                    name,
                    me.username,
                    {"event": "join", "room": name, "user": me.username},
                    exclude=req.session,
                )
            )
        current = services.hub.room(name) or current
    history = services.hub.recent(name)
    if history is None:
        stored = services.store.room_page(current, None, services.config.history_size)
        history = EncodedList(message_body(message.wire()) for message in stored)
        services.hub.keep_recent(name, history)
    members, online = services.hub.members(name)
    return {
        "room": name,
        "topic": current.topic,
        "members": members,
        "online": online,
        "history": history,
    }


@op("part", required={"room": str})
def part(req: Request, room: str) -> dict[str, Any]:
    """part {room} -> {room}; the room stays, with its history."""
    services = req.session.services
    me = _me(req)
    name = normalize_room(room)
    req.session.settle()
    req.hold(services.hub.delivery_lock)
    record = room_as_member(req, name)
    services.store.part(me.id, record.id)
    services.hub.remove_member(record.name, me.username)
    req.after_reply(
        lambda: services.hub.to_room_and_user(
            record.name,
            me.username,
            {"event": "part", "room": record.name, "user": me.username},
            exclude=req.session,
        )
    )
    return {"room": record.name}


@op("send", required={"room": str, "text": str})
def send(req: Request, room: str, text: str) -> Deferred:
    """send {room, text} -> {message}, after the message is durably stored."""
    name = normalize_room(room)
    text = clean_text(text)
    record = room_as_member(req, name)
    req.session.spend_send_token()
    return submit_message(req, NewMessage(_me(req), text, room=record))


@op("history", required={"room": str}, optional={"before": int, "after": int, "limit": int})
def history(
    req: Request,
    room: str,
    before: int | None = None,
    after: int | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """history {room, before?, after?, limit?} -> {messages}, oldest first.

    Without `after` the newest messages below `before` (paging back); with it
    the oldest above `after` (catching up from the last one seen).
    """
    count = _page_limit(req, limit)
    record = room_as_member(req, normalize_room(room))
    return _messages(req.session.services.store.room_page(record, before, count, after))


@op("rooms")
def rooms(req: Request) -> dict[str, Any]:
    """rooms -> {rooms: [{room, topic, members, messages}]} sorted by name."""
    return {
        "rooms": [
            {"room": s.name, "topic": s.topic, "members": s.members, "messages": s.messages}
            for s in req.session.services.store.room_summaries()
        ]
    }


@op("who", required={"room": str})
def who(req: Request, room: str) -> dict[str, Any]:
    """who {room} -> {room, members, online}; for any room, member or not."""
    services = req.session.services
    name = normalize_room(room)
    if services.hub.room(name) is None and services.store.room_by_name(name) is None:
        raise ChatError(ErrorCode.NO_SUCH_ROOM, f"there is no room #{name}")
    members, online = services.hub.members(name)
    return {"room": name, "members": members, "online": online}


@op("dm", required={"to": str, "text": str})
def dm(req: Request, to: str, text: str) -> Deferred:
    """dm {to, text} -> {message} with room null; stored like any message."""
    text = clean_text(text)
    recipient = existing_user(to, req)
    req.session.spend_send_token()
    return submit_message(req, NewMessage(_me(req), text, recipient=recipient))


@op("dm_history", optional={"with": str, "before": int, "after": int, "limit": int})
def dm_history(
    req: Request,
    with_: str | None = None,
    before: int | None = None,
    after: int | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """dm_history {with?, before?, after?, limit?} -> {messages}, oldest first.

    With `with`, the conversation between the two; without it, every direct
    message to or from the user, from everyone: what came in while away.
    Pages as `history` does.
    """
    count = _page_limit(req, limit)
    store = req.session.services.store
    if with_ is None:
        return _messages(store.inbox_page(_me(req), before, count, after))
    other = existing_user(with_, req)
    return _messages(store.conversation_page(_me(req), other, before, count, after))


@op("topic", required={"room": str, "topic": str})
def topic(req: Request, room: str, topic: str) -> dict[str, Any]:
    """topic {room, topic} -> {room, topic}; members see a topic event."""
    services = req.session.services
    me = _me(req)
    name = normalize_room(room)
    topic = clean_topic(topic)
    req.session.settle()
    req.hold(services.hub.delivery_lock)
    record = room_as_member(req, name)
    services.store.set_topic(record.id, topic)
    services.hub.set_topic(name, topic)
    req.after_reply(
        lambda: services.hub.to_room(
            name,
            {"event": "topic", "room": name, "topic": topic, "user": me.username},
            exclude=req.session,
        )
    )
    return {"room": name, "topic": topic}


@op("ping", login_required=False)
def ping(req: Request) -> dict[str, Any]:
    """ping -> {}."""
    return {}


@op("quit", login_required=False)
def quit_(req: Request) -> dict[str, Any]:
    """quit -> {}; then the server closes the connection.

    The user is offline for everyone once this reply is out, not only when
    the connection has finished closing.
    """
    session = req.session
    session.quitting = True
    if session.user is not None:
        session.services.hub.disconnect(session.user.username, session)
    return {}
