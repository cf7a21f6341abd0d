"""One IRC connection's state: its nick, capabilities, channels shown, and requests under way.

Shared by the connection's reader thread (which changes it while handling
commands) and the threads that deliver to it (which read it, and take the
requests they answer). Each field is one value or one dict or set, changed
by single operations, which the GIL makes atomic; nothing here waits.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chatd.irc import caps
from chatd.irc.caps import Flags, render_flags
from chatd.irc.names import nick_of
from chatd.irc.render import Renderer
from chatd.outgoing import Outgoing
from chatd.records import Message

# why: a client that takes long between its login and CAP END must not grow this unbounded
EARLY_MAX = 100


@dataclass(slots=True)
class Pending:
    """What an IRC command that became a chatd request needs to render its answer.

    `verb` is the IRC command, `target` what it named as the client wrote it;
    `label` its labeled-response label; `batch` the labeled-response batch it
    is part of when the command became several requests; `keep` filters a
    history page (CHATHISTORY LATEST after a reference, BETWEEN downwards).
    """

    verb: str
    target: str = ""
    label: str | None = None
    batch: str | None = None
    keep: Callable[[Message], bool] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class State:
    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer
        self.nick = "*"  # what numerics are addressed to: the nick once known
        self.username: str | None = None  # the account, once logged in
        self.caps: frozenset[str] = frozenset()
        self.flags = Flags()
        self.key: tuple[str, Flags] = ("irc", self.flags)
        self.registered = False  # 001 is sent
        self.channels: set[str] = set()  # rooms this client has been shown a JOIN for
        self.rooms_at_login: list[str] = []
        # direct messages that came between the login and 001, shown after the welcome;
        # the lock makes "not registered yet, so keep it" and "registered, show what was
        # kept" one step each, so none falls between
        self._early: list[Outgoing] = []
        self._early_lock = threading.Lock()
        self._pending: dict[int, Pending] = {}
        self._rids = itertools.count(1)
        self._batches = itertools.count(1)
        self.encode_event = self._encoder(self.flags)

    def set_caps(self, enabled: frozenset[str]) -> None:
        self.caps = enabled
        self.flags = render_flags(enabled)
        self.key = ("irc", self.flags)
        self.encode_event = self._encoder(self.flags)

    def _encoder(self, flags: Flags) -> Callable[[Outgoing], bytes]:
        """An Outgoing's bytes for this client, from the cache shared by clients alike."""
        key = ("irc", flags)
        renderer = self.renderer

        def encode(item: Outgoing) -> bytes:
            return item.encoded(key, lambda event: renderer.event(event, flags))

        return encode

    def keep_early(self, item: Outgoing) -> bool:
        """Keep a direct message for after 001; False when registered meanwhile (show it)."""
        with self._early_lock:
            if self.registered:
                return False
            if len(self._early) < EARLY_MAX:
                self._early.append(item)
            return True

    def register(self) -> list[Outgoing]:
        """The client is registered (001 is on its way): what was kept for it until now."""
        with self._early_lock:
            self.registered = True
            early, self._early = self._early, []
        return early

    def has(self, cap: str) -> bool:
        return cap in self.caps

    @property
    def labels(self) -> bool:
        return caps.LABELED_RESPONSE in self.caps and caps.BATCH in self.caps

    def logged_in(self, username: str) -> None:
        self.username = username
        self.nick = nick_of(username)

    def expect(self, pending: Pending) -> int:
        """The request id for a request whose answer `pending` describes."""
        rid = next(self._rids)
        self._pending[rid] = pending
        return rid

    def take(self, rid: object) -> Pending:
        """The Pending of a request being answered (a bare one if it had none)."""
        found = self._pending.pop(rid, None) if isinstance(rid, int) else None
        return found if found is not None else Pending("")

    def batch_id(self) -> str:
        return f"b{next(self._batches)}"
