"""Group commit: one thread stores messages in batches and fans each batch out in id order.

A `send`, `dm` or `finish` is checked on its connection's reader thread, then
handed here with a reserved reply slot, and the reader goes on to the next
request. The writer takes everything waiting (up to MAX_BATCH), commits it in
one transaction (one fsync however many messages), and only then delivers:
each message is encoded once, each recipient gets the whole batch's events
in one buffer, and each sender's replies are filled in request order. So an
`ok` always means on disk, and every member sees a room's messages in id
order, because there is one writer.

The writer holds the hub's delivery lock from commit to fan-out; `join`,
`part` and `topic` take the same lock, so a join's history and the events
that follow it meet exactly.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

from chatd.errors import ChatError, ErrorCode
from chatd.hub import Hub, Peer
from chatd.names import format_ts
from chatd.protocol import (
    RequestId,
    encode,
    error_reply,
    message_body,
    message_frames,
    room_message_body,
)
from chatd.records import NewMessage, StoredBatch
from chatd.sendqueue import ReplySlot
from chatd.session import Session
from chatd.store import Store

log = logging.getLogger(__name__)

# why: bounds one transaction and one fan-out pass, so a flood cannot delay a batch for long.
MAX_BATCH = 512
# why: a request waiting for earlier posts gives up rather than hang if the writer is gone.
WAIT_LIMIT = 30.0


def _bodies(messages: list[NewMessage], stored: StoredBatch) -> list[bytes]:
    """Each committed message's message_body; room messages without a file the fast way."""
    ts = format_ts(stored.ts_ms)
    return [
        room_message_body(message_id, new.room.name, new.author.username, new.text, ts)
        if new.is_room_text
        else message_body(new.stored_as(message_id, stored.ts_ms, file).wire())
        for new, message_id, file in zip(messages, stored.ids, stored.files, strict=True)
    ]


@dataclass(slots=True)
class Post:
    """A message waiting for its batch, with where its reply goes."""

    session: Session
    rid: RequestId
    slot: ReplySlot
    message: NewMessage


class MessageWriter:
    def __init__(self, store: Store, hub: Hub) -> None:
        self._store = store
        self._hub = hub
        # the writer waits on it; submit takes it only to wake an idle writer
        self._cond = threading.Condition(threading.Lock())
        # appended by any thread, popped by the writer; an Event marks a point to wait for
        self._queue: deque[Post | threading.Event] = deque()
        self._idle = False  # the writer is about to wait or waiting: a submit must notify
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="chatd-commit", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, post: Post | threading.Event) -> None:
        self._queue.append(post)
        if self._idle:
            with self._cond:
                self._cond.notify()

    def wait_until_written(self) -> None:
        """Return once every post submitted before this call is answered."""
        written = threading.Event()
        self.submit(written)
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
                if isinstance(item, threading.Event):
                    item.set()

    def _write(self, batch: list[Post]) -> None:
        try:
            self._commit(batch)
        except ChatError as error:  # storage_full: rolled back, nothing stored
            self._answer_all(batch, error)
        except Exception:
            # why: replies already filled stay as they are; the rest learn of the failure.
            log.exception("storing a batch of %d messages failed", len(batch))
            self._answer_all(batch, ChatError(ErrorCode.INTERNAL, "internal server error"))

    def _commit(self, batch: list[Post]) -> None:
        with self._hub.delivery_lock:
            accepted: list[Post] = []
            for post in batch:
                room = post.message.room
                if room is None or self._hub.is_member(room.name, post.message.author.username):
                    accepted.append(post)
                else:
                    self._answer_all(
                        [post], ChatError(ErrorCode.NOT_IN_ROOM, f"you are not in #{room.name}")
                    )
            if accepted:
                messages = [post.message for post in accepted]
                stored = self._store.append_batch(messages)
                bodies = _bodies(messages, stored)
                rooms = [None if new.room is None else new.room.name for new in messages]
                self._hub.stored(zip(stored.ids, rooms, bodies, strict=True))
                self._fan_out(accepted, stored.ids, bodies)

    def _fan_out(self, posts: list[Post], ids: list[int], bodies: list[bytes]) -> None:
        """Deliver a committed batch: per room one buffer for every member's connections.

        A room's events are joined once and the same bytes go to each of its
        connections, so the cost grows with members plus messages, not their
        product. A connection that sent some of the batch gets the batch's
        events and its own replies merged in id order instead.
        """
        outgoing: dict[int, tuple[Peer, list[bytes]]] = {}
        senders: dict[int, tuple[Session, list[tuple[int, bytes | tuple[ReplySlot, bytes]]]]] = {}
        by_room: dict[str, list[tuple[int, Session, bytes]]] = {}
        dms: list[tuple[int, Post, bytes]] = []
        for post, message_id, body in zip(posts, ids, bodies, strict=True):
            new = post.message
            event, reply = message_frames(body, "message" if new.room else "dm", post.rid)
            own = senders.setdefault(id(post.session), (post.session, []))[1]
            own.append((message_id, (post.slot, reply)))
            if new.room is not None:
                by_room.setdefault(new.room.name, []).append((message_id, post.session, event))
            else:
                dms.append((message_id, post, event))
        for message_id, post, event in dms:
            new = post.message
            assert new.recipient is not None
            for peer in self._hub.peers_of_users((new.recipient.username, new.author.username)):
                if peer is post.session:
                    continue
                if id(peer) in senders:
                    senders[id(peer)][1].append((message_id, event))
                else:
                    outgoing.setdefault(id(peer), (peer, []))[1].append(event)
        # why: with one room and no DMs each peer gets one buffer anyway; skip the merge.
        direct = len(by_room) == 1 and not outgoing
        for room, events in by_room.items():
            everything = b"".join(event for _id, _sender, event in events)
            for peer in self._hub.room_peers(room):
                if id(peer) in senders:
                    senders[id(peer)][1].extend(
                        (message_id, event)
                        for message_id, sender, event in events
                        if sender is not peer
                    )
                elif direct:
                    peer.deliver(everything)
                else:
                    outgoing.setdefault(id(peer), (peer, []))[1].append(everything)
        for peer, parts in outgoing.values():
            peer.deliver(parts[0] if len(parts) == 1 else b"".join(parts))
        for session, items in senders.values():
            items.sort(key=_by_id)
            session.deliver_in_order([item for _id, item in items])
            session.posts_answered += sum(1 for _id, item in items if isinstance(item, tuple))

    @staticmethod
    def _answer_all(posts: list[Post], error: ChatError) -> None:
        for post in posts:
            if post.slot.data is not None:
                continue  # answered before the failure
            post.session.fill_replies([(post.slot, encode(error_reply(post.rid, error)))])
            post.session.posts_answered += 1


def _by_id(item: tuple[int, object]) -> int:
    return item[0]
