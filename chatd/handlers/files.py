"""Files in chat: the upload, chunk, finish and fetch ops.

Chunks are ordinary frames, so the frame limit and one-reply-per-request
still hold, and a big transfer is interleaved with everyone's chat instead
of blocking it. An upload belongs to the connection that began it and is
dropped, leaving nothing behind, when that connection closes or when it has
been idle for --upload-timeout.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from chatd.commands import Deferred, Request
from chatd.diskspace import is_storage_full
from chatd.errors import ChatError, ErrorCode
from chatd.handlers.common import existing_user, is_member, not_in_room, submit
from chatd.names import clean_text, has_control, normalize_room
from chatd.records import NewFile, NewMessage, UserRecord
from chatd.replies import ChunkReceived, FileChunk, UploadStarted
from chatd.requests import Chunk, Fetch, Finish, Upload
from chatd.uploads import Upload as UploadInProgress

log = logging.getLogger(__name__)

SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
MIME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")
DEFAULT_MIME = "application/octet-stream"
NAME_MAX_CHARS = 255
# why: room for the op, a 64-character id, the token and offset around the base64 data.
FRAME_OVERHEAD = 256
SYNC_EVERY_BYTES = 1024 * 1024


def chunk_bytes(max_frame: int) -> int:
    """The most raw bytes one chunk may carry so its frame stays under the limit."""
    return (max_frame - FRAME_OVERHEAD) // 4 * 3


def check_file_name(name: str) -> str:
    if (
        not 1 <= len(name) <= NAME_MAX_CHARS
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or has_control(name)
    ):
        raise ChatError(
            ErrorCode.INVALID_NAME,
            "a file name is 1-255 characters, without / \\ or control characters, not . or ..",
        )
    return name


def _file_arguments(req: Request, size: int, sha256: str, mime: str | None, name: str) -> NewFile:
    config = req.services.config
    if size < 0:
        raise ChatError(ErrorCode.BAD_REQUEST, "size must not be negative")
    if SHA256_RE.fullmatch(sha256) is None:
        raise ChatError(ErrorCode.BAD_REQUEST, "sha256 must be 64 hexadecimal digits")
    mime = mime or DEFAULT_MIME
    if len(mime) > NAME_MAX_CHARS or MIME_RE.fullmatch(mime) is None:
        raise ChatError(ErrorCode.BAD_REQUEST, "mime must be a media type such as image/png")
    if size > config.max_file_bytes:
        raise ChatError(
            ErrorCode.FILE_TOO_LARGE, f"files are limited to {config.max_file_bytes} bytes"
        )
    return NewFile(sha256.lower(), size, check_file_name(name), mime.lower())


def _check_quota(req: Request, user: UserRecord, size: int) -> None:
    services = req.services
    quota = services.config.upload_quota_bytes
    if not quota:
        return
    used = services.store.uploaded_bytes(user.id) + services.uploads.in_flight_bytes(user)
    if used + size > quota:
        raise ChatError(
            ErrorCode.FILE_TOO_LARGE,
            f"this would exceed your upload quota ({used} of {quota} bytes used)",
        )


def upload(req: Request, args: Upload) -> UploadStarted:
    """upload {room | to, name, size, sha256, mime?, text?} -> {upload, chunk_bytes}."""
    session = req.session
    services = req.services
    if (args.room is None) == (args.to is None):
        raise ChatError(ErrorCode.BAD_REQUEST, "give exactly one of room or to")
    meta = _file_arguments(req, args.size, args.sha256, args.mime, args.name)
    room_name = None if args.room is None else normalize_room(args.room)
    text = args.text
    caption = clean_text(text) if text is not None and text.strip() else None
    user = req.user
    recipient = None
    if room_name is not None:
        if not is_member(req, room_name):
            raise not_in_room(room_name)
    else:
        assert args.to is not None
        recipient = existing_user(req, args.to)
    _check_quota(req, user, meta.size)
    session.spend_send_token()
    path, handle = services.blobs.open_incoming()
    token = secrets.token_urlsafe(18)
    services.uploads.add(
        UploadInProgress(
            token,
            session,
            user,
            room_name,
            recipient,
            meta,
            caption,
            path,
            handle,
            services.clock(),
        )
    )
    return UploadStarted(token, chunk_bytes(services.config.max_frame))


def chunk(req: Request, args: Chunk) -> ChunkReceived:
    """chunk {upload, offset, data} -> {received}; offset must equal the bytes so far."""
    services = req.services
    offset = args.offset
    current = services.uploads.owned(args.upload, req.session)
    try:
        raw = base64.b64decode(args.data, validate=True)
    except (binascii.Error, ValueError):
        raise ChatError(ErrorCode.BAD_REQUEST, "data must be base64") from None
    with _discarded_when_full(req, current), current.lock:
        if current.closed:
            raise ChatError(ErrorCode.NO_SUCH_UPLOAD, "that upload has expired")
        if offset != current.received:
            raise ChatError(ErrorCode.BAD_REQUEST, f"offset must be {current.received}")
        if current.received + len(raw) > current.meta.size:
            raise ChatError(ErrorCode.BAD_REQUEST, f"the file has only {current.meta.size} bytes")
        current.handle.write(raw)
        current.digest.update(raw)
        current.received += len(raw)
        current.unsynced += len(raw)
        if current.unsynced >= SYNC_EVERY_BYTES:
            # why: flushing as it arrives keeps the final fsync small; one fsync of a
            # whole large file stalls the WAL commits of everyone's messages behind it.
            current.handle.flush()
            os.fdatasync(current.handle.fileno())
            current.unsynced = 0
        current.last_activity = services.clock()
        return ChunkReceived(current.received)


@contextmanager
def _discarded_when_full(req: Request, current: UploadInProgress) -> Iterator[None]:
    """An upload that found the disk full is dropped (freeing its bytes): storage_full.

    Outside the upload's lock, which dropping it takes.
    """
    try:
        yield
    except OSError as exc:
        if not is_storage_full(exc):
            raise
        services = req.services
        with suppress(OSError):  # closing flushes what the disk did not take
            services.uploads.remove(current, discard=True)
        raise services.store.disk.refusal(exc) from None


def finish(req: Request, args: Finish) -> Deferred:
    """finish {upload} -> {message} once the bytes match and the file is stored durably."""
    services = req.services
    current = services.uploads.owned(args.upload, req.session)
    meta = current.meta
    with current.lock:
        if current.received < meta.size:
            raise ChatError(
                ErrorCode.BAD_REQUEST, f"{current.received} of {meta.size} bytes received"
            )
        matches = current.digest.hexdigest() == meta.sha256
    if not matches:
        services.uploads.remove(current, discard=True)
        raise ChatError(ErrorCode.CHECKSUM_MISMATCH, "the bytes do not match sha256; start over")
    text = current.caption or meta.name
    if current.room is not None and not is_member(req, current.room):
        raise not_in_room(current.room)
    # why: the fsync of a large file happens here, on the uploader's thread, not in a batch.
    with _discarded_when_full(req, current):
        services.uploads.remove(current, discard=False)
        services.blobs.keep(current.path, meta.sha256)
    log.info("%s: stored %s (%d bytes)", req.session.peer, meta.sha256[:12], meta.size)
    return submit(req, NewMessage(req.user, text, current.room, current.recipient, meta))


def fetch(req: Request, args: Fetch) -> FileChunk:
    """fetch {file, offset?} -> {file, offset, data, eof}; for those who could see it."""
    services = req.services
    user = req.user
    offset = args.offset or 0
    access = services.store.file_access(args.file)
    allowed = access is not None and (
        services.hub.is_member(access.room, user.username)
        if access.room is not None
        else user.id in access.parties
    )
    if not allowed or access is None:
        raise ChatError(ErrorCode.NO_SUCH_FILE, f"there is no file {args.file} you may fetch")
    size = access.file.size
    if not 0 <= offset <= size:
        raise ChatError(ErrorCode.BAD_REQUEST, f"offset must be 0-{size}")
    data = services.blobs.read(access.file.sha256, offset, chunk_bytes(services.config.max_frame))
    return FileChunk(
        access.file, offset, base64.b64encode(data).decode("ascii"), offset + len(data) >= size
    )
