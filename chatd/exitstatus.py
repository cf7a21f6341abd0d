"""The exit statuses of the `chatd` and `chat` commands, defined once.

A module of its own that imports nothing of ours, so the server's CLI, its
admin commands and the client all use it without importing one another.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """What a command's `main()` returns; an int, so it goes to `sys.exit` as it is."""

    OK = 0
    FAILURE = 1  # refused, or it went wrong: the message says why
    USAGE = 2  # the command line or the environment cannot work (argparse's status too)
