"""The client's side of one chatd account: the socket, the reader thread, reconnects.

A `Session` sends requests with fresh integer ids and matches each reply to
its request by `id`; events go to a listener. When the connection drops it
reconnects with backoff, logs in again and rejoins every room, then reports
what was missed. Requests made while disconnected wait in an outbox and are
sent after the reconnect, or are failed with the client-side code `not_sent`
when the session gives up or is closed: nothing the user typed is lost
silently. A `send` or `dm` whose reply was lost with the connection is looked
up in the room's (or the conversation's) history before it is sent again, so
it is neither lost nor doubled. After a reconnect every missed message is
fetched (up to recovery.MISSED_CAP a room), direct messages from anyone
included.

Messages are paced, as irssi and weechat pace theirs: one `send`, `dm` or
`upload` is in flight at a time, and requests that must keep their place
after it (`join`, `part`, `topic`, more messages) wait in the lane behind it.
When the server says `rate_limited`, the same message goes again after
`retry_after`, so a pasted block arrives whole and in order.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import random
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from chatd.errors import ErrorCode
from client.connection import (
    IO_TIMEOUT,
    Backoff,
    Connection,
    ConnectionLost,
    Frame,
    network_error_text,
)
from client.errors import ClientErrorCode, error_code
from client.recovery import (
    MISSED_CAP,
    Missed,
    Whereabouts,
    find_stored,
    messages_in,
    newer_pages,
    newer_than,
    rooms_to_rejoin,
)

log = logging.getLogger(__name__)

# The reason a connection ended when reconnect_now() ended it.
RECONNECT_ASKED = "reconnecting as asked"
# why: a dead peer (unplugged cable, suspended laptop) sends no FIN; an idle
# ping finds it, and a ping left unanswered this long counts as a lost link.
KEEPALIVE = 30.0
PING_TIMEOUT = 20.0
# Ops that wait in the lane while disconnected; the rest fail at once.
QUEUEABLE = frozenset({"send", "dm", "join", "part", "topic"})
# Ops the server meters with --send-rate: one in flight at a time, retried when refused.
PACED = frozenset({"send", "dm", "upload"})
# Ops that keep their order behind a paced one.
ORDERED = QUEUEABLE | PACED
# why: a server's retry_after is trusted, within reason.
RETRY_AFTER_RANGE = (0.05, 300.0)
# the server's largest `limit` for history pages
HISTORY_PAGE = 500
# Login refusals that no retry can fix.
FATAL_LOGIN = frozenset({ErrorCode.INVALID_CREDENTIALS, ErrorCode.ACCOUNT_DISABLED})
DEDUPE_LIMIT = 100


class LoginFailed(Exception):
    def __init__(self, reply: Frame) -> None:
        super().__init__(reply.get("message"))
        self.reply = reply


class State(StrEnum):
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class Listener(Protocol):
    """What the session tells its owner; called on the reader thread."""

    def event(self, frame: Frame) -> None: ...
    def connection_lost(self, reason: str) -> None: ...
    def reconnecting(self, attempt: int, delay: float) -> None: ...
    def reconnected(self, missed: Missed) -> None: ...
    def gave_up(self, reason: str) -> None: ...
    def pacing(self, waiting: int) -> None: ...


@dataclass(eq=False)
class Request:
    """One request and, once it came, its reply (an error reply when it was not sent)."""

    op: str
    args: dict[str, Any]
    on_reply: Callable[[Frame], None] | None = None
    rid: int = 0
    # the newest message id known when it was sent, to find it after a lost reply
    mark: int = 0
    queued: bool = False
    reply: Frame | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float | None = None) -> Frame:
        if not self.done.wait(timeout):
            raise TimeoutError(f"no reply to {self.op} in time")
        assert self.reply is not None
        return self.reply


def not_sent(req: Request, why: str) -> Frame:
    return {"id": req.rid or None, "ok": False, "error": ClientErrorCode.NOT_SENT, "message": why}


def _retry_delay(retry_after: object) -> float:
    """Seconds to wait before a refused message goes again: the server's word, within reason."""
    low, high = RETRY_AFTER_RANGE
    if not isinstance(retry_after, int | float) or isinstance(retry_after, bool):
        return 1.0
    return min(max(float(retry_after), low), high)


