"""The request decoder chatd had before msgspec, kept as the oracle of a differential test.

Frozen: the stdlib-json parser, the id check and the per-op argument checks
exactly as they were (commit f9f8ab1 plus the `after` and optional `with`
of issue 12), so tests/test_codec_differential.py can prove the msgspec
codec accepts and refuses the same frames, with the same errors and the
same values. Not used by chatd itself.
"""

from __future__ import annotations

import json
from typing import Any

from chatd.errors import ChatError, ErrorCode

MAX_JSON_DEPTH = 32
MAX_ID_CHARS = 64
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_JSON_SPACE = " \t\n\r"


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


# op -> (login required, [(argument, JSON type, required)]), as the @op declarations had them
OPS: dict[str, tuple[bool, list[tuple[str, type, bool]]]] = {
    "register": (False, [("username", str, True), ("password", str, True)]),
    "login": (False, [("username", str, True), ("password", str, True)]),
    "join": (True, [("room", str, True)]),
    "part": (True, [("room", str, True)]),
    "send": (True, [("room", str, True), ("text", str, True), ("reply_to", int, False)]),
    "history": (
        True,
        [("room", str, True), ("before", int, False), ("after", int, False), ("limit", int, False)],
    ),
    "rooms": (True, []),
    "who": (True, [("room", str, True)]),
    "dm": (True, [("to", str, True), ("text", str, True), ("reply_to", int, False)]),
    "dm_history": (
        True,
        [
            ("with", str, False),
            ("before", int, False),
            ("after", int, False),
            ("limit", int, False),
        ],
    ),
    "topic": (True, [("room", str, True), ("topic", str, True)]),
    "ping": (False, []),
    "quit": (False, []),
    "upload": (
        True,
        [
            ("name", str, True),
            ("size", int, True),
            ("sha256", str, True),
            ("room", str, False),
            ("to", str, False),
            ("mime", str, False),
            ("text", str, False),
        ],
    ),
    "chunk": (True, [("upload", str, True), ("offset", int, True), ("data", str, True)]),
    "finish": (True, [("upload", str, True)]),
    "fetch": (True, [("file", int, True), ("offset", int, False)]),
    # issue 16's ops, declared the same way, so the differential test covers them too
    "mark_read": (True, [("message_id", int, True), ("room", str, False), ("with", str, False)]),
    "unread": (True, []),
    "edit": (True, [("message_id", int, True), ("text", str, True)]),
    "delete": (True, [("message_id", int, True)]),
    "search": (
        True,
        [
            ("query", str, True),
            ("room", str, False),
            ("with", str, False),
            ("before", int, False),
            ("limit", int, False),
        ],
    ),
}


def decode(line: bytes, logged_in: bool) -> tuple[Any, str | None, dict[str, Any] | ChatError]:
    """(request id, op, arguments) or (request id, op or None, the error), as dispatch did."""
    try:
        frame = parse_request(line)
    except ChatError as error:
        return None, None, error
    try:
        rid = request_id(frame)
    except ChatError as error:
        return None, None, error
    name = frame.get("op")
    if not isinstance(name, str):
        return rid, None, ChatError(ErrorCode.BAD_REQUEST, "op must be a string")
    if name not in OPS:
        return rid, None, ChatError(ErrorCode.UNKNOWN_OP, f"unknown op {name[:64]!r}")
    login_required, arguments = OPS[name]
    if login_required and not logged_in:
        return rid, name, ChatError(ErrorCode.AUTH_REQUIRED, f"log in before {name}")
    values: dict[str, Any] = {}
    for argument, kind, required in arguments:
        value = frame.get(argument)
        if value is None:
            if required:
                return rid, name, ChatError(ErrorCode.BAD_REQUEST, f"{name} needs {argument!r}")
            continue
        if type(value) is not kind:
            return rid, name, ChatError(ErrorCode.BAD_REQUEST, f"{argument!r} has the wrong type")
        values[argument] = value
    return rid, name, values
