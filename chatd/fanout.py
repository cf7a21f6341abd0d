"""The one fan-out: the log's entries, in position order, to every connection that should see them.

A run of messages becomes one Outgoing per message (encoded once per
dialect, whoever asks first) and one Bundle per room: every member's
connection of a room gets the same bundle, so the cost grows with members
plus messages, not their product. A connection that sent some of the run
gets the run's events and its own replies merged in id order instead, so
it too sees its rooms' ids ascending. A join, part, topic change, edit,
delete or read marker is applied to the hub at its place, answers the
connection that asked for it, and tells the others. A message also moves its
author's read marker: the author's other connections hear of it (`read`).

Each room's share is delivered under the room's order lock (see
chatd/hub.py), which a re-join also takes to read its history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from chatd.errors import ChatError
from chatd.events import (
    AnyEvent,
    Joined,
    MessageDeleted,
    MessageEdit,
    Parted,
    ReadMarker,
    TopicChanged,
)
from chatd.hub import Hub, Peer
from chatd.log import Deleted, Edited, Entered, Left, Logged, Marked, Posted, Retitled
from chatd.outgoing import Bundle, Outgoing
from chatd.records import NewChange, RoomRecord, deleted_message
from chatd.replies import (
    DeleteReply,
    JoinReply,
    MessageReply,
    PartReply,
    ReadReply,
    Reply,
    TopicReply,
)
from chatd.requests import RequestId
from chatd.sendqueue import ReplySlot
from chatd.store import Store

# A sender's share of a batch: an event, or (its reply's slot, the request id, its message).
InOrder = Outgoing | tuple[ReplySlot, RequestId, Outgoing]


class Poster(Peer, Protocol):
    """A connection that hands changes to the writer and gets its replies from the fan-out."""

    def deliver_in_order(self, items: Sequence[InOrder]) -> None: ...

    def answer_post(self, slot: ReplySlot, rid: RequestId, result: Reply) -> None: ...

    def refuse_post(self, slot: ReplySlot, rid: RequestId, error: ChatError) -> None: ...


@dataclass(slots=True)
class Post:
    """A change waiting for its batch, with where its reply goes."""

    session: Poster
    rid: RequestId
    slot: ReplySlot
    change: NewChange


class Fanout:
    """Delivers the log's entries; the sequencer calls it in position order, one batch at a time."""

    def __init__(self, hub: Hub, store: Store, history_size: int) -> None:
        self.hub = hub
        self._store = store
        self._history_size = history_size

    def deliver(self, entries: Sequence[Logged], posts: Mapping[int, Post]) -> None:
        """A committed batch's entries; `posts` are this server's own, by position."""
        run: list[tuple[Posted, Post | None]] = []
        for entry in entries:
            if isinstance(entry, Posted):
                run.append((entry, posts.get(entry.position)))
                continue
            if run:
                self._messages(run)
                run = []
            post = posts.get(entry.position)
            if post is None and isinstance(entry, Marked):
                # why: a marker without a request of its own is a first join's, which took
                # the position before it: the joining connection is not told of it
                post = _silent(posts.get(entry.position - 1))
            self._change(entry, post)
        if run:
            self._messages(run)

    # messages

    def _messages(self, run: list[tuple[Posted, Post | None]]) -> None:
        self.hub.committed(run[0][0].message.id, run[-1][0].message.id)
        by_room: dict[str, list[tuple[int, Outgoing, Post | None]]] = {}
        direct: list[tuple[Posted, Outgoing, Post | None]] = []
        for entry, post in run:
            item = Outgoing(entry.message)
            if entry.message.room is None:
                direct.append((entry, item, post))
            else:
                by_room.setdefault(entry.message.room, []).append((entry.position, item, post))
        for room, share in by_room.items():
            with self.hub.order_lock(room):
                self._room_share(room, share)
        if direct:
            self._direct(direct)
        self._authors_read(run)

    def _authors_read(self, run: list[tuple[Posted, Post | None]]) -> None:
        """Each author's newest message of the run moved their marker: tell their other
        connections."""
        newest: dict[tuple[str, str | None, str | None], tuple[int, Post | None]] = {}
        for entry, post in run:
            message = entry.message
            to = None if message.room is not None else str(message.to)
            newest[(message.user, message.room, to)] = (message.id, post)
        for (user, room, to), (message_id, post) in newest.items():
            peers = self.hub.peers_of(user)
            if len(peers) > (post is not None):
                to_peers(peers, _read_event(message_id, room, to), exclude=_origin(post))

    def _room_share(self, room: str, share: list[tuple[int, Outgoing, Post | None]]) -> None:
        items = [item for _position, item, _post in share]
        self.hub.delivered(room, share[-1][0], items)
        bundle = Bundle(items)
        posters = {id(post.session): post.session for _p, _i, post in share if post is not None}
        members = self.hub.room_peers(room)
        for peer in members:
            if id(peer) in posters:
                posters[id(peer)].deliver_in_order(
                    [
                        _reply(post, item) if _is_from(post, peer) else item
                        for _p, item, post in share
                    ]
                )
            else:
                peer.deliver(bundle)
        reached = {id(peer) for peer in members}
        for key, poster in posters.items():
            if key not in reached:  # left the room meanwhile (parted on another connection)
                poster.deliver_in_order(
                    [_reply(post, item) for _p, item, post in share if _is_from(post, poster)]
                )

    def _direct(self, entries: list[tuple[Posted, Outgoing, Post | None]]) -> None:
        """Each direct message to the recipient's and the sender's connections, in id order."""
        posters: dict[int, Poster] = {
            id(post.session): post.session for _e, _i, post in entries if post is not None
        }
        peers: dict[int, Peer] = dict(posters)
        shares: dict[int, list[InOrder]] = {}
        for entry, item, post in entries:
            if post is not None:
                shares.setdefault(id(post.session), []).append(_reply(post, item))
            message = entry.message
            assert isinstance(message.to, str)
            for peer in self.hub.peers_of_users((message.to, message.user)):
                if post is None or peer is not post.session:
                    peers[id(peer)] = peer
                    shares.setdefault(id(peer), []).append(item)
        for key, share in shares.items():
            poster = posters.get(key)
            if poster is not None:
                poster.deliver_in_order(share)
                continue
            for event in share:
                assert isinstance(event, Outgoing)
                peers[key].deliver(event)

    # room changes

    def _change(self, entry: Logged, post: Post | None) -> None:
        if isinstance(entry, Edited):
            self._edited(entry, post)
        elif isinstance(entry, Deleted):
            self._deleted(entry, post)
        elif isinstance(entry, Marked):
            self._marked(entry, post)
        else:
            self._room_change(entry, post)

    def _room_change(self, entry: Logged, post: Post | None) -> None:
        hub = self.hub
        if isinstance(entry, Entered):
            room = entry.room
            with hub.order_lock(room):
                record = RoomRecord(entry.room_id, room, entry.topic)
                hub.add_member(record, entry.user)
                hub.delivered(room, entry.position, [])
                if post is not None:
                    post.session.answer_post(post.slot, post.rid, self._join_reply(record))
                if entry.new:
                    event: AnyEvent = Joined(room, entry.user)
                    to_room_and_user(hub, room, entry.user, event, exclude=_origin(post))
        elif isinstance(entry, Left):
            with hub.order_lock(entry.room):
                hub.remove_member(entry.room, entry.user)
                if post is not None:
                    post.session.answer_post(post.slot, post.rid, PartReply(entry.room))
                event = Parted(entry.room, entry.user)
                to_room_and_user(hub, entry.room, entry.user, event, exclude=_origin(post))
        elif isinstance(entry, Retitled):
            with hub.order_lock(entry.room):
                hub.set_topic(entry.room, entry.topic)
                if post is not None:
                    reply = TopicReply(entry.room, entry.topic)
                    post.session.answer_post(post.slot, post.rid, reply)
                event = TopicChanged(entry.room, entry.topic, entry.user)
                to_room(hub, entry.room, event, exclude=_origin(post))

    # conversation state

    def _edited(self, entry: Edited, post: Post | None) -> None:
        """An edit reaches whoever a new message of its conversation would, but its editor."""
        message = entry.message
        event = MessageEdit(message)
        if message.room is None:
            _answer(post, MessageReply(message))
            to_peers(self._parties(message.user, message.to), event, exclude=_origin(post))
            return
        with self.hub.order_lock(message.room):
            self.hub.revise(message.room, message.id, lambda _kept: message)
            _answer(post, MessageReply(message))
            to_room(self.hub, message.room, event, exclude=_origin(post))

    def _deleted(self, entry: Deleted, post: Post | None) -> None:
        """A delete goes where an edit would; in a direct conversation each side sees `with`
        the other party."""
        if entry.room is None:
            _answer(post, DeleteReply(entry.id))
            to = entry.to or entry.user
            origin = _origin(post)
            to_peers(
                self.hub.peers_of(entry.user), MessageDeleted(entry.id, with_=to), exclude=origin
            )
            if to.lower() != entry.user.lower():
                to_peers(self.hub.peers_of(to), MessageDeleted(entry.id, with_=entry.user))
            return
        with self.hub.order_lock(entry.room):
            self.hub.revise(entry.room, entry.id, deleted_message)
            _answer(post, DeleteReply(entry.id))
            to_room(
                self.hub, entry.room, MessageDeleted(entry.id, entry.room), exclude=_origin(post)
            )

    def _marked(self, entry: Marked, post: Post | None) -> None:
        """A read marker: the reply, and when it moved, the user's other connections."""
        event = _read_event(entry.last_read, entry.room, entry.peer)
        _answer(post, ReadReply(event.last_read, event.room, event.with_))
        if entry.moved:
            to_peers(self.hub.peers_of(entry.user), event, exclude=_origin(post))

    def _parties(self, user: str, to: object) -> list[Peer]:
        """Every connection of a direct message's two parties."""
        return self.hub.peers_of_users((user, str(to)))

    def _join_reply(self, record: RoomRecord) -> JoinReply:
        """A joiner's reply, at its place in the log: everything before it is history."""
        members, online = self.hub.members(record.name)
        current = self.hub.room(record.name) or record
        return JoinReply(record.name, current.topic, members, online, self.history(current))

    def history(self, room: RoomRecord) -> list[Outgoing]:
        """The room's last messages as its members were sent them (order lock held)."""
        hub = self.hub
        kept = hub.recent(room.name)
        if kept is not None:
            return kept
        through = hub.visible_upto(room.name)
        stored = self._store.room_history(room, self._history_size, through)
        history = [Outgoing(message) for message in stored]
        hub.keep_recent(room.name, history)
        return history


