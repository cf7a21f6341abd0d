"""Who is online on the other nodes, as their presence frames and heartbeats tell.

Each node numbers the changes of its own presence (a user's first
connection to it opened, or the last closed) and keeps the whole of it in
Redis under that number (chatd/redisbus.py). Here a node follows every
other: a change that follows the last one it knows is applied; a change
after a gap, or a heartbeat whose number differs, makes it reload that
node's whole presence. A node not heard from for SILENCE seconds is taken
for dead and its users for offline; the next heartbeat brings them back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chatd.bus import Heartbeat, PresenceChanged, PresenceSink

log = logging.getLogger(__name__)

# why: a node is taken for dead after this long without a frame. Under the 10 s the
# protocol allows with a heartbeat a second to spare, and above a 5 s pause (SIGSTOP,
# a long garbage collection) so a paused node's users do not blink offline.
SILENCE = 7.0

# A node's whole presence: (its version, the username keys connected to it); None: gone.
Snapshot = tuple[int, set[str]] | None


@dataclass(slots=True)
class _Node:
    version: int
    heard: float
    users: set[str] = field(default_factory=set)


class ClusterPresence:
    def __init__(
        self,
        sink: PresenceSink,
        load: Callable[[str], Snapshot],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`load(node)` reads a node's whole presence; it may raise (the bus is down)."""
        self._sink = sink
        self._load = load
        self._clock = clock
        self._nodes: dict[str, _Node] = {}  # only the receiving thread touches it

    def changed(self, frame: PresenceChanged) -> None:
        node = self._nodes.get(frame.node)
        if node is None or frame.version > node.version + 1:
            self._reload(frame.node)
            return
        node.heard = self._clock()
        if frame.version <= node.version:
            return  # the snapshot loaded has it already
        node.version = frame.version
        if frame.online and frame.user not in node.users:
            node.users.add(frame.user)
            self._sink.online_elsewhere((frame.user,), ())
        elif not frame.online and frame.user in node.users:
            node.users.discard(frame.user)
            self._sink.online_elsewhere((), (frame.user,))

    def heartbeat(self, frame: Heartbeat) -> None:
        node = self._nodes.get(frame.node)
        if node is None or node.version != frame.version:
            self._reload(frame.node)
        else:
            node.heard = self._clock()

    def expire(self) -> None:
        """Forget the nodes silent for SILENCE seconds: their users are offline here."""
        now = self._clock()
        for name, node in list(self._nodes.items()):
            if now - node.heard >= SILENCE:
                log.warning("node %s is silent: its users are shown offline", name)
                self._forget(name)

    def heard_all(self) -> None:
        """The bus is back after a cut: every node's silence counts from now."""
        now = self._clock()
        for node in self._nodes.values():
            node.heard = now

    @property
    def nodes(self) -> list[str]:
        return sorted(self._nodes)

    def _reload(self, name: str) -> None:
        snapshot = self._load(name)
        old = self._nodes.get(name)
        before = set() if old is None else old.users
        if snapshot is None:
            self._forget(name)
            return
        version, users = snapshot
        if old is None:
            log.info("node %s is online, with %d users", name, len(users))
        self._nodes[name] = _Node(version, self._clock(), users)
        self._sink.online_elsewhere(users - before, before - users)

    def _forget(self, name: str) -> None:
        node = self._nodes.pop(name, None)
        if node is not None and node.users:
            self._sink.online_elsewhere((), node.users)
