"""Group commit: one thread appends changes to the log in batches and hands each on.

A `send`, `dm`, `finish`, `join`, `part` or `topic` is checked on its
connection's reader thread, then handed here with a reserved reply slot, and
the reader goes on to the next request. The writer takes everything waiting
(up to MAX_BATCH), appends it to the log in one transaction (one fsync
however many changes; chatd/store/log.py checks each against the state the
batch has left, in request order), and only then hands the batch to the
sequencer, which delivers it in log order (chatd/sequencer.py). So an `ok`
always means on disk, and a connection's requests take effect in the order
it sent them.

The queue also takes plain callables, run between batches on this thread,
for checks that must not race with a batch committed but not yet delivered.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from chatd.errors import ChatError, ErrorCode
from chatd.fanout import Post
from chatd.hub import Hub
from chatd.log import Posted
from chatd.sequencer import Sequencer
from chatd.store import Store

log = logging.getLogger(__name__)

# why: bounds one transaction and one fan-out pass, so a flood cannot delay a batch for long.
MAX_BATCH = 512


class MessageWriter:
    def __init__(self, store: Store, hub: Hub, sequencer: Sequencer, node: str = "") -> None:
        self._store = store
        self._hub = hub
        self._sequencer = sequencer
        self._node = node
        # the writer waits on it; submit takes it only to wake an idle writer
        self._cond = threading.Condition(threading.Lock())
        # appended by any thread, popped by the writer
        self._queue: deque[Post | Callable[[], None]] = deque()
        self._idle = False  # the writer is about to wait or waiting: a submit must notify
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="chatd-commit", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, item: Post | Callable[[], None]) -> None:
        self._queue.append(item)
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
            taken = [queue.popleft() for _ in range(min(MAX_BATCH, len(queue)))]
            batch = [item for item in taken if isinstance(item, Post)]
            if batch:
                self._write(batch)
            for item in taken:
                if not isinstance(item, Post):
                    try:
                        item()
                    except Exception:
                        log.exception("a task between batches failed")

    def _write(self, batch: list[Post]) -> None:
        try:
            self._commit(batch)
        except ChatError as error:  # storage_full: rolled back, nothing stored
            _answer_all(batch, error)
        except Exception:
            # why: replies already filled stay as they are; the rest learn of the failure.
            log.exception("storing a batch of %d messages failed", len(batch))
            _answer_all(batch, ChatError(ErrorCode.INTERNAL, "internal server error"))

    def _commit(self, batch: list[Post]) -> None:
        log_batch, outcomes = self._store.append_log([post.change for post in batch], self._node)
        posts: dict[int, Post] = {}
        for post, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, ChatError):
                post.session.refuse_post(post.slot, post.rid, outcome)
            else:
                posts[outcome.position] = post
        ids = [entry.message.id for entry in log_batch.entries if isinstance(entry, Posted)]
        if ids:
            self._hub.committed(ids[0], ids[-1])
        self._sequencer.committed(log_batch, posts)


def _answer_all(posts: list[Post], error: ChatError) -> None:
    for post in posts:
        if post.slot.data is None:  # not answered before the failure
            post.session.refuse_post(post.slot, post.rid, error)