# the slot of a Post that only says whom to leave out of an event: it has no reply to give
_NO_SLOT = ReplySlot()


def _silent(post: Post | None) -> Post | None:
    return None if post is None else Post(post.session, None, _NO_SLOT, post.change)


def _answer(post: Post | None, result: Reply) -> None:
    if post is not None and post.slot is not _NO_SLOT:
        post.session.answer_post(post.slot, post.rid, result)


def _read_event(last_read: int, room: str | None, peer: str | None) -> ReadMarker:
    if room is not None:
        return ReadMarker(last_read, room=room)
    assert peer is not None
    return ReadMarker(last_read, with_=peer)


def _reply(post: Post | None, item: Outgoing) -> InOrder:
    assert post is not None
    return (post.slot, post.rid, item)


def _is_from(post: Post | None, peer: Peer) -> bool:
    return post is not None and post.session is peer


def _origin(post: Post | None) -> Peer | None:
    return None if post is None else post.session


def to_peers(peers: Iterable[Peer], event: AnyEvent, *, exclude: Peer | None = None) -> None:
    """One event to each of `peers` but `exclude`, encoded once per dialect."""
    item = Outgoing(event)
    for peer in peers:
        if peer is not exclude:
            peer.deliver(item)


def to_room(hub: Hub, room: str, event: AnyEvent, *, exclude: Peer | None = None) -> None:
    """To every connection of every member of `room` but `exclude` (order lock held)."""
    to_peers(hub.room_peers(room), event, exclude=exclude)


def to_room_and_user(
    hub: Hub, room: str, user: str, event: AnyEvent, *, exclude: Peer | None
) -> None:
    """A membership change: the room's members and the user's own connections, but `exclude`."""
    peers = {id(peer): peer for peer in hub.room_peers(room)}
    peers.update((id(peer), peer) for peer in hub.peers_of(user))
    to_peers(peers.values(), event, exclude=exclude)
