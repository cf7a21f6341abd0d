"""The wire format: JSON objects, one per line, as PROTOCOL.md defines them.

Pure code in the manner of h11: bytes go in, frames and messages come out; no
sockets, threads or logging here. The server and the `chat` client both use
it, so the format lives in exactly one place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, Union

import msgspec

from chatd.errors import ChatError, ErrorCode
from chatd.requests import (
    BY_NAME,
    INT64_MAX,
    INT64_MIN,
    MAX_ID_CHARS,
    OPS,
    Op,
    RequestId,
)

PROTOCOL_VERSION = 1
# why: a frame is a request, not a bulk transfer; files travel in chunks.
MAX_FRAME_BYTES = 64 * 1024
# why: PROTOCOL.md promises clients accept server frames of at least 4 MiB.
MAX_SERVER_FRAME_BYTES = 4 * 1024 * 1024
MAX_JSON_DEPTH = 32

_BLANK = b" \t\r"


class FrameTooLarge(Exception):
    """More bytes arrived without a newline than one frame may hold."""


class FrameDecoder:
    """Splits a byte stream into frames (the bytes of one line, line end removed).

    Blank lines are skipped. The limit counts every byte of a frame including
    its line end, and is enforced as soon as a partial line can no longer fit,
    so a peer that never sends a newline cannot grow the buffer.
    """

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        # why: a frame dribbled in byte by byte is searched once, not once per byte.
        self._searched = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Yield every complete frame that `data` finishes; raise FrameTooLarge on overflow."""
        self._buffer += data
        start = 0
        search_from = self._searched
        try:
            while (end := self._buffer.find(b"\n", search_from)) >= 0:
                search_from = end + 1
                if end + 1 - start > self.max_frame:
                    raise FrameTooLarge
                line = bytes(self._buffer[start:end])
                start = end + 1
                if line.endswith(b"\r"):
                    line = line[:-1]
                if line.strip(_BLANK):
                    yield line
            search_from = len(self._buffer)
            if search_from - start >= self.max_frame:
                raise FrameTooLarge
        finally:
            del self._buffer[:start]
            self._searched = search_from - start

    @property
    def buffered(self) -> int:
        return len(self._buffer)


_REQUESTS: msgspec.json.Decoder[Op] = msgspec.json.Decoder(Union[OPS])  # noqa: UP007
_ANY_JSON = msgspec.json.Decoder()


class Refusal(Exception):
    """A frame that is not a valid request: the reply's id, and the error.

    `op` is set when the op is known and only its arguments are wrong: the
    dispatcher answers auth_required instead when that op needs a login, as
    PROTOCOL.md orders the checks.
    """

    def __init__(self, rid: RequestId, error: ChatError, op: type[Op] | None = None) -> None:
        super().__init__(error.message)
        self.rid = rid
        self.error = error
        self.op = op


def decode_request(line: bytes) -> Op:
    """One client frame as its typed request; Refusal says what is wrong with it.

    The fast path is one msgspec call that checks the JSON, the op and every
    argument. Any frame it refuses (a mistake, or merely a field chatd does
    not know, which PROTOCOL.md says to ignore) takes the careful path,
    which applies the protocol's checks one by one, in its order.
    """
    try:
        return _REQUESTS.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return _decode_carefully(line)


def _decode_carefully(line: bytes) -> Op:
    try:
        frame = parse_json_line(line)
    except ValueError as exc:
        raise Refusal(None, ChatError(ErrorCode.BAD_REQUEST, str(exc))) from None
    if not isinstance(frame, dict):
        raise Refusal(None, ChatError(ErrorCode.BAD_REQUEST, "frame is not a JSON object"))
    rid = _request_id(frame)
    name = frame.get("op")
    if not isinstance(name, str):
        raise Refusal(rid, ChatError(ErrorCode.BAD_REQUEST, "op must be a string"))
    kind = BY_NAME.get(name)
    if kind is None:
        raise Refusal(rid, ChatError(ErrorCode.UNKNOWN_OP, f"unknown op {name[:64]!r}"))
    known = {
        field: value
        for field, value in frame.items()
        if field in _FIELDS[kind] and value is not None
    }
    try:
        return msgspec.convert({**known, "op": name}, kind)
    except msgspec.ValidationError as exc:
        error = ChatError(ErrorCode.BAD_REQUEST, _argument_error(name, exc))
        raise Refusal(rid, error, kind) from None


