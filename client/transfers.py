"""File transfers for `chat`: /upload, /download and /open, each on its own thread.

A transfer is a sequence of ordinary requests (`upload`, `chunk`..., `finish`;
or `fetch`...) sent through the session one at a time and waited for on the
transfer's thread. The session matches replies by id, so chat messages keep
flowing between chunks and the input line never waits for a transfer.
Progress goes to a status line (the terminal) or nowhere (scripts); results
and failures are ordinary notice and error lines.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import logging
import mimetypes
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from chatd.errors import ErrorCode
from client import files, render
from client.connection import Frame
from client.errors import AnyErrorCode, error_code
from client.session import Request

log = logging.getLogger(__name__)

# why: each step is bounded, so a transfer always ends even if the server goes quiet.
REPLY_TIMEOUT = 60.0
# A bar is worth drawing only for a transfer of more than this many chunks.
FEW_CHUNKS = 4
RATE_LIMIT_RETRIES = 5
RETRY_CAP = 30.0
READ_BYTES = 1 << 20


class Requester(Protocol):
    """The part of client.session.Session a transfer uses."""

    welcome: Frame

    def request(
        self, op: str, on_reply: Callable[[Frame], None] | None = None, **args: Any
    ) -> Request: ...


class Host(Protocol):
    """Where a transfer reports (client.chat.Chat); called on the transfer's thread."""

    def notice(self, text: str) -> None: ...
    def error(self, text: str) -> None: ...
    def show_own(self, reply: Frame) -> None: ...
    def status(self, text: str | None) -> None: ...


class TransferFailed(Exception):
    """A transfer cannot go on; the message is the line to show, `code` the server's error."""

    def __init__(self, message: str, code: AnyErrorCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class Cancelled(Exception):
    """The chat is ending; the transfer stops quietly."""


@dataclass(eq=False)
class Transfer:
    """One upload or download in progress, as the status line shows it."""

    verb: str
    label: str
    total: int = 0
    done: int = 0
    show_bar: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)

    def status(self) -> str:
        return f"{self.verb} {self.label} {render.progress_bar(self.done, self.total)}"


