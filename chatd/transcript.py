"""Room transcripts: the file format of `chatd export` / `chatd import`.

A transcript is a pickle of plain data (PROTOCOL.md, "Transcript files").
People pass these files around, so one is read by chatd/safepickle.py, which
runs no code whatever the file holds, then validated into frozen records
under the wire's own name and text rules. Every refusal is a
`TranscriptError` with a one-line reason; nothing here touches the database.
"""

from __future__ import annotations

import contextlib
import os
import pickle
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
from chatd.safepickle import (
    ForeignPickle,
    PickleBudget,
    UnsafePickle,
    load_plain,
    one_line,
)

FORMAT = "chatd.transcript"
VERSION = 1
PICKLE_PROTOCOL = 5
MAX_ID = (1 << 63) - 1
FILE_NAME_MAX_CHARS = 255


class TranscriptError(Exception):
    """A transcript that cannot be read or is refused; the message is one line."""


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
    # when the text was last edited: written for readers, not read back on import
    edited_ms: int | None = None


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
        if message.edited_ms is not None:
            # why: a new key, which version 1 readers ignore, so the version stays 1
            item["edited"] = format_ts(message.edited_ms)
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
    if isinstance(value, str):
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
            f"{where}.{key}", f"not an RFC 3339 timestamp: {one_line(repr(text), 60)}"
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
        raise _fail(f"{where}.user", f"not a valid username: {one_line(repr(user), 60)}")
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


def loads_transcript(data: bytes, budget: PickleBudget | None = None) -> Transcript:
    """A transcript from untrusted bytes, or TranscriptError with the reason."""
    budget = budget or PickleBudget()
    if len(data) > budget.max_bytes:
        raise TranscriptError(f"the file is larger than --max-bytes ({budget.max_bytes} bytes)")
    try:
        root = load_plain(data, budget)
    except ForeignPickle as exc:
        raise TranscriptError(f"not a transcript: {exc}") from None
    except UnsafePickle as exc:
        raise TranscriptError(str(exc)) from None
    return parse_transcript(root)
