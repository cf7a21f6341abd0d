"""The sequencer: the log's batches delivered in position order, each once.

Every batch of the log (chatd/log.py) reaches the fan-out through here, in
position order, whoever committed it and however it arrived. A batch that
comes early waits for the ones before it; one that comes again, or late, is
dropped. On a single server the writer hands its batches over in order, so
each is delivered at once, on the writer's thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from chatd.fanout import Fanout, Post
from chatd.log import Batch

log = logging.getLogger(__name__)


class Sequencer:
    def __init__(self, fanout: Fanout, position: int) -> None:
        self._fanout = fanout
        # guards the fields below and runs the fan-out: one batch at a time, in order
        self._lock = threading.Lock()
        self._next = position + 1  # the first position not delivered yet
        self._early: dict[int, tuple[Batch, Mapping[int, Post]]] = {}  # by first position

    @property
    def delivered(self) -> int:
        """The last position delivered."""
        return self._next - 1

    def committed(self, batch: Batch, posts: Mapping[int, Post]) -> None:
        """A batch of the log; `posts` are this server's own changes in it, by position."""
        with self._lock:
            if batch.last < self._next:
                return  # delivered already, or changes nothing
            if batch.first > self._next:
                self._early[batch.first] = (batch, posts)
                return
            self._deliver(batch, posts)
            while (waiting := self._early.pop(self._next, None)) is not None:
                self._deliver(*waiting)

    def _deliver(self, batch: Batch, posts: Mapping[int, Post]) -> None:
        first = self._next
        entries = [entry for entry in batch.entries if entry.position >= first]
        self._next = batch.last + 1
        self._fanout.deliver(entries, posts)
