"""The one fan-out: committed messages and room events, to every connection that should see them.

A committed batch becomes one Outgoing per message (encoded once per
dialect, whoever asks first) and one Bundle per room: every member's
connection of a room gets the same bundle, so the cost grows with members
plus messages, not their product. A connection that sent some of the
batch gets the batch's events and its own replies merged in id order
instead, so it too sees its rooms' ids ascending.

A room's share of a batch is delivered under the room's order lock (see
chatd/hub.py), which join, part and topic also take.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from chatd.errors import ChatError
from chatd.events import AnyEvent
from chatd.hub import Hub, Peer
from chatd.outgoing import Bundle, Outgoing
from chatd.records import Message, NewMessage
from chatd.requests import RequestId
from chatd.sendqueue import ReplySlot

# A sender's share of a batch: an event, or (its reply's slot, the request id, its message).
InOrder = Outgoing | tuple[ReplySlot, RequestId, Outgoing]


class Poster(Peer, Protocol):
    """A connection that hands messages to the writer and gets its replies from the fan-out."""

    def deliver_in_order(self, items: Sequence[InOrder]) -> None: ...

    def refuse_post(self, slot: ReplySlot, rid: RequestId, error: ChatError) -> None: ...


@dataclass(slots=True)
class Post:
    """A message waiting for its batch, with where its reply goes."""

    session: Poster
    rid: RequestId
    slot: ReplySlot
    message: NewMessage


def deliver_batch(hub: Hub, posts: Sequence[Post], messages: Sequence[Message]) -> None:
    """Deliver a committed batch, in id order: rooms under their order locks, then DMs."""
    by_room: dict[str, list[tuple[Post, Outgoing]]] = {}
    direct: list[tuple[Post, Outgoing]] = []
    for post, message in zip(posts, messages, strict=True):
        item = Outgoing(message)
        if message.room is None:
            direct.append((post, item))
        else:
            by_room.setdefault(message.room, []).append((post, item))
    for room, entries in by_room.items():
        with hub.order_lock(room):
            _deliver_room(hub, room, entries)
    if direct:
        _deliver_direct(hub, direct)


def _deliver_room(hub: Hub, room: str, entries: list[tuple[Post, Outgoing]]) -> None:
    items = [item for _post, item in entries]
    hub.delivered(room, items)
    bundle = Bundle(items)
    posters = {id(post.session): post.session for post, _item in entries}
    members = hub.room_peers(room)
    for peer in members:
        if id(peer) in posters:
            posters[id(peer)].deliver_in_order(_merged(entries, peer))
        else:
            peer.deliver(bundle)
    reached = {id(peer) for peer in members}
    for key, poster in posters.items():
        if key not in reached:  # left the room meanwhile (parted on another connection)
            own = [_reply(post, item) for post, item in entries if post.session is poster]
            poster.deliver_in_order(own)


def _deliver_direct(hub: Hub, entries: list[tuple[Post, Outgoing]]) -> None:
    """Each direct message to the recipient's and the sender's connections, in id order."""
    posters: dict[int, Poster] = {id(post.session): post.session for post, _item in entries}
    peers: dict[int, Peer] = dict(posters)
    shares: dict[int, list[InOrder]] = {}
    for post, item in entries:
        shares.setdefault(id(post.session), []).append(_reply(post, item))
        new = post.message
        assert new.recipient is not None
        for peer in hub.peers_of_users((new.recipient.username, new.author.username)):
            if peer is not post.session:
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


def _merged(entries: list[tuple[Post, Outgoing]], peer: Peer) -> list[InOrder]:
    return [_reply(post, item) if post.session is peer else item for post, item in entries]


def _reply(post: Post, item: Outgoing) -> InOrder:
    return (post.slot, post.rid, item)


def to_peers(peers: Iterable[Peer], event: AnyEvent, *, exclude: Peer | None = None) -> None:
    """One event to each of `peers` but `exclude`, encoded once per dialect."""
    item = Outgoing(event)
    for peer in peers:
        if peer is not exclude:
            peer.deliver(item)


def to_room(hub: Hub, room: str, event: AnyEvent, *, exclude: Peer | None = None) -> None:
    """To every connection of every member of `room` but `exclude` (order lock held)."""
    to_peers(hub.room_peers(room), event, exclude=exclude)


def to_room_and_user(hub: Hub, room: str, user: str, event: AnyEvent, *, exclude: Peer) -> None:
    """A membership change: the room's other members and the user's own other connections."""
    peers = {id(peer): peer for peer in hub.room_peers(room)}
    peers.update((id(peer), peer) for peer in hub.peers_of(user))
    to_peers(peers.values(), event, exclude=exclude)
