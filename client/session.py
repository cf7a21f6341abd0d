"""The client's side of one chatd account: the socket, the reader thread, reconnects.

A `Session` sends requests with fresh integer ids and matches each reply to
its request by `id`; events go to a listener. When the connection drops it
reconnects with backoff, logs in again and rejoins every room, then reports
what was missed. Requests made while disconnected wait in an outbox and are
sent after the reconnect, or are failed with the client-side code `not_sent`
when the session gives up or is closed: nothing the user typed is lost
silently. A `send` or `dm` whose reply was lost with the connection is looked
up in the room's (or the conversation's) history before it is sent again, so
it is neither lost nor doubled.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from client.connection import (
    IO_TIMEOUT,
    Backoff,
    Connection,
    ConnectionLost,
    Frame,
    network_error_text,
)
from client.recovery import (
    Whereabouts,
    find_stored,
    messages_in,
    newer_than,
    rooms_to_rejoin,
)

log = logging.getLogger(__name__)

# A client-side error code, never on the wire: the request did not reach the server.
NOT_SENT = "not_sent"
# why: a dead peer (unplugged cable, suspended laptop) sends no FIN; an idle
# ping finds it, and a ping left unanswered this long counts as a lost link.
KEEPALIVE = 30.0
PING_TIMEOUT = 20.0
# Ops that wait in the outbox while disconnected; the rest fail at once.
QUEUEABLE = frozenset({"send", "dm", "join", "part", "topic"})
# Login refusals that no retry can fix.
FATAL_LOGIN = frozenset({"invalid_credentials", "account_disabled"})
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
    def reconnected(self, missed: dict[str, list[Frame]]) -> None: ...
    def gave_up(self, reason: str) -> None: ...


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
    return {"id": req.rid or None, "ok": False, "error": NOT_SENT, "message": why}


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
    ) -> None:
        self.address = address
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
        self._outbox: list[Request] = []
        self._known = Whereabouts()
        self._early: list[Frame] = []
        self._stop = threading.Event()
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
        """Log in (before `start()`); LoginFailed carries a refusal."""
        reply = self.call("login", username=username, password=password)
        if not reply.get("ok"):
            raise LoginFailed(reply)
        self.username = str(reply.get("username", username))
        self._credentials = (self.username, password)
        return reply

    def start(self, listener: Listener) -> None:
        """Hand the connection to the reader thread; the listener gets every event."""
        self._listener = listener
        self._reader = threading.Thread(target=self._run, name="chat-reader", daemon=True)
        self._reader.start()

    # -- requests --------------------------------------------------------------------

    def request(
        self, op: str, on_reply: Callable[[Frame], None] | None = None, **args: Any
    ) -> Request:
        """Send now, or queue while reconnecting; `on_reply` runs on the reader thread."""
        req = Request(op, args, on_reply)
        with self._lock:
            if self._state is State.CONNECTED and not self._closing:
                self._transmit(req)
                return req
            if self._state is State.RECONNECTING and op in QUEUEABLE and not self._closing:
                req.queued = True
                self._outbox.append(req)
                return req
        self._resolve(req, not_sent(req, "not connected to the server"))
        return req

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

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no request is pending or queued; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending and not self._outbox, timeout)

    @property
    def state(self) -> State:
        return self._state

    def joined_rooms(self) -> list[str]:
        with self._lock:
            return list(self._known.rooms)

    def close(self, timeout: float = 3.0) -> None:
        """Say quit, close the socket, stop reconnecting; queued requests become not_sent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            quit_req = None
            if self._state is State.CONNECTED and self._wire is not None:
                quit_req = Request("quit", {})
                self._transmit(quit_req)
        self._stop.set()
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
            wire.close()
            with self._lock:
                if self._closing:
                    break
                self._state = State.RECONNECTING
                in_flight = list(self._pending.values())
                self._pending.clear()
                # why: they wait at the head of the outbox, so wait_idle() still counts them
                resend = [req for req in in_flight if req.op in QUEUEABLE]
                self._outbox[:0] = resend
            for req in in_flight:
                if req.op not in QUEUEABLE:
                    self._resolve(req, not_sent(req, "the connection was lost before the reply"))
            self._notify("connection_lost", reason)
            if not self._reconnect(resend):
                break
        self._finish(reason)

    def _read_until_lost(self, wire: Connection) -> str:
        ping: Request | None = None
        pinged_at = 0.0
        while True:
            waiting = ping is not None and not ping.done.is_set()
            try:
                frame = wire.read(self.ping_timeout if waiting else self.keepalive)
            except ConnectionLost as exc:
                return str(exc)
            if frame is not None:
                self._dispatch(frame)
                continue
            if waiting:
                if self._clock() - pinged_at >= self.ping_timeout:
                    return "the server stopped answering"
                continue
            pinged_at = self._clock()
            ping = self.request("ping")

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
        self._track_reply(req, frame)
        self._resolve(req, frame)

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
            if deadline is not None and self._clock() + delay > deadline:
                self._notify("gave_up", "could not reconnect in time")
                return False
            self._notify("reconnecting", attempt + 1, delay)
            if self._stop.wait(delay):
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
                queued, self._outbox = self._outbox, []
                for req in queued:
                    req.queued = False
                    if req in found:
                        self._pending[req.rid] = req  # resolved just below
                    else:
                        self._transmit(req)
            self._notify("reconnected", missed)
            for req, message in found.items():
                self._resolve(req, {"id": req.rid, "ok": True, "message": message})
            for event in events:
                self._dispatch(event)
            return True
        raise AssertionError("unreachable")

    def _handshake(
        self, in_flight: list[Request]
    ) -> tuple[Connection, list[Frame], dict[str, list[Frame]], dict[Request, Frame]]:
        """Connect, log in, rejoin; returns what was missed and which lost sends were stored."""
        assert self._credentials is not None
        wire = Connection.open(self.address, tls=self.tls)
        events: list[Frame] = []
        try:
            wire.welcome()
            user, password = self._credentials
            reply = wire.call(self._frame("login", username=user, password=password), events)
            if not reply.get("ok"):
                if reply.get("error") in FATAL_LOGIN:
                    raise LoginFailed(reply)
                raise ConnectionLost(str(reply.get("message")))
            with self._lock:
                rooms = rooms_to_rejoin(list(self._known.rooms), reply.get("rooms"))
            histories: dict[str, list[Frame]] = {}
            for room in rooms:
                joined = wire.call(self._frame("join", room=room), events)
                if joined.get("ok"):
                    histories[room] = messages_in(joined.get("history"))
            found = self._find_lost_sends(wire, in_flight, histories, events)
            mine = {id(message) for message in found.values()}
            missed = {
                room: [
                    m
                    for m in newer_than(history, self._known.last_id.get(room, 0))
                    if id(m) not in mine
                ]
                for room, history in histories.items()
            }
            with self._lock:
                for room, history in histories.items():
                    self._known.joined(room, history)
            return wire, events, missed, found
        except BaseException:
            wire.close()
            raise

    def _find_lost_sends(
        self,
        wire: Connection,
        in_flight: list[Request],
        histories: dict[str, list[Frame]],
        events: list[Frame],
    ) -> dict[Request, Frame]:
        """The in-flight sends and dms that the server stored although their reply was lost."""
        found: dict[Request, Frame] = {}
        for req in in_flight:
            if req.op == "send":
                candidates = histories.get(str(req.args.get("room")), [])
            elif req.op == "dm":
                args = {"with": req.args.get("to"), "limit": DEDUPE_LIMIT}
                candidates = messages_in(
                    wire.call(self._frame("dm_history", **args), events).get("messages")
                )
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
            left = list(self._pending.values()) + self._outbox
            self._pending.clear()
            self._outbox = []
        for req in left:
            if not req.done.is_set():
                self._resolve(req, not_sent(req, reason))
        with self._lock:
            self._lock.notify_all()
