"""Error codes of the wire protocol and the exception that carries them.

Inside the server errors are exceptions; on the wire they are values. The
dispatcher is the one place that turns a `ChatError` into an error reply.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every error code PROTOCOL.md names, and the few chatd adds (docs/protocol.md)."""

    BAD_REQUEST = "bad_request"
    UNKNOWN_OP = "unknown_op"
    FRAME_TOO_LARGE = "frame_too_large"
    AUTH_REQUIRED = "auth_required"
    INVALID_USERNAME = "invalid_username"
    INVALID_PASSWORD = "invalid_password"
    USERNAME_TAKEN = "username_taken"
    REGISTRATION_CLOSED = "registration_closed"
    INVALID_CREDENTIALS = "invalid_credentials"
    ALREADY_LOGGED_IN = "already_logged_in"
    ACCOUNT_DISABLED = "account_disabled"
    RATE_LIMITED = "rate_limited"
    INVALID_ROOM = "invalid_room"
    NO_SUCH_ROOM = "no_such_room"
    NOT_IN_ROOM = "not_in_room"
    INVALID_TEXT = "invalid_text"
    NO_SUCH_USER = "no_such_user"
    SENDQ_EXCEEDED = "sendq_exceeded"
    IDLE_TIMEOUT = "idle_timeout"
    TOO_MANY_ERRORS = "too_many_errors"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    INTERNAL = "internal"
    FILE_TOO_LARGE = "file_too_large"
    INVALID_NAME = "invalid_name"
    NO_SUCH_UPLOAD = "no_such_upload"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    NO_SUCH_FILE = "no_such_file"
    NO_SUCH_MESSAGE = "no_such_message"
    NOT_AUTHOR = "not_author"
    # chatd's own, documented in docs/protocol.md:
    STORAGE_FULL = "storage_full"


# Codes that PROTOCOL.md does not name; docs/protocol.md says what they mean.
CHATD_CODES = frozenset({ErrorCode.STORAGE_FULL})


class ChatError(Exception):
    """A refusal the client caused; becomes `{"ok": false, ...}` on the wire."""

    def __init__(self, code: ErrorCode, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


def rate_limited(retry_after: float, reason: str = "too many requests") -> ChatError:
    """The rate_limited refusal; `reason` says what is limited, for the human reading it."""
    wait = f"{retry_after:.0f}" if retry_after >= 10 else f"{max(retry_after, 0.1):.1f}"
    return ChatError(
        ErrorCode.RATE_LIMITED,
        f"{reason}; try again in {wait} s",
        retry_after=round(retry_after + 0.0005, 3),
    )
