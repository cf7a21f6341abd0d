"""The wire format: JSON objects, one per line, as PROTOCOL.md defines them.

Pure code in the manner of h11: bytes go in, frames and messages come out; no
sockets, threads or logging here. The server and the `chat` client both use
it, so the format lives in exactly one place.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable, Iterator
from typing import Any

from chatd.errors import ChatError, ErrorCode

PROTOCOL_VERSION = 1
# why: a frame is a request, not a bulk transfer; files travel in chunks.
MAX_FRAME_BYTES = 64 * 1024
# why: PROTOCOL.md promises clients accept server frames of at least 4 MiB.
MAX_SERVER_FRAME_BYTES = 4 * 1024 * 1024
MAX_JSON_DEPTH = 32
MAX_ID_CHARS = 64
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_BLANK = b" \t\r"
# why: one string encoder (JSON string with quotes, non-ASCII kept) for every encoding path.
_encode_string = json.encoder.encode_basestring
_JSON_SPACE = " \t\n\r"


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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_int(text: str) -> int:
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("integer outside signed 64 bits")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float
)


def _check_tree(root: object) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH and lone surrogates, without recursion."""
    stack: list[tuple[object, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            _check_string(node)
            continue
        if isinstance(node, dict):
            children: list[object] = []
            for key, value in node.items():
                _check_string(key)
                children.append(value)
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nesting deeper than {MAX_JSON_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def _check_string(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("lone surrogate in a string") from None


def _decode(text: str) -> Any:
    """JSONDecoder.decode, without its two whitespace regex matches in the usual case.

    Those matches were a third of the cost of parsing a `send`. A frame that
    starts with whitespace, or is not JSON, takes the full decode, which also
    words the error.
    """
    try:
        value, end = _DECODER.raw_decode(text)
    except ValueError:
        return _DECODER.decode(text)
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        raise json.JSONDecodeError(
            "Extra data", text, len(text) - len(text[end:].lstrip(_JSON_SPACE))
        )
    return value


def parse_json_line(line: bytes) -> Any:
    """Strict RFC 8259 parse of one frame; ValueError says what is wrong."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("frame is not valid UTF-8") from None
    try:
        value = _decode(text)
    except RecursionError:
        raise ValueError(f"nesting deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise ValueError(f"frame is not JSON: {exc}") from None
    if (b"\\" in line and b"\\u" in line) or line.count(b"[") + line.count(b"{") > MAX_JSON_DEPTH:
        # why: only a \u escape can make a lone surrogate out of valid UTF-8, and
        # only that many brackets can nest that deep; most frames skip the walk.
        _check_tree(value)
    return value


def parse_request(line: bytes) -> dict[str, Any]:
    """A client frame as a dict, or ChatError(bad_request) for a bad frame."""
    try:
        value = parse_json_line(line)
    except ValueError as exc:
        raise ChatError(ErrorCode.BAD_REQUEST, str(exc)) from None
    if not isinstance(value, dict):
        raise ChatError(ErrorCode.BAD_REQUEST, "frame is not a JSON object")
    return value


RequestId = str | int | None


def request_id(frame: dict[str, Any]) -> RequestId:
    """The frame's `id`, or ChatError(bad_request) when it is not a valid id."""
    rid = frame.get("id")
    if rid is None:
        return None
    if isinstance(rid, str) and len(rid) <= MAX_ID_CHARS:
        return rid
    if isinstance(rid, int) and not isinstance(rid, bool):
        return rid
    raise ChatError(
        ErrorCode.BAD_REQUEST,
        f"id must be a string of at most {MAX_ID_CHARS} characters or an integer",
    )


class EncodedList(list[bytes]):
    """A list value whose items are already JSON: `encode` splices them in as they are.

    A join's history is the same recent messages again and again; keeping
    them encoded saves most of the cost of answering a join.
    """


def _make_dumps() -> Callable[[Any], bytes]:
    """Compact UTF-8 JSON, with the C encoder built once instead of on every call.

    json.dumps with arguments builds a new encoder each time, which is more
    than half the cost of encoding one message; fan-out encodes every message
    and every reply. The C encoder's constructor is not public API, so it is
    used only if it builds and agrees with json.dumps; otherwise the plain way.
    """
    plain = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    try:
        make = json.encoder.c_make_encoder  # type: ignore[attr-defined]
        chunks = make(None, plain.default, _encode_string, None, ":", ",", False, False, True)
        sample = {"a": [1, None, True, "é\n\u2028"], "b": -2.5}
        if "".join(chunks(sample, 0)) != plain.encode(sample):
            raise ValueError("the C encoder disagrees")
    except (AttributeError, TypeError, ValueError):
        return lambda value: plain.encode(value).encode("utf-8")
    return lambda value: "".join(chunks(value, 0)).encode("utf-8")


_dumps = _make_dumps()


def encode(frame: dict[str, Any]) -> bytes:
    """One frame as compact UTF-8 JSON ending in a newline."""
    spliced = [key for key, value in frame.items() if type(value) is EncodedList]
    if not spliced:
        return _dumps(frame) + b"\n"
    plain = _dumps({key: value for key, value in frame.items() if key not in spliced})
    fields = [plain[1:-1]] if len(plain) > 2 else []
    fields += [_dumps(key) + b":[" + b",".join(frame[key]) + b"]" for key in spliced]
    return b"{" + b",".join(fields) + b"}\n"


def message_body(message: dict[str, Any]) -> bytes:
    """One message object as JSON, the form fan-out and kept history share."""
    return _dumps(message)


def _json_string(text: str) -> bytes:
    return _encode_string(text).encode("utf-8")


def room_message_body(message_id: int, room: str, user: str, text: str, ts: str) -> bytes:
    """message_body of a room message without a file, written out directly.

    The same bytes as message_body(record.wire()): the same keys in the same
    order, through the same string encoder. Every stored message is encoded
    here, and skipping the dict and the general encoder takes 4.0 -> 1.5 us.
    """
    return b'{"id":%d,"room":%s,"user":%s,"text":%s,"ts":%s}' % (
        message_id,
        _json_string(room),
        _json_string(user),
        _json_string(text),
        _json_string(ts),
    )


def message_frames(body: bytes, event: str, rid: RequestId) -> tuple[bytes, bytes]:
    """(the `event` frame, the ok reply) for one message's encoded body (message_body).

    Equal to encode({"event": event, **message}) and encode(ok_reply(rid,
    {"message": message})); this is the hot path of fan-out.
    """
    event_frame = b'{"event":"' + event.encode("ascii") + b'",' + body[1:] + b"\n"
    encoded_id = b"%d" % rid if type(rid) is int else _dumps(rid)
    reply = b'{"id":' + encoded_id + b',"ok":true,"message":' + body + b"}\n"
    return event_frame, reply


def ok_reply(rid: RequestId, result: dict[str, Any]) -> dict[str, Any]:
    return {"id": rid, "ok": True, **result}


def error_reply(rid: RequestId, error: ChatError) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "id": rid,
        "ok": False,
        "error": str(error.code),
        "message": error.message,
    }
    if error.retry_after is not None:
        reply["retry_after"] = error.retry_after
    return reply


def error_event(code: ErrorCode, message: str) -> dict[str, Any]:
    return {"event": "error", "error": str(code), "message": message}
