"""What several ops need: the room as a member sees it, a user by name, the writer."""

from __future__ import annotations

from chatd.commands import DEFERRED, Deferred, Request
from chatd.errors import ChatError, ErrorCode
from chatd.fanout import Post
from chatd.names import is_valid_username
from chatd.records import NewMessage, RoomRecord, UserRecord

HISTORY_LIMIT_MAX = 500


def page_limit(req: Request, limit: int | None) -> int:
    """A history page's size: `history_size` by default, else 1-HISTORY_LIMIT_MAX."""
    if limit is None:
        return req.services.config.history_size
    if not 1 <= limit <= HISTORY_LIMIT_MAX:
        raise ChatError(ErrorCode.BAD_REQUEST, f"limit must be 1-{HISTORY_LIMIT_MAX}")
    return limit


def room_as_member(req: Request, name: str) -> RoomRecord:
    """The room, or not_in_room unless we are a member."""
    room = req.services.hub.room_of_member(name, req.user.username)
    if room is None:
        raise ChatError(ErrorCode.NOT_IN_ROOM, f"you are not in #{name}")
    return room


def existing_user(req: Request, name: str) -> UserRecord:
    user = req.services.store.user_by_name(name) if is_valid_username(name) else None
    if user is None:
        raise ChatError(ErrorCode.NO_SUCH_USER, f"there is no user {name[:32]!r}")
    return user


def submit_message(req: Request, message: NewMessage) -> Deferred:
    """Hand a message to the group-commit writer; it answers once the batch is on disk."""
    slot, rid = req.defer()
    req.session.posts_submitted += 1
    req.services.writer.submit(Post(req.session, rid, slot, message))
    return DEFERRED
