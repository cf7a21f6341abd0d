"""Error codes as the client sees them: the server's (`chatd.errors.ErrorCode`) and its own.

A reply's `error` arrives from the wire as a string. `error_code` turns it
into an `ErrorCode`, or None for a code this client does not know (a newer
server's): the reply's `message` is then all there is to show.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from chatd.errors import ErrorCode


class ClientErrorCode(StrEnum):
    """Codes the client gives the replies it makes up itself; never sent or received."""

    NOT_SENT = "not_sent"  # the request never reached the server, or its reply was lost


AnyErrorCode = ErrorCode | ClientErrorCode


def error_code(reply: Mapping[str, Any]) -> AnyErrorCode | None:
    """The code of an error reply or event; None when there is none or it is not known.

    A client code counts only as the member the client put there: the same
    string from the wire is a code this client does not know, not its own.
    """
    value = reply.get("error")
    if isinstance(value, ClientErrorCode):
        return value
    if not isinstance(value, str):
        return None
    try:
        return ErrorCode(value)
    except ValueError:
        return None
