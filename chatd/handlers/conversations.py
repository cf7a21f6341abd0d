"""Conversation state: mark_read, unread, edit, delete, search (PROTOCOL.md, `conversations`).

mark_read, edit and delete go to the writer like messages, so they are
ordered with messages in the log, cross nodes like them, and are decided
there for good (chatd/store/plan.py). The checks here are the early answer,
in the protocol's order of checks, so that a refusal is not rate-limited.
unread and search are reads.
"""

from __future__ import annotations

from chatd.commands import Deferred, Request
from chatd.errors import ChatError, ErrorCode
from chatd.handlers.common import existing_user, is_member, not_in_room, room_as_member, submit
from chatd.names import clean_text, normalize_room
from chatd.records import NewDelete, NewEdit, NewRead, UserRecord
from chatd.replies import Messages, UnreadReply
from chatd.requests import Delete, Edit, MarkRead, Search, Unread
from chatd.searchtext import QUERY_MAX_CHARS, parse_query
from chatd.store.conversation_writes import StoredMessage
from chatd.store.log import no_such_message, not_author

SEARCH_LIMIT_DEFAULT = 20
SEARCH_LIMIT_MAX = 100


def _one_conversation(room: str | None, with_: str | None) -> None:
    if (room is None) == (with_ is None):
        raise ChatError(ErrorCode.BAD_REQUEST, "give exactly one of room or with")


def mark_read(req: Request, args: MarkRead) -> Deferred:
    """mark_read {room | with, message_id} -> {room | with, last_read}; never backwards."""
    _one_conversation(args.room, args.with_)
    if args.message_id < 0:
        raise ChatError(ErrorCode.BAD_REQUEST, "message_id must not be negative")
    if args.room is not None:
        name = normalize_room(args.room)
        if not is_member(req, name):
            raise not_in_room(name)
        return submit(req, NewRead(req.user, args.message_id, room=name))
    assert args.with_ is not None
    peer = existing_user(req, args.with_)
    return submit(req, NewRead(req.user, args.message_id, peer=peer))


def unread(req: Request, args: Unread) -> UnreadReply:
    """unread -> {rooms: [...], dms: [...]}: markers, newest ids and capped counts."""
    rooms, direct = req.services.store.unread(req.user)
    return UnreadReply(rooms, direct)


def visible_message(req: Request, message_id: int) -> StoredMessage:
    """A message the user can see now, not deleted; else no_such_message."""
    stored = req.services.store.stored_message(message_id)
    if stored is None or stored.deleted:
        raise no_such_message(message_id)
    room = stored.message.room
    user = req.user
    if room is not None:
        seen = is_member(req, room)
    else:
        seen = user.id in (stored.sender_id, stored.recipient_id)
    if not seen:
        raise no_such_message(message_id)
    return stored


def _own_message(req: Request, message_id: int) -> StoredMessage:
    stored = visible_message(req, message_id)
    if stored.sender_id != req.user.id:
        raise not_author(message_id)
    return stored


def edit(req: Request, args: Edit) -> Deferred:
    """edit {message_id, text} -> {message} with its new text and `edited`; the author only."""
    text = clean_text(args.text)
    _own_message(req, args.message_id)
    req.session.spend_send_token()
    return submit(req, NewEdit(req.user, args.message_id, text))


def delete(req: Request, args: Delete) -> Deferred:
    """delete {message_id} -> {message_id}; the text, caption and lone file bytes are erased."""
    _own_message(req, args.message_id)
    return submit(req, NewDelete(req.user, args.message_id))


def search(req: Request, args: Search) -> Messages:
    """search {query, room? | with?, before?, limit?} -> {messages}, newest first."""
    if args.room is not None and args.with_ is not None:
        raise ChatError(ErrorCode.BAD_REQUEST, "give at most one of room or with")
    if not 1 <= len(args.query) <= QUERY_MAX_CHARS:
        raise ChatError(ErrorCode.BAD_REQUEST, f"query must be 1-{QUERY_MAX_CHARS} characters")
    limit = SEARCH_LIMIT_DEFAULT if args.limit is None else args.limit
    if not 1 <= limit <= SEARCH_LIMIT_MAX:
        raise ChatError(ErrorCode.BAD_REQUEST, f"limit must be 1-{SEARCH_LIMIT_MAX}")
    room_id = None
    peer: UserRecord | None = None
    if args.room is not None:
        room_id = room_as_member(req, normalize_room(args.room)).id
    elif args.with_ is not None:
        peer = existing_user(req, args.with_)
    found = req.services.store.search(
        req.user,
        parse_query(args.query),
        room_id=room_id,
        peer=peer,
        before=args.before,
        limit=limit,
    )
    return Messages(found)
