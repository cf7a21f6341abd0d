"""What several ops need: membership as this connection will see it, a user by name, the writer."""

from __future__ import annotations

from chatd.commands import DEFERRED, Deferred, Request
from chatd.errors import ChatError, ErrorCode
from chatd.fanout import Post
from chatd.names import is_valid_username
from chatd.records import NewChange, RoomRecord, UserRecord
from chatd.store.log import not_in_room

HISTORY_LIMIT_MAX = 500

__all__ = ["not_in_room"]


def page_limit(req: Request, limit: int | None) -> int:
    """A history page's size: `history_size` by default, else 1-HISTORY_LIMIT_MAX."""
    if limit is None:
        return req.services.config.history_size
    if not 1 <= limit <= HISTORY_LIMIT_MAX:
        raise ChatError(ErrorCode.BAD_REQUEST, f"limit must be 1-{HISTORY_LIMIT_MAX}")
    return limit


def is_member(req: Request, room: str) -> bool:
    """Whether the user is a member of `room` once this connection's earlier requests are done.

    The writer decides for good (chatd/store/log.py); this is the early
    answer, so that a refusal comes in the protocol's order of checks.
    """
    expected = req.session.expects(room)
    if expected is not None:
        return expected
    return req.services.hub.is_member(room, req.user.username)


def room_as_member(req: Request, name: str) -> RoomRecord:
    """The room, or not_in_room unless we are a member (for reads: the hub's view)."""
    room = req.services.hub.room_of_member(name, req.user.username)
    if room is None:
        raise not_in_room(name)
    return room


def existing_user(req: Request, name: str) -> UserRecord:
    user = req.services.store.user_by_name(name) if is_valid_username(name) else None
    if user is None:
        raise ChatError(ErrorCode.NO_SUCH_USER, f"there is no user {name[:32]!r}")
    return user


def submit(req: Request, change: NewChange) -> Deferred:
    """Hand a change to the group-commit writer; the fan-out answers once it is on disk."""
    slot, rid = req.defer()
    req.session.posts_submitted += 1
    req.services.writer.submit(Post(req.session, rid, slot, change))
    return DEFERRED