# each op's argument names as they appear on the wire
_FIELDS: dict[type[Op], frozenset[str]] = {
    kind: frozenset(kind.__struct_encode_fields__) for kind in OPS
}
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`")
_WRONG = re.compile(r"Expected `(?P<kind>[^`]+)`.* - at `\$\.(?P<field>[^`]+)`")
_KINDS = {"str": "a string", "int": "an integer"}


def _argument_error(op: str, exc: msgspec.ValidationError) -> str:
    """msgspec's complaint in the protocol's words: what is missing or of the wrong type."""
    text = str(exc)
    if found := _MISSING.search(text):
        return f"{op} needs {found['field']!r}"
    if found := _WRONG.search(text):
        kind = found["kind"].split(" | ")[0]
        return f"{found['field']!r} must be {_KINDS.get(kind, kind)}"
    return f"{op}: {text}"


def _request_id(frame: dict[str, Any]) -> RequestId:
    """The frame's `id`, or a Refusal when it is not a valid id."""
    rid = frame.get("id")
    if rid is None or (isinstance(rid, str) and len(rid) <= MAX_ID_CHARS):
        return rid
    if isinstance(rid, int) and not isinstance(rid, bool):
        return rid
    raise Refusal(
        None,
        ChatError(
            ErrorCode.BAD_REQUEST,
            f"id must be a string of at most {MAX_ID_CHARS} characters or an integer",
        ),
    )


def parse_json_line(line: bytes) -> Any:
    """Strict RFC 8259 parse of one frame; ValueError says what is wrong.

    msgspec refuses what RFC 8259 does (NaN, lone surrogates, numbers that
    overflow a double, invalid UTF-8); integers outside signed 64 bits and
    nesting deeper than MAX_JSON_DEPTH are checked after.
    """
    try:
        value = _ANY_JSON.decode(line)
    except msgspec.DecodeError as exc:
        raise ValueError(f"frame is not JSON: {exc}") from None
    except RecursionError:
        raise ValueError(f"nesting deeper than {MAX_JSON_DEPTH} levels") from None
    if isinstance(value, dict | list):
        _check_tree(value)
    elif isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("integer outside signed 64 bits")
    return value


def _check_tree(root: object) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH and integers outside 64 bits, without recursion."""
    stack: list[tuple[object, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[object] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            if type(node) is int and not INT64_MIN <= node <= INT64_MAX:
                raise ValueError("integer outside signed 64 bits")
            continue
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nesting deeper than {MAX_JSON_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def encode(value: Any) -> bytes:
    """One frame (a dict or a Struct) as compact UTF-8 JSON ending in a newline."""
    return _ENCODER.encode(value) + b"\n"


_ENCODER = msgspec.json.Encoder()


def encode_id(rid: RequestId) -> bytes:
    return b"%d" % rid if type(rid) is int else _ENCODER.encode(rid)


def ok_frame(rid: RequestId, body: bytes) -> bytes:
    """An ok reply whose result fields are the JSON object `body`: {"id", "ok": true, ...}."""
    if body == b"{}":
        return b'{"id":' + encode_id(rid) + b',"ok":true}\n'
    return b'{"id":' + encode_id(rid) + b',"ok":true,' + body[1:] + b"\n"


def error_frame(rid: RequestId, error: ChatError) -> bytes:
    reply: dict[str, Any] = {
        "id": rid,
        "ok": False,
        "error": str(error.code),
        "message": error.message,
    }
    if error.retry_after is not None:
        reply["retry_after"] = error.retry_after
    return encode(reply)


def message_event_frame(event: str, body: bytes) -> bytes:
    """A message or dm event: the message object's fields (`body`) after `"event"`."""
    return b'{"event":"' + event.encode("ascii") + b'",' + body[1:] + b"\n"


def message_reply_frame(rid: RequestId, body: bytes) -> bytes:
    """The ok reply to the request that stored the message whose object is `body`."""
    return b'{"id":' + encode_id(rid) + b',"ok":true,"message":' + body + b"}\n"
