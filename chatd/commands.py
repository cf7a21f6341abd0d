"""The dispatcher: the one place a decoded request becomes its reply.

Each op's handler is one function, found in one table (chatd/handlers).
`dispatch` checks the login the op needs, calls the handler with the typed
request, and turns its result or its ChatError into the single reply of that
request. Any other exception is our bug: it is logged with its traceback and
answered with `internal`. A frame that did not even decode (a `Refusal`)
is answered by `refuse`, in the order of checks PROTOCOL.md gives.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from chatd.errors import ChatError, ErrorCode
from chatd.protocol import Refusal
from chatd.records import UserRecord
from chatd.replies import Reply
from chatd.requests import Op, RequestId, op_name
from chatd.sendqueue import ReplySlot
from chatd.services import Services
from chatd.session import Session

log = logging.getLogger(__name__)


class Deferred(Reply, frozen=True):
    """The result of a handler whose reply comes later, through a ReplySlot."""


DEFERRED = Deferred()

Handler = Callable[["Request", Any], Reply]
Handlers = Mapping[type[Op], Handler]


@dataclass(slots=True)
class Request:
    """What a handler sees besides its arguments: who asked, and the server's services."""

    session: Session
    rid: RequestId = None
    _held: ExitStack | None = None  # made on first hold: most requests hold nothing

    @property
    def services(self) -> Services:
        return self.session.services

    @property
    def user(self) -> UserRecord:
        """The user logged in: only such sessions reach an op that needs a login."""
        user = self.session.user
        assert user is not None, "an op that needs a login was dispatched without one"
        return user

    def hold(self, lock: threading.Lock) -> None:
        """Take `lock` and keep it until this request's reply is queued.

        Used where the reply must be ordered with events, e.g. a join reply
        holding history up to id N, after which events start at N + 1.
        """
        if self._held is None:
            self._held = ExitStack()
        self._held.enter_context(lock)

    def finish(self) -> None:
        """Let go of what `hold` took; the dispatcher calls it once the reply is queued."""
        if self._held is not None:
            self._held.close()

    def defer(self) -> tuple[ReplySlot, RequestId]:
        """Answer later: reserve this request's place among the replies.

        The handler then returns DEFERRED, and whoever completes the work
        fills the slot with the reply (a message waits for its batch commit).
        """
        return self.session.reserve_reply(), self.rid


def _login_needed(op: type[Op]) -> ChatError:
    return ChatError(ErrorCode.AUTH_REQUIRED, f"log in before {op_name(op)}")


def dispatch(session: Session, op: Op, handlers: Handlers) -> ErrorCode | None:
    """Answer one request with exactly one reply, in order; the error code if refused."""
    request = Request(session, op.id)
    try:
        try:
            if op.login_required and session.user is None:
                raise _login_needed(type(op))
            result = handlers[type(op)](request, op)
        except ChatError as error:
            session.refuse(request.rid, error)
            return error.code
        except Exception:
            log.exception("%s: internal error in op %r", session.peer, op_name(type(op)))
            session.refuse(request.rid, ChatError(ErrorCode.INTERNAL, "internal server error"))
            return ErrorCode.INTERNAL
        if result is not DEFERRED:
            session.reply(request.rid, result)
        return None
    finally:
        request.finish()


def refuse(session: Session, refusal: Refusal) -> ErrorCode:
    """Answer a frame that did not decode; auth_required first when its op needs a login."""
    error = refusal.error
    if refusal.op is not None and refusal.op.login_required and session.user is None:
        error = _login_needed(refusal.op)
    session.refuse(refusal.rid, error)
    return error.code
