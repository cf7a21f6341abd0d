"""Room transcripts: the file format of `chatd export` / `chatd import`, and its hardened loader.

A transcript is a pickle of plain data (PROTOCOL.md, "Transcript files").
People pass these files around, so loading one must be as safe as loading
JSON, and `pickle.loads` is not: a pickle is a program that may call any
global, or be built to exhaust memory or time. So `loads_transcript` never
runs a pickle it has not read first: a size cap; `scan`, which reads the
opcode stream without building anything (data opcodes only, memo indexes in
sequence, budgets); a load whose `find_class` always raises; `check_tree`,
an iterative walk refusing shared containers and deep nesting; then
validation into frozen records under the wire's own name and text rules.
docs/transcripts.md explains each defence. Every refusal is a
`TranscriptError` with a one-line reason; nothing here touches the database.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import pickletools
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from chatd.errors import ChatError
from chatd.names import (
    clean_text,
    clean_topic,
    format_ts,
    is_valid_username,
    normalize_room,
    parse_ts,
)

FORMAT = "chatd.transcript"
VERSION = 1
PICKLE_PROTOCOL = 5
# why: protocols 4 and 5 carry plain data with no global at all; older ones need one for bytes.
READABLE_PROTOCOLS = frozenset({4, 5})
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
# why: the wire refuses JSON nested deeper than 32 levels; a transcript needs 5.
MAX_DEPTH = 32
# why: Python's pickler batches APPENDS/SETITEMS by 1000, so honest files stay far below this.
MAX_STACK = 1 << 20
MAX_ID = (1 << 63) - 1
FILE_NAME_MAX_CHARS = 255

# Opcodes that build plain data and nothing else. Text-mode (protocol 0)
# forms, bytes, tuples and sets are left out: a protocol 4/5 pickler never
# needs them for a transcript, and each one left out is one less way in.
PUSH_OPCODES = frozenset(
    {
        "NONE", "NEWTRUE", "NEWFALSE",
        "BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT",
        "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
        "EMPTY_LIST", "EMPTY_DICT",
        "BINGET", "LONG_BINGET",
    }
)  # fmt: skip
ALLOWED_OPCODES = PUSH_OPCODES | {
    "PROTO", "FRAME", "STOP", "MARK", "MEMOIZE", "BINPUT", "LONG_BINPUT",
    "APPEND", "APPENDS", "LIST", "SETITEM", "SETITEMS", "DICT",
}  # fmt: skip
# Opcodes that name a global, call it or build an object: the code-execution path.
OBJECT_OPCODES = frozenset(
    {
        "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX",
        "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID",
    }
)  # fmt: skip
_CONTAINER_OPCODES = frozenset({"EMPTY_LIST", "EMPTY_DICT", "LIST", "DICT"})
_SCALARS = (str, int, float, bool, type(None))


class TranscriptError(Exception):
    """A transcript that cannot be read or is refused; the message is one line."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Budgets for one load; scaled to the size cap, so a hostile file costs no more
    memory or time than an honest transcript of the same size."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_opcodes: int = DEFAULT_MAX_BYTES // 2
    max_containers: int = DEFAULT_MAX_BYTES // 16
    max_nodes: int = DEFAULT_MAX_BYTES // 2
    max_depth: int = MAX_DEPTH
    max_stack: int = MAX_STACK

    @classmethod
    def for_size(cls, max_bytes: int) -> Limits:
        # why: an honest pickle spends >= 3 bytes per opcode and >= 16 per message dict.
        return cls(
            max_bytes=max_bytes,
            max_opcodes=max(1024, max_bytes // 2),
            max_containers=max(64, max_bytes // 16),
            max_nodes=max(1024, max_bytes // 2),
        )


@dataclass(frozen=True, slots=True)
class FileMeta:
    """The metadata of a file a message announced; a transcript never holds the bytes."""

    id: int
    name: str
    size: int
    mime: str
    sha256: str


@dataclass(frozen=True, slots=True)
class TranscriptMessage:
    id: int
    user: str
    text: str
    ts_ms: int
    file: FileMeta | None = None


@dataclass(frozen=True, slots=True)
class Transcript:
    room: str
    topic: str
    exported_at_ms: int
    messages: tuple[TranscriptMessage, ...]


# writing


def to_plain(transcript: Transcript) -> dict[str, Any]:
    """The transcript as the plain data PROTOCOL.md describes."""
    messages = []
    for message in transcript.messages:
        item: dict[str, Any] = {
            "id": message.id,
            "user": message.user,
            "text": message.text,
            "ts": format_ts(message.ts_ms),
        }
        if message.file is not None:
            item["file"] = asdict(message.file)
        messages.append(item)
    return {
        "format": FORMAT,
        "version": VERSION,
        "room": transcript.room,
        "topic": transcript.topic,
        "exported_at": format_ts(transcript.exported_at_ms),
        "messages": messages,
    }


def dumps_transcript(transcript: Transcript) -> bytes:
    return pickle.dumps(to_plain(transcript), protocol=PICKLE_PROTOCOL)


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` so a crash leaves the old file or the new one, never half.

    A temp file in the same directory (so os.replace is a rename within one
    file system), fsync'd before the rename, then the directory fsync'd so the
    rename itself survives a power cut. The file is private (0600): chat logs.
    """
    target = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):  # why: not every OS or file system can fsync a directory
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# reading


def read_capped(path: str, max_bytes: int, stdin: BinaryIO | None = None) -> bytes:
    """The file's bytes (`-` is stdin), refused before reading when over the cap."""
    too_big = TranscriptError(f"the file is larger than --max-bytes ({max_bytes} bytes)")
    if path == "-":
        data = (stdin or sys.stdin.buffer).read(max_bytes + 1)
    else:
        with open(path, "rb") as stream:
            info = os.fstat(stream.fileno())
            if stat.S_ISREG(info.st_mode) and info.st_size > max_bytes:
                raise too_big
            data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_big
    return data


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


_NOT_OURS = "not a transcript: not a pickle of protocol 4 or 5"


def _refused(why: str) -> TranscriptError:
    return TranscriptError(f"refused: {why}")


def _damaged(name: str, pos: int, why: str) -> TranscriptError:
    return TranscriptError(f"damaged pickle: {name} at byte {pos} {why}")


def scan(data: bytes, limits: Limits) -> None:
    """Refuse any pickle that is not plain data within budget, without building anything.

    Simulates the unpickler's stack and mark stack, so malformed streams are
    refused here and the real load never sees a stack or memo it would grow
    without bound.
    """
    opcodes = containers = memo = stack = 0
    marks: list[int] = []
    end = -1
    foreign = False  # why: a foreign pickle is still read, to say so if it would run code
    danger = ""
    try:
        for opcode, arg, pos in pickletools.genops(data):
            name = opcode.name
            opcodes += 1
            if opcodes > limits.max_opcodes:
                raise _refused(f"more than {limits.max_opcodes} pickle opcodes")
            if name in OBJECT_OPCODES:
                danger = (
                    danger or f"names a global or builds an object (opcode {name} at byte {pos})"
                )
                if not foreign and opcodes > 1:
                    raise _refused(f"the pickle {danger}; a transcript holds plain data only")
            if opcodes == 1:
                foreign = name != "PROTO" or arg not in READABLE_PROTOCOLS
            if foreign or opcodes == 1:
                end = pos
                continue
            if name not in ALLOWED_OPCODES:
                raise _refused(f"opcode {name} at byte {pos} is not plain transcript data")
            containers += name in _CONTAINER_OPCODES
            if containers > limits.max_containers:
                raise _refused(f"more than {limits.max_containers} lists and dicts")
            stack = _stack_effect(name, arg, pos, stack, marks, memo, len(data))
            if stack > limits.max_stack or len(marks) > limits.max_depth:
                raise _refused(f"the pickle nests too deep at byte {pos}")
            if name in ("MEMOIZE", "BINPUT", "LONG_BINPUT"):
                memo += 1
            end = pos
    except TranscriptError:
        raise
    except Exception as exc:  # pickletools' own complaint about a short or broken stream
        if foreign or opcodes == 0:
            raise TranscriptError(_NOT_OURS) from None
        raise TranscriptError(f"truncated or damaged pickle: {_one_line(str(exc))}") from None
    if foreign:
        raise TranscriptError(f"{_NOT_OURS}, and it {danger}" if danger else _NOT_OURS)
    if end + 1 != len(data):
        raise TranscriptError(f"damaged pickle: {len(data) - end - 1} bytes after its end")


def _stack_effect(
    name: str, arg: Any, pos: int, stack: int, marks: list[int], memo: int, size: int
) -> int:
    """The stack height after one opcode; TranscriptError when it cannot apply."""

    def need(count: int) -> None:
        floor = marks[-1] if marks else 0
        if stack - floor < count:
            raise _damaged(name, pos, "has too few operands")

    if name in PUSH_OPCODES:
        if name in ("BINGET", "LONG_BINGET") and not 0 <= arg < memo:
            raise _refused(f"memo index {arg} at byte {pos} was never stored")
        return stack + 1
    if name in ("MEMOIZE", "BINPUT", "LONG_BINPUT"):
        if name != "MEMOIZE" and arg != memo:
            raise _refused(f"memo index {arg} at byte {pos} is out of sequence")
        need(1)
        return stack
    if name == "FRAME":
        if arg > size - pos - 9:  # why: FRAME's own 9 bytes come first
            raise TranscriptError(f"truncated or damaged pickle: frame at byte {pos} is too long")
        return stack
    if name == "MARK":
        marks.append(stack)
        return stack
    if name in ("APPEND", "SETITEM"):
        operands = 2 if name == "APPEND" else 3
        need(operands)
        return stack - operands + 1
    if name in ("APPENDS", "SETITEMS", "LIST", "DICT"):
        if not marks:
            raise _damaged(name, pos, "without a mark")
        floor = marks.pop()
        outer = marks[-1] if marks else 0
        items = stack - floor
        if name in ("SETITEMS", "DICT") and items % 2:
            raise _damaged(name, pos, "has an odd item count")
        if name in ("LIST", "DICT"):
            return floor + 1
        if floor - outer < 1:
            raise _damaged(name, pos, "has no container")
        return floor
    if name == "STOP":
        if stack != 1 or marks:
            raise _damaged(name, pos, "with a bad stack")
        return stack
    raise _refused(f"opcode {name} at byte {pos} is not plain transcript data")


class _PlainUnpickler(pickle.Unpickler):
    """Loads plain data only: any request for a global is refused, whatever the scan said."""

    def find_class(self, module: str, name: str) -> Any:
        raise TranscriptError(
            f"refused: the pickle names the global {_one_line(module, 60)}.{_one_line(name, 60)}"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise TranscriptError("refused: the pickle asks for a persistent object")


def load_plain(data: bytes, limits: Limits) -> Any:
    """Scan, then load, then walk: the plain-data tree of a pickle that passed every check."""
    scan(data, limits)
    try:
        root = _PlainUnpickler(io.BytesIO(data)).load()
    except TranscriptError:
        raise
    except Exception as exc:
        raise TranscriptError(f"damaged pickle: {_one_line(str(exc))}") from None
    check_tree(root, limits)
    return root


def check_tree(root: Any, limits: Limits) -> None:
    """Refuse shared containers, deep nesting, foreign types and trees over the node budget.

    Iterative, so depth costs no Python stack. A container is marked as
    seen when its parent is expanded, so a shared-reference bomb is refused
    at its first reuse instead of after 2^39 steps.
    """
    seen: set[int] = {id(root)}
    nodes = 0
    pending: list[tuple[Any, int]] = [(root, 1)]
    while pending:
        value, depth = pending.pop()
        nodes += 1
        if nodes > limits.max_nodes:
            raise _refused(f"more than {limits.max_nodes} values")
        kind = type(value)
        if kind is not dict and kind is not list:
            if not isinstance(value, _SCALARS):
                raise _refused(f"a {kind.__name__} is not plain data")
            continue
        if depth > limits.max_depth:
            raise _refused(f"data nested deeper than {limits.max_depth}")
        if kind is dict:
            nodes += len(value)  # the keys: scalars, since lists and dicts cannot be keys
        for child in value.values() if kind is dict else value:
            if type(child) is dict or type(child) is list:
                if id(child) in seen:
                    raise _refused("a list or dict appears more than once")
                seen.add(id(child))
            pending.append((child, depth + 1))


# validation into records


def _fail(where: str, why: str) -> TranscriptError:
    return TranscriptError(f"invalid transcript: {where}: {why}")


def _field(data: dict[Any, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise _fail(where, f"{key!r} is missing")
    value = data[key]
    # why: exact types, so True never passes for a version or an id (bool is an int).
    if type(value) is not kind:
        raise _fail(f"{where}.{key}", f"expected {kind.__name__}, got {type(value).__name__}")
    if kind is str:
        try:  # why: a pickle may carry lone surrogates; neither wire nor database takes them
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _fail(f"{where}.{key}", "not valid Unicode (a lone surrogate)") from None
    return value


def _ruled(rule: Callable[[str], str], data: dict[Any, Any], key: str, where: str) -> str:
    """A string field under one of the wire's rules (names.py), applied as a live op would."""
    try:
        return rule(_field(data, key, str, where))
    except ChatError as exc:
        raise _fail(f"{where}.{key}", exc.message) from None


def _ts(data: dict[Any, Any], key: str, where: str) -> int:
    text = _field(data, key, str, where)
    try:
        return parse_ts(text)
    except (ValueError, OverflowError):
        raise _fail(
            f"{where}.{key}", f"not an RFC 3339 timestamp: {_one_line(repr(text), 60)}"
        ) from None


def _positive_id(data: dict[Any, Any], where: str) -> int:
    value: int = _field(data, "id", int, where)
    if not 1 <= value <= MAX_ID:
        raise _fail(f"{where}.id", "not a positive 64-bit integer")
    return value


def _file_meta(data: dict[Any, Any], where: str) -> FileMeta:
    file_id = _positive_id(data, where)
    name = _field(data, "name", str, where)
    if (
        not 1 <= len(name) <= FILE_NAME_MAX_CHARS
        or name in (".", "..")
        or any(ch in "/\\" or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in name)
    ):
        raise _fail(f"{where}.name", "not a valid file name")
    size = _field(data, "size", int, where)
    if size < 0:
        raise _fail(f"{where}.size", "negative")
    mime = _field(data, "mime", str, where)
    digest = _field(data, "sha256", str, where)
    if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
        raise _fail(f"{where}.sha256", "not 64 lowercase hex digits")
    return FileMeta(file_id, name, size, mime, digest)


def _message(data: Any, where: str) -> TranscriptMessage:
    if type(data) is not dict:
        raise _fail(where, f"expected dict, got {type(data).__name__}")
    message_id = _positive_id(data, where)
    user = _field(data, "user", str, where)
    if not is_valid_username(user):
        raise _fail(f"{where}.user", f"not a valid username: {_one_line(repr(user), 60)}")
    # why: the rule of a live `send`: trailing whitespace goes, other faults are refused.
    text = _ruled(clean_text, data, "text", where)
    ts_ms = _ts(data, "ts", where)
    meta = None
    if data.get("file") is not None:
        meta = _file_meta(_field(data, "file", dict, where), f"{where}.file")
    return TranscriptMessage(message_id, user, text, ts_ms, meta)


def parse_transcript(root: Any) -> Transcript:
    """Typed records from a checked plain-data tree; unknown keys are ignored."""
    if type(root) is not dict:
        raise TranscriptError("not a transcript: the pickle holds no dict")
    if root.get("format") != FORMAT:
        raise TranscriptError(f"not a transcript: 'format' is not {FORMAT!r}")
    version = _field(root, "version", int, "transcript")
    if version != VERSION:
        raise TranscriptError(
            f"transcript version {version} is not supported (this chatd reads version {VERSION})"
        )
    room = _ruled(normalize_room, root, "room", "transcript")
    topic = _ruled(clean_topic, root, "topic", "transcript")
    exported_at = _ts(root, "exported_at", "transcript")
    items: Iterable[Any] = _field(root, "messages", list, "transcript")
    messages = tuple(_message(item, f"messages[{index}]") for index, item in enumerate(items))
    return Transcript(room, topic, exported_at, messages)


def loads_transcript(data: bytes, limits: Limits | None = None) -> Transcript:
    """A transcript from untrusted bytes, or TranscriptError with the reason."""
    limits = limits or Limits()
    if len(data) > limits.max_bytes:
        raise TranscriptError(f"the file is larger than --max-bytes ({limits.max_bytes} bytes)")
    return parse_transcript(load_plain(data, limits))
