"""The JSON-lines dialect of PROTOCOL.md: chatd's own protocol, spoken by `chat`.

Writing: events, replies and refusals as one JSON object a line. A message
is encoded once (its object, the body) and the event frame, the sender's
reply and every join history that repeats it splice that body in. Reading:
each frame is decoded into its typed request (chatd/protocol.py) and
dispatched; a connection that keeps sending malformed frames is closed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from msgspec import UNSET

from chatd import __version__
from chatd.commands import dispatch, refuse
from chatd.config import ServerConfig
from chatd.dialects import Kick
from chatd.errors import ChatError, ErrorCode
from chatd.events import AnyEvent, ErrorEvent, MessageEdit, Shutdown, Welcome, event_name
from chatd.handlers import HANDLERS
from chatd.outgoing import Bundle, Outgoing
from chatd.protocol import (
    PROTOCOL_VERSION,
    FrameDecoder,
    FrameTooLarge,
    Refusal,
    decode_request,
    encode,
    error_frame,
    message_event_frame,
    message_reply_frame,
    ok_frame,
)
from chatd.ratelimit import Clock, TokenBucket
from chatd.records import Message
from chatd.replies import Reply
from chatd.requests import RequestId
from chatd.session import Session

KEY = "json"
BODY = ("json", "body")  # Outgoing's cache key for a message's object alone
# Replies that mean the client broke the protocol, as opposed to asking for something refused.
PROTOCOL_VIOLATIONS = frozenset({ErrorCode.BAD_REQUEST, ErrorCode.UNKNOWN_OP})
# why: a client may recover from an occasional malformed frame, one per this many seconds.
BAD_FRAME_REFILL_SECONDS = 10.0
# the extensions of PROTOCOL.md every chatd speaks; "cluster" is added with --bus
FEATURES = ["conversations"]


def _body(item: Outgoing) -> bytes:
    return item.encoded(BODY, _ENCODER.encode)


def _encode_hook(value: Any) -> Any:
    """A join history's messages: their bodies, already encoded by the fan-out, spliced in."""
    if isinstance(value, Outgoing):
        return msgspec.Raw(_body(value))
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


_ENCODER = msgspec.json.Encoder(enc_hook=_encode_hook)


class JsonDialect:
    key = KEY

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        clustered = bool(config.bus)
        self._welcome = encode(
            Welcome(
                "chatd",
                __version__,
                PROTOCOL_VERSION,
                config.history_size,
                config.max_file_bytes,
                [*FEATURES, "cluster"] if clustered else FEATURES,
                config.node_name if clustered else UNSET,
            )
        )

    def greeting(self) -> bytes:
        return self._welcome

    def events(self, item: Outgoing | Bundle) -> bytes:
        if isinstance(item, Bundle):
            return item.joined(KEY, self.events)
        return item.encoded(KEY, self._event)

    @staticmethod
    def _event(event: AnyEvent) -> bytes:
        if isinstance(event, Message):
            return message_event_frame(event_name(event), _ENCODER.encode(event))
        if isinstance(event, MessageEdit):
            return message_event_frame(event_name(event), _ENCODER.encode(event.message))
        return encode(event)

    def message_reply(self, rid: RequestId, item: Outgoing) -> bytes:
        return message_reply_frame(rid, _body(item))

    def reply(self, rid: RequestId, result: Reply) -> bytes:
        return ok_frame(rid, _ENCODER.encode(result))

    def refusal(self, rid: RequestId, error: ChatError) -> bytes:
        return error_frame(rid, error)

    def farewell(self, code: ErrorCode, message: str) -> bytes:
        return encode(ErrorEvent(code.value, message))

    def shutdown(self, reason: str) -> bytes:
        return encode(Shutdown(reason))

    def converse(
        self, session: Session, kick: Kick, stopping: Callable[[], bool], clock: Clock
    ) -> JsonConversation:
        return JsonConversation(session, self.config, kick, stopping, clock)


class JsonConversation:
    """One connection's frames: decoded, dispatched in order, malformed ones counted."""

    def __init__(
        self,
        session: Session,
        config: ServerConfig,
        kick: Kick,
        stopping: Callable[[], bool],
        clock: Clock,
    ) -> None:
        self._session = session
        self._kick = kick
        self._stopping = stopping
        self._max_frame = config.max_frame
        self._decoder = FrameDecoder(config.max_frame)
        limit = config.max_bad_frames
        self._bad_frames = TokenBucket(1 / BAD_FRAME_REFILL_SECONDS if limit else 0, limit, clock)

    def received(self, data: bytes) -> bool:
        try:
            for line in self._decoder.feed(data):
                if self._stopping() or not self._handle(line):
                    return False
        except FrameTooLarge:
            self._kick(
                ErrorCode.FRAME_TOO_LARGE, f"a frame may hold at most {self._max_frame} bytes"
            )
            return False
        return True

    def _handle(self, line: bytes) -> bool:
        """Answer one frame; False when the connection should stop reading."""
        session = self._session
        try:
            request = decode_request(line)
        except Refusal as refusal:
            code: ErrorCode | None = refuse(session, refusal)
        else:
            code = dispatch(session, request, HANDLERS)
        if code in PROTOCOL_VIOLATIONS and self._bad_frames.take():
            self._kick(ErrorCode.TOO_MANY_ERRORS, "too many malformed requests")
            return False
        return not session.quitting
