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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chatd.errors import ChatError, ErrorCode
from chatd.protocol import RequestId, error_reply, ok_reply, request_id

if TYPE_CHECKING:
    from chatd.sendqueue import ReplySlot
    from chatd.session import Session

log = logging.getLogger(__name__)

Handler = Callable[..., dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Argument:
    """One argument of an op: its wire name, the handler's keyword, its JSON type."""

    name: str
    keyword: str
    kind: type
    required: bool


@dataclass(frozen=True, slots=True)
class OpSpec:
    name: str
    handler: Handler
    login_required: bool
    arguments: tuple[Argument, ...]


OPS: dict[str, OpSpec] = {}


def op(
    name: str,
    *,
    login_required: bool = True,
    required: dict[str, type] | None = None,
    optional: dict[str, type] | None = None,
) -> Callable[[Handler], Handler]:
    """Register a handler for `name`; its keyword arguments are the op's arguments."""

    declared = [(arg, kind, True) for arg, kind in (required or {}).items()]
    declared += [(arg, kind, False) for arg, kind in (optional or {}).items()]
    arguments = tuple(
        Argument(arg, f"{arg}_" if keyword.iskeyword(arg) else arg, kind, needed)
        for arg, kind, needed in declared
    )

    def register(handler: Handler) -> Handler:
        OPS[name] = OpSpec(name, handler, login_required, arguments)
        return handler

    return register


@dataclass(slots=True)
class Request:
    """What a handler sees: the session that asked, and a way to hold locks past its return."""

    session: Session
    rid: RequestId = None
    _held: ExitStack | None = None  # made on first hold: most requests hold nothing
    _then: list[Callable[[], None]] | None = None  # made by the first after_reply

    def hold(self, lock: threading.Lock) -> None:
        """Take `lock` and keep it until this request's reply is queued.

        Used where the reply must be ordered with events, e.g. a join reply
        holding history up to id N, after which events start at N + 1.
        """
        if self._held is None:
            self._held = ExitStack()
        self._held.enter_context(lock)

    def after_reply(self, action: Callable[[], None]) -> None:
        """Run `action` once the reply is queued, still holding what `hold` took.

        For events that tell others about a change: the one who asked hears
        first, and the events keep their order with everything else.
        """
        if self._then is None:
            self._then = []
        self._then.append(action)

    def finish(self) -> None:
        """Run the after_reply actions, then let go of what `hold` took.

        The dispatcher calls it once the reply is queued (or deferred).
        """
        try:
            for action in self._then or ():
                try:
                    action()
                except Exception:  # the reply is out; the bug must not end the connection
                    log.exception("%s: telling others after a reply failed", self.session.peer)
        finally:
            if self._held is not None:
                self._held.close()

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


def _arguments(spec: OpSpec, frame: dict[str, Any]) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    for arg in spec.arguments:
        value = frame.get(arg.name)
        if value is None:
            if arg.required:
                raise ChatError(ErrorCode.BAD_REQUEST, f"{spec.name} needs {arg.name!r}")
            continue
        # why: exact types: JSON true/false are Python bools, which isinstance calls ints.
        if type(value) is not arg.kind:
            raise ChatError(
                ErrorCode.BAD_REQUEST,
                f"{arg.name!r} must be {_TYPE_NAMES.get(arg.kind, arg.kind)}",
            )
        arguments[arg.keyword] = value
    return arguments


def _call(request: Request, frame: dict[str, Any]) -> dict[str, Any]:
    name = frame.get("op")
    if not isinstance(name, str):
        raise ChatError(ErrorCode.BAD_REQUEST, "op must be a string")
    spec = OPS.get(name)
    if spec is None:
        raise ChatError(ErrorCode.UNKNOWN_OP, f"unknown op {name[:64]!r}")
    if spec.login_required and request.session.user is None:
        raise ChatError(ErrorCode.AUTH_REQUIRED, f"log in before {name}")
    result = spec.handler(request, **_arguments(spec, frame))
    return result if result is DEFERRED else ok_reply(request.rid, result)


def dispatch(session: Session, frame: dict[str, Any]) -> dict[str, Any] | None:
    """Answer one request frame with exactly one reply, in order.

    Returns the reply it queued, or None when the handler deferred it.
    """
    request = Request(session)
    try:
        try:
            request.rid = request_id(frame)
            reply = _call(request, frame)
        except ChatError as error:
            reply = error_reply(request.rid, error)
        except Exception:
            log.exception("%s: internal error in op %r", session.peer, frame.get("op"))
            reply = error_reply(request.rid, ChatError(ErrorCode.INTERNAL, "internal server error"))
        if reply is DEFERRED:
            return None
        session.reply(reply)
        return reply
    finally:
        request.finish()
