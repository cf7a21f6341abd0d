"""The op registry and the dispatcher: the one place requests become replies.

Each op is declared once with `@op(...)`: whether it needs a login and the
JSON types of its arguments. `dispatch` enforces those in the order
PROTOCOL.md gives, calls the handler, and turns its result or its ChatError
into the single reply of that request. Any other exception is our bug: it is
logged with its traceback and answered with `internal`.
"""

from __future__ import annotations

import keyword
import logging
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chatd.errors import ChatError, ErrorCode
from chatd.protocol import RequestId, error_reply, ok_reply, request_id

if TYPE_CHECKING:
    from chatd.sendqueue import ReplySlot
    from chatd.session import Session

log = logging.getLogger(__name__)

Handler = Callable[..., dict[str, Any]]


@dataclass(frozen=True, slots=True)
class OpSpec:
    name: str
    handler: Handler
    login_required: bool
    required: dict[str, type]
    optional: dict[str, type]


OPS: dict[str, OpSpec] = {}


def op(
    name: str,
    *,
    login_required: bool = True,
    required: dict[str, type] | None = None,
    optional: dict[str, type] | None = None,
) -> Callable[[Handler], Handler]:
    """Register a handler for `name`; its keyword arguments are the op's arguments."""

    def register(handler: Handler) -> Handler:
        OPS[name] = OpSpec(name, handler, login_required, required or {}, optional or {})
        return handler

    return register


@dataclass(slots=True)
class Request:
    """What a handler sees: the session that asked, and a way to hold locks past its return."""

    session: Session
    rid: RequestId = None
    _held: ExitStack = field(default_factory=ExitStack)

    def hold(self, lock: threading.Lock) -> None:
        """Take `lock` and keep it until this request's reply is queued.

        Used where the reply must be ordered with events, e.g. a join reply
        holding history up to id N, after which events start at N + 1.
        """
        self._held.enter_context(lock)

    def defer(self) -> tuple[ReplySlot, RequestId]:
        """Answer later: reserve this request's place among the replies.

        The handler then returns DEFERRED, and whoever completes the work
        fills the slot with the reply (a message waits for its batch commit).
        """
        return self.session.reserve_reply(), self.rid


class Deferred(dict[str, Any]):
    """The result of a handler whose reply comes later, through a ReplySlot."""


DEFERRED = Deferred()


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list"}


def _is_type(value: Any, expected: type) -> bool:
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _arguments(spec: OpSpec, frame: dict[str, Any]) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    for name, expected in (*spec.required.items(), *spec.optional.items()):
        value = frame.get(name)
        if value is None:
            if name in spec.required:
                raise ChatError(ErrorCode.BAD_REQUEST, f"{spec.name} needs {name!r}")
            continue
        if not _is_type(value, expected):
            raise ChatError(
                ErrorCode.BAD_REQUEST, f"{name!r} must be {_TYPE_NAMES.get(expected, expected)}"
            )
        arguments[f"{name}_" if keyword.iskeyword(name) else name] = value
    return arguments


def _call(
    session: Session, frame: dict[str, Any], rid: RequestId, held: ExitStack
) -> dict[str, Any]:
    name = frame.get("op")
    if not isinstance(name, str):
        raise ChatError(ErrorCode.BAD_REQUEST, "op must be a string")
    spec = OPS.get(name)
    if spec is None:
        raise ChatError(ErrorCode.UNKNOWN_OP, f"unknown op {name[:64]!r}")
    if spec.login_required and session.user is None:
        raise ChatError(ErrorCode.AUTH_REQUIRED, f"log in before {name}")
    result = spec.handler(Request(session, rid, held), **_arguments(spec, frame))
    return result if result is DEFERRED else ok_reply(rid, result)


def dispatch(session: Session, frame: dict[str, Any]) -> dict[str, Any] | None:
    """Answer one request frame with exactly one reply, in order.

    Returns the reply it queued, or None when the handler deferred it.
    """
    rid: RequestId = None
    with ExitStack() as held:
        try:
            rid = request_id(frame)
            reply = _call(session, frame, rid, held)
        except ChatError as error:
            reply = error_reply(rid, error)
        except Exception:
            log.exception("%s: internal error in op %r", session.peer, frame.get("op"))
            reply = error_reply(rid, ChatError(ErrorCode.INTERNAL, "internal server error"))
        if reply is DEFERRED:
            return None
        session.reply(reply)
    return reply
