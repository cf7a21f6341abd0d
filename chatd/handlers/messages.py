"""Messages: send and dm (answered by the writer once stored), and the history pages.

A `reply_to` must name a message of the same conversation that the sender
can see (else no_such_message), checked here early and by the writer for good.
"""

from __future__ import annotations

from collections.abc import Callable

from chatd.commands import Deferred, Request
from chatd.handlers.common import (
    existing_user,
    is_member,
    not_in_room,
    page_limit,
    room_as_member,
    submit,
)
from chatd.names import clean_text, normalize_room
from chatd.records import NewMessage, dm_pair
from chatd.replies import Messages
from chatd.requests import Dm, DmHistory, History, Send
from chatd.store.conversation_writes import StoredMessage
from chatd.store.log import no_such_message


def send(req: Request, args: Send) -> Deferred:
    """send {room, text, reply_to?} -> {message}, after the message is durably stored."""
    name = normalize_room(args.room)
    text = clean_text(args.text)
    if not is_member(req, name):
        raise not_in_room(name)
    if args.reply_to is not None:
        _check_reply(req, args.reply_to, lambda stored: stored.message.room == name)
    req.session.spend_send_token()
    return submit(req, NewMessage(req.user, text, room=name, reply_to=args.reply_to))


def dm(req: Request, args: Dm) -> Deferred:
    """dm {to, text, reply_to?} -> {message} with room null; stored like any message."""
    text = clean_text(args.text)
    recipient = existing_user(req, args.to)
    if args.reply_to is not None:
        pair = dm_pair(req.user.id, recipient.id)
        _check_reply(req, args.reply_to, lambda stored: _pair(stored) == pair)
    req.session.spend_send_token()
    return submit(req, NewMessage(req.user, text, recipient=recipient, reply_to=args.reply_to))


def _check_reply(req: Request, message_id: int, same: Callable[[StoredMessage], bool]) -> None:
    """reply_to: a message of this conversation, else no_such_message."""
    stored = req.services.store.stored_message(message_id)
    if stored is None or not same(stored):
        raise no_such_message(message_id)


def _pair(stored: StoredMessage) -> str | None:
    if stored.sender_id is None or stored.recipient_id is None:
        return None
    return dm_pair(stored.sender_id, stored.recipient_id)


def history(req: Request, args: History) -> Messages:
    """history {room, before?, after?, limit?} -> {messages}, oldest first.

    Without `after` the newest messages below `before` (paging back); with it
    the oldest above `after` (catching up from the last one seen).
    """
    count = page_limit(req, args.limit)
    record = room_as_member(req, normalize_room(args.room))
    return Messages(req.services.store.room_page(record, args.before, count, args.after))


def dm_history(req: Request, args: DmHistory) -> Messages:
    """dm_history {with?, before?, after?, limit?} -> {messages}, oldest first.

    With `with`, the conversation between the two; without it, every direct
    message to or from the user, from everyone: what came in while away.
    Pages as `history` does.
    """
    count = page_limit(req, args.limit)
    store = req.services.store
    if args.with_ is None:
        return Messages(store.inbox_page(req.user, args.before, count, args.after))
    other = existing_user(req, args.with_)
    return Messages(store.conversation_page(req.user, other, args.before, count, args.after))