@dataclass(frozen=True, slots=True)
class FileMeta:
    """A file as the server describes it (`fetch` reply), checked before it is trusted."""

    id: int
    name: str
    size: int
    sha256: str

    @classmethod
    def parse(cls, value: object, file_id: int) -> FileMeta:
        if not isinstance(value, dict):
            raise TransferFailed(f"the server did not describe file {file_id}")
        size, sha = value.get("size"), value.get("sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise TransferFailed(f"the server sent no valid size for file {file_id}")
        if not isinstance(sha, str) or len(sha) != 64:
            raise TransferFailed(f"the server sent no checksum for file {file_id}")
        return cls(file_id, str(value.get("name") or ""), size, sha.lower())


class Transfers:
    """The transfers of one chat: starts them, tracks them for the status line, ends them."""

    def __init__(
        self,
        session: Requester,
        host: Host,
        *,
        downloads: Callable[[], Path] = files.default_download_dir,
        cache: Callable[[], Path] = files.cache_dir,
        opener: Callable[[Path], bool] = files.open_with_system,
        reply_timeout: float = REPLY_TIMEOUT,
    ) -> None:
        self.session = session
        self.host = host
        self.downloads = downloads
        self.cache = cache
        self.opener = opener
        self.reply_timeout = reply_timeout
        self._numbers = itertools.count(1)
        # guards _active and _shown; never held while calling the host
        self._lock = threading.Condition()
        self._active: list[Transfer] = []
        self._shown: str | None = None

    # -- starting (on the input thread: checks that need no server) -------------------

    def upload(
        self, path_text: str, *, room: str | None, to: str | None, caption: str | None
    ) -> None:
        """/upload: refuse at once what cannot be sent, else send it in the background."""
        path = Path(os.path.expanduser(path_text))
        try:
            info = path.stat()
        except OSError as exc:
            self.host.error(f"cannot upload {path_text}: {exc.strerror or exc}")
            return
        if not path.is_file():
            self.host.error(f"cannot upload {path_text}: not a regular file")
            return
        limit = self.session.welcome.get("max_file_bytes")
        if isinstance(limit, int) and info.st_size > limit:
            self.host.error(
                f"{path.name} is {render.human_size(info.st_size)}; this server takes files "
                f"of at most {render.human_size(limit)} ({limit} bytes): not sent"
            )
            return
        target = {"room": room} if room is not None else {"to": to}
        transfer = Transfer("uploading", files.upload_name(path), total=info.st_size)
        self._start(transfer, self._upload, transfer, path, target, caption, limit)

    def download(self, file_id: int, dest: str | None) -> None:
        """/download: save file `file_id` into DEST (or the default folder) in the background."""
        try:
            directory, name = files.resolve_destination(dest, self.downloads())
        except ValueError as exc:
            self.host.error(f"cannot download file {file_id}: {exc}")
            return
        transfer = Transfer("downloading", f"file {file_id}")
        self._start(transfer, self._download, transfer, file_id, directory, name, False)

    def open(self, file_id: int) -> None:
        """/open: download into the cache (or reuse it there), then hand it to the opener."""
        directory = self.cache() / str(file_id)
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            self.host.error(f"cannot open file {file_id}: {exc.strerror or exc}")
            return
        transfer = Transfer("downloading", f"file {file_id}")
        self._start(transfer, self._download, transfer, file_id, directory, None, True)

    def _start(self, transfer: Transfer, work: Callable[..., None], *args: Any) -> None:
        with self._lock:
            self._active.append(transfer)
        number = next(self._numbers)
        thread = threading.Thread(
            target=self._run, args=(transfer, work, args), name=f"chat-transfer-{number}"
        )
        thread.daemon = True
        thread.start()

    # -- waiting and ending --------------------------------------------------------

    def active(self) -> int:
        with self._lock:
            return len(self._active)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no transfer runs (a script's next line); False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._active, timeout)

    def cancel(self) -> None:
        """Stop every transfer at its next step (the chat is ending); partial files are removed."""
        with self._lock:
            for transfer in self._active:
                transfer.cancelled.set()

    # -- the transfer threads ------------------------------------------------------

    def _run(self, transfer: Transfer, work: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            work(*args)
        except Cancelled:
            log.info("%s %s cancelled", transfer.verb, transfer.label)
        except TransferFailed as exc:
            if not transfer.cancelled.is_set():
                self.host.error(str(exc))
        except Exception:
            log.exception("%s %s failed", transfer.verb, transfer.label)
            self.host.error(f"{transfer.verb} {transfer.label} failed: an error in the client")
        finally:
            with self._lock:
                self._active.remove(transfer)
                self._lock.notify_all()
            self._update()

    def _call(self, transfer: Transfer, op: str, **args: Any) -> Frame:
        """One request, waited for; rate limits are waited out, anything else fails."""
        for attempt in itertools.count():
            if transfer.cancelled.is_set():
                raise Cancelled
            try:
                reply = self.session.request(op, **args).wait(self.reply_timeout)
            except TimeoutError:
                raise TransferFailed(
                    f"{transfer.verb} {transfer.label} failed: no reply from the server in time"
                ) from None
            if reply.get("ok"):
                return reply
            retry = reply.get("retry_after")
            if error_code(reply) is ErrorCode.RATE_LIMITED and attempt < RATE_LIMIT_RETRIES:
                delay = retry if isinstance(retry, int | float) and retry > 0 else 1.0
                if transfer.cancelled.wait(min(float(delay), RETRY_CAP)):
                    raise Cancelled
                continue
            if transfer.cancelled.is_set():
                raise Cancelled
            raise TransferFailed(
                f"{transfer.verb} {transfer.label} failed: {render.error_text(reply)}",
                code=error_code(reply),
            )
        raise AssertionError("unreachable")

    def _upload(
        self,
        transfer: Transfer,
        path: Path,
        target: dict[str, Any],
        caption: str | None,
        limit: int | None,
    ) -> None:
        """upload, chunk..., finish: the server shows the file message when all is there."""
        size, digest = _measure(path, transfer)
        if limit is not None and size > limit:
            raise TransferFailed(f"{path.name} grew past the server's limit: not sent")
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        args = {"name": transfer.label, "size": size, "sha256": digest, "mime": mime, **target}
        if caption:
            args["text"] = caption
        started = self._call(transfer, "upload", **args)
        token, step = started.get("upload"), started.get("chunk_bytes")
        if not isinstance(token, str) or not isinstance(step, int) or step <= 0:
            raise TransferFailed(f"uploading {transfer.label} failed: a strange server reply")
        transfer.total, transfer.show_bar = size, size > FEW_CHUNKS * step
        offset = 0
        try:
            with path.open("rb") as source:
                while offset < size:
                    piece = source.read(min(step, size - offset))
                    if not piece:
                        raise TransferFailed(f"{path.name} shrank while it was sent: not sent")
                    data = base64.b64encode(piece).decode("ascii")
                    self._call(transfer, "chunk", upload=token, offset=offset, data=data)
                    offset += len(piece)
                    transfer.done = offset
                    self._update()
        except OSError as exc:
            raise TransferFailed(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            reply = self._call(transfer, "finish", upload=token)
        except TransferFailed as exc:
            if exc.code is ErrorCode.CHECKSUM_MISMATCH:
                raise TransferFailed(f"{path.name} changed while it was sent: not sent") from None
            raise
        self.host.show_own(reply)

    def _download(
        self,
        transfer: Transfer,
        file_id: int,
        directory: Path,
        chosen: str | None,
        then_open: bool,
    ) -> None:
        """fetch... into a temp file beside the target; keep it only if the sha256 matches."""
        first = self._call(transfer, "fetch", file=file_id, offset=0)
        meta = FileMeta.parse(first.get("file"), file_id)
        # why: messages name the file that was shared; only the path says where it went
        shared = files.safe_name(meta.name, file_id)
        name = chosen or shared
        transfer.label, transfer.total = shared, meta.size
        existing = directory / name
        if then_open and existing.is_file() and _sha256_of(existing) == meta.sha256:
            self._opened(existing)
            return
        temp = directory / f".chat-{file_id}-{secrets.token_hex(4)}.part"
        try:
            fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except OSError as exc:
            raise TransferFailed(f"cannot write in {directory}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "wb") as out:
                digest = self._receive(transfer, first, meta, out)
                out.flush()
                os.fsync(out.fileno())
            if transfer.done != meta.size or digest != meta.sha256:
                raise TransferFailed(
                    f"file {file_id} ({shared}) did not arrive intact (sha256 mismatch): "
                    "nothing was saved"
                )
            final = files.claim(temp, directory, name)
        except OSError as exc:
            raise TransferFailed(
                f"cannot save {shared} in {directory}: {exc.strerror or exc}"
            ) from None
        finally:
            temp.unlink(missing_ok=True)
        if then_open:
            self._opened(final)
        else:
            self.host.notice(f"saved {shared} ({render.human_size(meta.size)}) as {final}")

    def _receive(self, transfer: Transfer, reply: Frame, meta: FileMeta, out: Any) -> str:
        """Write each fetched piece; the sha256 of what arrived."""
        digest = hashlib.sha256()
        offset = 0
        while True:
            if reply.get("offset") != offset:
                raise TransferFailed(f"downloading {transfer.label} failed: a strange server reply")
            try:
                data = base64.b64decode(str(reply.get("data", "")), validate=True)
            except (binascii.Error, ValueError):
                raise TransferFailed(f"downloading {transfer.label} failed: bad data") from None
            if offset + len(data) > meta.size:
                raise TransferFailed(
                    f"downloading {transfer.label} failed: more bytes than announced"
                )
            if offset == 0:
                transfer.show_bar = meta.size > FEW_CHUNKS * max(len(data), 1)
            out.write(data)
            digest.update(data)
            offset += len(data)
            transfer.done = offset
            self._update()
            if reply.get("eof") is True:
                return digest.hexdigest()
            if not data:
                raise TransferFailed(f"downloading {transfer.label} failed: the data stopped")
            reply = self._call(transfer, "fetch", file=meta.id, offset=offset)

    def _opened(self, path: Path) -> None:
        if self.opener(path):
            self.host.notice(f"opened {path}")
        else:
            self.host.notice(f"no program to open files with; the file is at {path}")

    def _update(self) -> None:
        """Tell the host the status line when it changed (one line for all transfers)."""
        with self._lock:
            parts = [t.status() for t in self._active if t.show_bar]
            text = "  |  ".join(parts) if parts else None
            if text == self._shown:
                return
            self._shown = text
        self.host.status(text)


def _measure(path: Path, transfer: Transfer) -> tuple[int, str]:
    """Size and sha256 of a local file, read once before anything is sent."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as source:
            while chunk := source.read(READ_BYTES):
                if transfer.cancelled.is_set():
                    raise Cancelled
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise TransferFailed(f"cannot read {path}: {exc.strerror or exc}") from None
    return size, digest.hexdigest()


def _sha256_of(path: Path) -> str:
    try:
        return _measure(path, Transfer("checking", path.name))[1]
    except TransferFailed:
        return ""