class Session:
    """One logged-in account over a connection that it keeps alive and re-establishes."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        backoff: Backoff | None = None,
        give_up_after: float | None = None,
        keepalive: float = KEEPALIVE,
        ping_timeout: float = PING_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        tls: ssl.SSLContext | None = None,
        missed_cap: int = MISSED_CAP,
    ) -> None:
        self.address = address
        self.missed_cap = missed_cap
        self.tls = tls
        self.backoff = backoff or Backoff()
        self.give_up_after = give_up_after
        self.keepalive = keepalive
        self.ping_timeout = ping_timeout
        self._clock = clock
        self._ids = itertools.count(1)
        self._listener: Listener | None = None
        self._credentials: tuple[str, str] | None = None
        self.username = ""
        self.welcome: Frame = {}
        # guards everything below, and the order of writes to the wire (tier 1)
        self._lock = threading.Condition()
        self._wire: Connection | None = None
        self._state = State.CLOSED
        self._closing = False
        self._pending: dict[int, Request] = {}
        # ordered requests not sent yet: behind a paced one, or while reconnecting
        self._lane: deque[Request] = deque()
        self._paced: Request | None = None  # the paced request in flight or waiting to retry
        self._retry_at: float | None = None  # when the refused paced request goes again
        self._pacing = False  # the server has refused a message and the lane is not empty yet
        self._known = Whereabouts()
        self._early: list[Frame] = []
        self._stop = threading.Event()
        self._retry_now = threading.Event()
        self._asked = False  # reconnect_now() cut the connection
        self._reader: threading.Thread | None = None

    # -- the first connection, before the reader runs ------------------------------

    def open(self) -> Frame:
        """Connect and read the welcome; OSError or ConnectionLost when that fails."""
        wire = Connection.open(self.address, tls=self.tls)
        try:
            welcome = wire.welcome()
        except ConnectionLost:
            wire.close()
            raise
        with self._lock:
            self._wire, self._state = wire, State.CONNECTED
        self.welcome = welcome
        return welcome

    def call(self, op: str, *, timeout: float = IO_TIMEOUT, **args: Any) -> Frame:
        """A request and its reply; synchronous on the wire until `start()`."""
        if self._reader is None:
            if self._wire is None:
                raise ConnectionLost("not connected")
            frame = {"op": op, "id": next(self._ids), **args}
            try:
                return self._wire.call(frame, self._early, timeout)
            except OSError as exc:
                raise ConnectionLost(network_error_text(exc)) from None
        return self.request(op, **args).wait(timeout)

    def login(self, username: str, password: str) -> Frame:
        """Log in (before `start()`); LoginFailed carries a refusal.

        Also learns the newest direct message there is, so that a reconnect
        later fetches exactly those that came in after this login.
        """
        reply = self.call("login", username=username, password=password)
        if not reply.get("ok"):
            raise LoginFailed(reply)
        self.username = str(reply.get("username", username))
        self._credentials = (self.username, password)
        newest = self.call("dm_history", limit=1)
        with self._lock:
            self._known.seen(messages_in(newest.get("messages")))
        return reply

    def direct_since(self, since: int | None, recent: int) -> tuple[list[Frame], int | None]:
        """Direct messages newer than `since` (before `start()`), as newer_pages returns them.

        With `since` None (nothing seen yet on this machine) the `recent` newest.
        """
        if since is None:
            return messages_in(self.call("dm_history", limit=recent).get("messages")), None
        return newer_pages(
            lambda before, limit: self._page("dm_history", before, limit, self.call),
            since,
            page=HISTORY_PAGE,
            cap=self.missed_cap,
        )

    def start(self, listener: Listener) -> None:
        """Hand the connection to the reader thread; the listener gets every event."""
        self._listener = listener
        self._reader = threading.Thread(target=self._run, name="chat-reader", daemon=True)
        self._reader.start()

    # -- requests --------------------------------------------------------------------

    def request(
        self, op: str, on_reply: Callable[[Frame], None] | None = None, **args: Any
    ) -> Request:
        """Send now, or wait in the lane (pacing, reconnecting); `on_reply` runs on the reader."""
        req = Request(op, args, on_reply)
        with self._lock:
            if self._state is State.CONNECTED and not self._closing:
                if op in ORDERED and (self._lane or self._paced is not None):
                    self._lane.append(req)
                else:
                    self._send(req)
                return req
            if self._state is State.RECONNECTING and op in QUEUEABLE and not self._closing:
                req.queued = True
                self._lane.append(req)
                return req
        self._resolve(req, not_sent(req, "not connected to the server"))
        return req

    def _send(self, req: Request) -> None:
        """Write a request, holding the lane for a paced one (lock held)."""
        if req.op in PACED:
            self._paced = req
        self._transmit(req)

    def _transmit(self, req: Request) -> None:
        """Write a request; the caller holds the lock, so ids reach the wire in order."""
        req.rid = next(self._ids)
        req.mark = self._known.mark(req.args)
        self._pending[req.rid] = req
        assert self._wire is not None
        try:
            self._wire.send({"op": req.op, "id": req.rid, **req.args})
        except OSError:
            # the reader sees the closed socket and treats the request as in flight
            with contextlib.suppress(OSError):
                self._wire.sock.shutdown(socket.SHUT_RDWR)

    def _pump(self) -> None:
        """Send what waits in the lane, up to and including the next paced request (lock held)."""
        while self._lane and self._paced is None:
            self._send(self._lane.popleft())

    def _waiting(self) -> int:
        """Messages not yet accepted: the paced one and the lane (lock held)."""
        return len(self._lane) + (self._paced is not None)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no request is pending, paced or waiting in the lane; False on timeout."""
        with self._lock:
            return self._lock.wait_for(
                lambda: not self._pending and not self._lane and self._paced is None, timeout
            )

    @property
    def state(self) -> State:
        return self._state

    @property
    def waiting(self) -> int:
        """How many messages wait to be paced out (0 unless the server refused one)."""
        with self._lock:
            return self._waiting() if self._pacing else 0

    def joined_rooms(self) -> list[str]:
        with self._lock:
            return list(self._known.rooms)

    def reconnect_now(self) -> str:
        """Drop the connection and connect again at once (or retry now, if already trying)."""
        with self._lock:
            state, wire = self._state, self._wire
        if state is State.CLOSED:
            return "the session has ended; start chat again"
        if state is State.RECONNECTING:
            self._retry_now.set()
            return "trying to reconnect now"
        self._asked = True
        self._retry_now.set()
        if wire is not None:
            with contextlib.suppress(OSError):
                wire.sock.shutdown(socket.SHUT_RDWR)
        return "reconnecting"

    def close(self, timeout: float = 3.0) -> None:
        """Say quit, close the socket, stop reconnecting; waiting requests become not_sent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            quit_req = None
            if self._state is State.CONNECTED and self._wire is not None:
                quit_req = Request("quit", {})
                self._transmit(quit_req)
        self._stop.set()
        self._retry_now.set()
        if quit_req is not None and self._reader is not None:
            quit_req.done.wait(timeout)
        if self._wire is not None:
            self._wire.close()
        if self._reader is not None:
            self._reader.join(timeout + IO_TIMEOUT)
        else:
            self._finish("the session was closed")

    # -- the reader thread ---------------------------------------------------------

    def _run(self) -> None:
        early, self._early = self._early, []
        for frame in early:
            self._dispatch(frame)
        reason = "the session was closed"
        while True:
            wire = self._wire
            assert wire is not None
            reason = self._read_until_lost(wire)
            if self._asked:
                self._asked, reason = False, RECONNECT_ASKED
            wire.close()
            with self._lock:
                if self._closing:
                    break
                self._state = State.RECONNECTING
                resend, dropped = self._requeue()
            for req in dropped:
                self._resolve(req, not_sent(req, "the connection was lost before the reply"))
            self._notify("connection_lost", reason)
            if not self._reconnect(resend):
                break
        self._finish(reason)

    def _requeue(self) -> tuple[list[Request], list[Request]]:
        """After a loss: what goes again after the reconnect, in order, and what is dropped.

        Requests in flight that may be sent again go first, then the paced
        one waiting to retry, then the lane; they wait at the head of the
        lane, so wait_idle() still counts them. Lock held.
        """
        in_flight = [self._pending[rid] for rid in sorted(self._pending)]
        self._pending.clear()
        waiting = [self._paced] if self._paced is not None and self._paced not in in_flight else []
        self._paced, self._retry_at = None, None
        everything = [*in_flight, *waiting, *self._lane]
        keep = [req for req in everything if req.op in QUEUEABLE]
        for req in keep:
            req.queued = True
        self._lane = deque(keep)
        resend = [req for req in in_flight if req.op in QUEUEABLE]
        return resend, [req for req in everything if req.op not in QUEUEABLE]

    def _read_until_lost(self, wire: Connection) -> str:
        ping: Request | None = None
        heard = pinged_at = self._clock()
        while True:
            waiting = ping is not None and not ping.done.is_set()
            wake = pinged_at + self.ping_timeout if waiting else heard + self.keepalive
            retry = self._retry_at
            if retry is not None:
                wake = min(wake, retry)
            try:
                frame = wire.read(max(0.0, wake - self._clock()))
            except ConnectionLost as exc:
                return str(exc)
            if frame is not None:
                heard = self._clock()
                self._dispatch(frame)
            self._retry_if_due()
            now = self._clock()
            if waiting and now - pinged_at >= self.ping_timeout:
                return "the server stopped answering"
            if not waiting and now - heard >= self.keepalive:
                pinged_at = now
                ping = self.request("ping")

    def _retry_if_due(self) -> None:
        with self._lock:
            req = self._paced
            if req is None or self._retry_at is None or self._clock() < self._retry_at:
                return
            self._retry_at = None
            if self._state is State.CONNECTED and not self._closing:
                self._transmit(req)

    def _dispatch(self, frame: Frame) -> None:
        if "event" in frame:
            with self._lock:
                if self._known.is_repeat(frame):
                    return
                self._known.event(frame, self.username)
            self._notify("event", frame)
            return
        if "ok" not in frame:
            return
        rid = frame.get("id")
        with self._lock:
            if rid is None and self._pending:
                rid = next(iter(self._pending))  # replies come in request order
            req = self._pending.get(rid) if isinstance(rid, int) else None
        if req is None:
            log.warning("ignoring a reply to no request: id %r", rid)
            return
        pacing = self._pace(req, frame) if req is self._paced else None
        if error_code(frame) is not ErrorCode.RATE_LIMITED or pacing is None:
            self._track_reply(req, frame)
            self._resolve(req, frame)
        if pacing is not None:
            self._notify("pacing", pacing)

    def _pace(self, req: Request, reply: Frame) -> int | None:
        """The paced request's reply: a refusal is sent again later, else the lane moves on.

        Returns how many messages wait while pacing (0 once it is over), or
        None when the server has refused nothing.
        """
        with self._lock:
            self._pending.pop(req.rid, None)
            if error_code(reply) is ErrorCode.RATE_LIMITED:
                self._retry_at = self._clock() + _retry_delay(reply.get("retry_after"))
                self._pacing = True
            else:
                self._paced = None
                self._pump()
            if not self._pacing:
                return None
            waiting = self._waiting()
            self._pacing = waiting > 0
            return waiting

    def _resolve(self, req: Request, reply: Frame) -> None:
        """Record the reply, run the callback, and only then let wait_idle() return."""
        req.reply = reply
        req.done.set()
        if req.on_reply is not None:
            try:
                req.on_reply(reply)
            except Exception:
                log.exception("a reply callback failed")
        with self._lock:
            self._pending.pop(req.rid, None)
            self._lock.notify_all()

    def _notify(self, method: str, *args: Any) -> None:
        if self._listener is None:
            return
        try:
            getattr(self._listener, method)(*args)
        except Exception:
            log.exception("the listener failed in %s", method)

    def _track_reply(self, req: Request, reply: Frame) -> None:
        if reply.get("ok"):
            with self._lock:
                self._known.reply(req.op, reply)

    # -- reconnecting ----------------------------------------------------------------

    def _reconnect(self, in_flight: list[Request]) -> bool:
        deadline = None if self.give_up_after is None else self._clock() + self.give_up_after
        for attempt in itertools.count():
            delay = self.backoff.delay(attempt, random.random())
            if self._retry_now.is_set():
                delay = 0.0
            self._retry_now.clear()
            if deadline is not None and self._clock() + delay > deadline:
                self._notify("gave_up", "could not reconnect in time")
                return False
            self._notify("reconnecting", attempt + 1, delay)
            if self._wait_before_retry(delay):
                return False
            try:
                wire, events, missed, found = self._handshake(in_flight)
            except LoginFailed as exc:
                self._notify("gave_up", f"could not log in again: {exc.reply.get('message')}")
                return False
            except (OSError, ConnectionLost) as exc:
                log.info("reconnect attempt %d failed: %s", attempt + 1, exc)
                continue
            with self._lock:
                if self._closing:
                    wire.close()
                    return False
                self._wire, self._state = wire, State.CONNECTED
                lane, self._lane = self._lane, deque()
                for req in lane:
                    req.queued = False
                    if req in found:
                        self._pending[req.rid] = req  # resolved just below
                    else:
                        self._lane.append(req)
                self._pump()
            self._notify("reconnected", missed)
            for req, message in found.items():
                self._resolve(req, {"id": req.rid, "ok": True, "message": message})
            for event in events:
                self._dispatch(event)
            return True
        raise AssertionError("unreachable")

    def _wait_before_retry(self, delay: float) -> bool:
        """Sleep `delay`, cut short by reconnect_now() or close(); True when closing."""
        self._retry_now.wait(delay)
        self._retry_now.clear()
        return self._stop.is_set()

    def _handshake(
        self, in_flight: list[Request]
    ) -> tuple[Connection, list[Frame], Missed, dict[Request, Frame]]:
        """Connect, log in, rejoin; returns what was missed and which lost sends were stored."""
        assert self._credentials is not None
        wire = Connection.open(self.address, tls=self.tls)
        events: list[Frame] = []

        def call(op: str, **args: Any) -> Frame:
            return wire.call(self._frame(op, **args), events)

        try:
            wire.welcome()
            user, password = self._credentials
            reply = call("login", username=user, password=password)
            if not reply.get("ok"):
                if error_code(reply) in FATAL_LOGIN:
                    raise LoginFailed(reply)
                raise ConnectionLost(str(reply.get("message")))
            with self._lock:
                known = dict(self._known.rooms)
                rooms = rooms_to_rejoin(list(known), reply.get("rooms"))
            histories: dict[str, list[Frame]] = {}
            missed = Missed()
            for room in rooms:
                joined = call("join", room=room)
                if not joined.get("ok"):
                    continue
                history = messages_in(joined.get("history"))
                histories[room] = history
                since = self._known.last_id.get(room, 0)
                if room not in known:
                    missed.rooms[room] = newer_than(history, since)
                    continue
                missed.rooms[room], gap = newer_pages(
                    functools.partial(self._page, "history", call=call, room=room),
                    since,
                    page=HISTORY_PAGE,
                    newest=history,
                    newest_page=self._history_size(),
                    cap=self.missed_cap,
                )
                if gap is not None:
                    missed.gaps[room] = (since, gap)
            missed.direct, _gap = newer_pages(
                lambda before, limit: self._page("dm_history", before, limit, call),
                self._known.direct_id,
                page=HISTORY_PAGE,
                cap=self.missed_cap,
            )
            found = self._find_lost_sends(call, in_flight, missed)
            mine = {id(message) for message in found.values()}
            missed.rooms = {
                room: [m for m in messages if id(m) not in mine]
                for room, messages in missed.rooms.items()
            }
            missed.direct = [m for m in missed.direct if id(m) not in mine]
            with self._lock:
                for room, history in histories.items():
                    self._known.joined(room, history)
                for messages in missed.rooms.values():
                    self._known.seen(messages)
                self._known.seen(missed.direct)
            return wire, events, missed, found
        except BaseException:
            wire.close()
            raise

    def _history_size(self) -> int | None:
        size = self.welcome.get("history_size")
        return size if isinstance(size, int) and not isinstance(size, bool) else None

    @staticmethod
    def _page(
        op: str, before: int | None, limit: int, call: Callable[..., Frame], **args: Any
    ) -> list[Frame]:
        """One page of `history` or `dm_history`, newest last; ConnectionLost if refused."""
        if before is not None:
            args["before"] = before
        reply = call(op, limit=limit, **args)
        if not reply.get("ok"):
            raise ConnectionLost(f"could not catch up: {reply.get('message')}")
        return messages_in(reply.get("messages"))

    def _find_lost_sends(
        self, call: Callable[..., Frame], in_flight: list[Request], missed: Missed
    ) -> dict[Request, Frame]:
        """The in-flight sends and dms that the server stored although their reply was lost."""
        found: dict[Request, Frame] = {}
        for req in in_flight:
            if req.op == "send":
                candidates = missed.rooms.get(str(req.args.get("room")), [])
            elif req.op == "dm":
                candidates = missed.direct
            else:
                continue
            text = str(req.args.get("text", ""))
            stored = find_stored(
                candidates, me=self.username, text=text, after=req.mark, taken=found.values()
            )
            if stored is not None:
                found[req] = stored
        return found

    def _frame(self, op: str, **args: Any) -> Frame:
        return {"op": op, "id": next(self._ids), **args}

    def _finish(self, reason: str) -> None:
        """The session is over: fail whatever still waits, so every caller hears back."""
        with self._lock:
            self._state = State.CLOSED
            left = list(self._pending.values()) + list(self._lane)
            if self._paced is not None and self._paced not in left:
                left.append(self._paced)
            self._pending.clear()
            self._lane.clear()
            self._paced = None
        for req in left:
            if not req.done.is_set():
                self._resolve(req, not_sent(req, reason))
        with self._lock:
            self._lock.notify_all()
