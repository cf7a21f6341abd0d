"""Messages: send and dm (answered by the writer once stored), and the history pages."""

from __future__ import annotations

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
from chatd.records import NewMessage
from chatd.replies import Messages
from chatd.requests import Dm, DmHistory, History, Send


def send(req: Request, args: Send) -> Deferred:
    """send {room, text} -> {message}, after the message is durably stored."""
    name = normalize_room(args.room)
    text = clean_text(args.text)
    if not is_member(req, name):
        raise not_in_room(name)
    req.session.spend_send_token()
    return submit(req, NewMessage(req.user, text, room=name))


def dm(req: Request, args: Dm) -> Deferred:
    """dm {to, text} -> {message} with room null; stored like any message."""
    text = clean_text(args.text)
    recipient = existing_user(req, args.to)
    req.session.spend_send_token()
    return submit(req, NewMessage(req.user, text, recipient=recipient))


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
