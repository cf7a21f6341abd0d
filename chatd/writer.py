"""Group commit: one thread stores messages in batches and hands each batch to the fan-out.

A `send`, `dm` or `finish` is checked on its connection's reader thread, then
handed here with a reserved reply slot, and the reader goes on to the next
request. The writer takes everything waiting (up to MAX_BATCH), commits it in
one transaction (one fsync however many messages), and only then delivers
(chatd/fanout.py): every message is built and encoded once, and each
sender's replies are filled in request order. So an `ok` always means on
disk, and ids grow in commit order, because there is one writer.

The queue also takes plain callables, run between batches on this thread:
waiting for everything submitted so far (`wait_until_written`), and checks
that must not race with a batch committed but not yet fanned out.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from chatd.errors import ChatError, ErrorCode
from chatd.fanout import Post, deliver_batch
from chatd.hub import Hub
from chatd.store import Store

log = logging.getLogger(__name__)

# why: bounds one transaction and one fan-out pass, so a flood cannot delay a batch for long.
MAX_BATCH = 512
# why: a request waiting for earlier posts gives up rather than hang if the writer is gone.
WAIT_LIMIT = 30.0


class MessageWriter:
    def __init__(self, store: Store, hub: Hub) -> None:
        self._store = store
        self._hub = hub
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

    def wait_until_written(self) -> None:
        """Return once every post submitted before this call is answered."""
        written = threading.Event()
        self.submit(written.set)
        written.wait(WAIT_LIMIT)

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
        accepted: list[Post] = []
        for post in batch:
            room = post.message.room
            if room is None or self._hub.is_member(room.name, post.message.author.username):
                accepted.append(post)
            else:
                _answer_all(
                    [post], ChatError(ErrorCode.NOT_IN_ROOM, f"you are not in #{room.name}")
                )
        if not accepted:
            return
        news = [post.message for post in accepted]
        stored = self._store.append_batch(news)
        self._hub.committed(stored.ids[0], stored.ids[-1])
        deliver_batch(self._hub, accepted, stored.messages(news))


def _answer_all(posts: list[Post], error: ChatError) -> None:
    for post in posts:
        if post.slot.data is None:  # not answered before the failure
            post.session.refuse_post(post.slot, post.rid, error)
