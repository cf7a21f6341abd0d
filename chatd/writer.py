"""Group commit: one thread appends changes to the log in batches and hands each on.

A `send`, `dm`, `finish`, `join`, `part`, `topic`, `edit`, `delete` or
`mark_read` is checked on its connection's reader thread, then handed here
with a reserved reply slot, and the reader goes on to the next request. The
writer takes everything waiting (up to MAX_BATCH), appends it to the log in
one transaction (one fsync however many changes; chatd/store/log.py checks
each against the state the batch has left, in request order), and only then
hands the batch to the sequencer, which delivers it in log order
(chatd/sequencer.py), and then to the bus for the other nodes (chatd/bus.py).
So an `ok` always means on disk, and a connection's requests take effect in
the order it sent them.

After a batch with deletes, the writer also removes what they left behind:
attachment bytes nothing refers to any more, and (on SQLite) the deleted
texts' traces in the search index and the WAL (chatd/store/sqlite.py).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque

from chatd.blobs import Blobs
from chatd.bus import Bus
from chatd.errors import ChatError, ErrorCode
from chatd.fanout import Post
from chatd.log import Batch, Deleted
from chatd.records import NewMessage
from chatd.sequencer import Sequencer
from chatd.store import Store

log = logging.getLogger(__name__)

# why: bounds one transaction and one fan-out pass, so a flood cannot delay a batch for long.
MAX_BATCH = 512
# why: the cluster tests kill a node between its commit and its publish; a batch whose
# text contains this value ends the process there. Unset outside those tests.
DIE_AFTER_COMMIT = os.environ.get("CHATD_TEST_DIE_AFTER_COMMIT", "")


class MessageWriter:
    def __init__(
        self,
        store: Store,
        sequencer: Sequencer,
        bus: Bus,
        node: str = "",
        blobs: Blobs | None = None,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._sequencer = sequencer
        self._bus = bus
        self._node = node
        # the writer waits on it; submit takes it only to wake an idle writer
        self._cond = threading.Condition(threading.Lock())
        # appended by any thread, popped by the writer
        self._queue: deque[Post] = deque()
        self._idle = False  # the writer is about to wait or waiting: a submit must notify
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="chatd-commit", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, post: Post) -> None:
        self._queue.append(post)
        if self._idle:
            with self._cond:
                self._cond.notify()

    def stop(self, timeout: float) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        queue = self._queue
        while True:
            with self._cond:
                # why: idle is set before the queue is looked at, so a submit that
                # lands after the look sees it and notifies.
                self._idle = True
                self._cond.wait_for(lambda: queue or self._stopping)
                self._idle = False
            if not queue:
                return
            self._write([queue.popleft() for _ in range(min(MAX_BATCH, len(queue)))])

    def _write(self, batch: list[Post]) -> None:
        try:
            with self._sequencer.writing:
                committed = self._commit(batch)
        except ChatError as error:  # storage_full: rolled back, nothing stored
            _answer_all(batch, error)
            return
        except Exception:
            # why: replies already filled stay as they are; the rest learn of the failure.
            log.exception("storing a batch of %d messages failed", len(batch))
            _answer_all(batch, ChatError(ErrorCode.INTERNAL, "internal server error"))
            return
        finally:
            self._release_uploads(batch)
        if committed.last >= committed.first:
            self._bus.publish(committed)
        if any(isinstance(entry, Deleted) for entry in committed.entries):
            self._erase()

    def _release_uploads(self, batch: list[Post]) -> None:
        if self._blobs is None:
            return
        for post in batch:
            change = post.change
            if isinstance(change, NewMessage) and change.attachment is not None:
                self._blobs.release(change.attachment.sha256)

    def _erase(self) -> None:
        """What this batch's deletes left: lone attachment bytes, traces in the database."""
        unreferenced = self._store.take_unreferenced()
        if self._blobs is not None:
            for sha256 in unreferenced:
                self._blobs.discard(sha256)
        try:
            self._store.erase_traces()
        except Exception:
            log.exception("erasing the traces of deleted messages failed; the next delete retries")

    def _commit(self, batch: list[Post]) -> Batch:
        log_batch, outcomes = self._store.append_log([post.change for post in batch], self._node)
        posts: dict[int, Post] = {}
        for post, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, ChatError):
                post.session.refuse_post(post.slot, post.rid, outcome)
            else:
                posts[outcome.position] = post
        if DIE_AFTER_COMMIT and DIE_AFTER_COMMIT in repr(log_batch.entries):
            os._exit(70)
        self._sequencer.committed(log_batch, posts)
        return log_batch


def _answer_all(posts: list[Post], error: ChatError) -> None:
    for post in posts:
        if post.slot.data is None:  # not answered before the failure
            post.session.refuse_post(post.slot, post.rid, error)
