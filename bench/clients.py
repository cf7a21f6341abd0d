"""Minimal, fast asyncio clients for the load generator: chatd (PROTOCOL.md) and IRC.

They are deliberately not the project's `client/` package: a load generator
must be cheap per line (an asyncio BufferedProtocol, at most one `json.loads`
per frame and none for the message frames the tracker recognises, no per-frame
logging) and must notice protocol violations (replies out of request order,
error events) rather than hide them. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

# why: a dead server must not hang a benchmark; setup steps get this long each.
STEP_TIMEOUT = 30.0
HOST = "127.0.0.1"  # why: the load generator only ever talks to this machine.

Reply = dict[str, Any]
ReplyCallback = Callable[[Reply, float], None]
MessageCallback = Callable[[dict[str, Any], float], None]
# why: sees each raw line before json.loads does, so the tracker can count chatd's message
# frames without JSON; it returns False for a line it does not recognise, which is then
# parsed and checked as JSON as usual.
LineHook = Callable[[bytes, float], bool]
IrcMessageCallback = Callable[[bytes, bytes, float], None]


class ProtocolViolation(Exception):
    """The server broke PROTOCOL.md (a reply out of order, a bad frame)."""


# why: one receive buffer for every connection. asyncio's selector transport calls
# get_buffer, recv_into and buffer_updated back to back on the loop's one thread, and
# buffer_updated copies the bytes out, so sharing is safe; a plain Protocol instead has
# the transport allocate 256 KiB per read (mmap, mremap, munmap: ~25 us on the bench
# machine), more than everything else a delivery costs.
_READ_BUFFER = memoryview(bytearray(256 * 1024))


class _Lines(asyncio.BufferedProtocol):
    """Splits the byte stream into lines; each read's lines go to `on_lines` in one call."""

    def __init__(self, on_lines: Callable[[list[bytes], float], None]) -> None:
        self._on_lines = on_lines
        self._partial = b""
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # why: the generator's own Nagle delay would show up as server latency.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        now = time.perf_counter()  # why: arrival is when the bytes were read, for every line
        data = _READ_BUFFER[:nbytes].tobytes()
        lines = (self._partial + data).split(b"\n") if self._partial else data.split(b"\n")
        self._partial = lines.pop()
        if lines:
            self._on_lines(lines, now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class ChatClient:
    """One connection to chatd. Requests may be pipelined; replies are matched in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._proto = _Lines(self._on_lines)
        self._next_id = 1
        self._pending: deque[tuple[int, ReplyCallback]] = deque()
        self.welcome: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.on_message: MessageCallback | None = None
        self.take_line: LineHook | None = None
        self.events: dict[str, int] = {}
        self.violations: list[str] = []

    @classmethod
    async def connect(cls, port: int, name: str, host: str = HOST) -> ChatClient:
        """Open a connection and wait for `welcome`."""
        client = cls(name)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(
            loop.create_connection(lambda: client._proto, host, port), STEP_TIMEOUT
        )
        await asyncio.wait_for(client.welcome, STEP_TIMEOUT)
        return client

    @property
    def closed(self) -> asyncio.Future[None]:
        return self._proto.closed

    def _on_lines(self, lines: list[bytes], now: float) -> None:
        take = self.take_line
        for line in lines:
            if take is None or not take(line, now):
                self._on_frame(line, now)

    def _on_frame(self, line: bytes, now: float) -> None:
        if not line.strip():
            return
        try:
            frame = json.loads(line)
        except ValueError:
            self.violations.append(f"not JSON: {line[:80]!r}")
            return
        event = frame.get("event")
        if event is not None:
            if event == "message" and self.on_message is not None:
                self.on_message(frame, now)
                return
            self.events[event] = self.events.get(event, 0) + 1
            if event == "welcome" and not self.welcome.done():
                self.welcome.set_result(frame)
            elif event in ("error", "shutdown"):
                self.violations.append(f"{event} event: {frame}")
            return
        if not self._pending:
            self.violations.append(f"reply with nothing pending: {line[:80]!r}")
            return
        rid, callback = self._pending.popleft()
        if frame.get("id") != rid:
            self.violations.append(f"reply id {frame.get('id')!r}, expected {rid}")
        callback(frame, now)

    def send(self, op: str, callback: ReplyCallback, **args: Any) -> float:
        """Write one request without waiting; `callback(reply, arrival)` gets its reply.

        Returns the time the request was handed to the socket.
        """
        rid = self._next_id
        self._next_id += 1
        self._pending.append((rid, callback))
        data = json.dumps({"op": op, "id": rid, **args}, separators=(",", ":")).encode() + b"\n"
        assert self._proto.transport is not None
        sent_at = time.perf_counter()
        self._proto.transport.write(data)
        return sent_at

    async def exchange(
        self, op: str, timeout: float = STEP_TIMEOUT, **args: Any
    ) -> tuple[Reply, float]:
        """Send one request, wait for its reply: (reply, seconds from write to its arrival).

        Arrival is when the reply's bytes were read, so the callbacks the event
        loop runs for other connections before this coroutine resumes (a join's
        events to the other members, say) do not count as server latency.
        """
        future: asyncio.Future[tuple[Reply, float]] = asyncio.get_running_loop().create_future()

        def done(reply: Reply, arrival: float) -> None:
            if not future.done():
                future.set_result((reply, arrival))

        sent_at = self.send(op, done, **args)
        reply, arrival = await asyncio.wait_for(future, timeout)
        return reply, arrival - sent_at

    async def request(self, op: str, timeout: float = STEP_TIMEOUT, **args: Any) -> Reply:
        """Send one request and wait for its reply (setup steps)."""
        return (await self.exchange(op, timeout, **args))[0]

    async def call(self, op: str, timeout: float = STEP_TIMEOUT, **args: Any) -> Reply:
        """`request` that raises when the reply is not ok."""
        return (await self.timed_call(op, timeout, **args))[0]

    async def timed_call(
        self, op: str, timeout: float = STEP_TIMEOUT, **args: Any
    ) -> tuple[Reply, float]:
        """`exchange` that raises when the reply is not ok."""
        reply, seconds = await self.exchange(op, timeout, **args)
        if not reply.get("ok"):
            raise ProtocolViolation(f"{self.name}: {op} failed: {reply}")
        return reply, seconds

    async def login(self, username: str, password: str) -> Reply:
        """Log in, registering the account first when it does not exist yet."""
        reply = await self.request("login", username=username, password=password)
        if reply.get("ok"):
            return reply
        if reply.get("error") != "invalid_credentials":
            raise ProtocolViolation(f"{self.name}: login failed: {reply}")
        registered = await self.request("register", username=username, password=password)
        if not registered.get("ok") and registered.get("error") != "username_taken":
            raise ProtocolViolation(f"{self.name}: register failed: {registered}")
        return await self.call("login", username=username, password=password)

    def close(self) -> None:
        if self._proto.transport is not None:
            self._proto.transport.close()


class IrcClient:
    """One IRC connection (RFC 2812 subset: NICK, USER, JOIN, PRIVMSG, PING/PONG)."""

    def __init__(self, nick: str) -> None:
        self.nick = nick
        self._proto = _Lines(self._on_lines)
        loop = asyncio.get_running_loop()
        self.registered: asyncio.Future[None] = loop.create_future()
        self._joins: dict[bytes, asyncio.Future[None]] = {}
        self._pongs: deque[asyncio.Future[None]] = deque()
        self.on_privmsg: IrcMessageCallback | None = None
        self.violations: list[str] = []

    @classmethod
    async def connect(
        cls, port: int, nick: str, host: str = HOST, password: str | None = None
    ) -> IrcClient:
        """Connect and register (NICK/USER), waiting for RPL_WELCOME (001).

        With a `password` (chatd's IRC listener, where every nick is an account) it logs in
        first with `PASS nick:password`.
        """
        client = cls(nick)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(
            loop.create_connection(lambda: client._proto, host, port), STEP_TIMEOUT
        )
        login = f"PASS :{nick}:{password}\r\n" if password is not None else ""
        client.write(f"{login}NICK {nick}\r\nUSER {nick} 0 * :chatd bench\r\n".encode())
        await asyncio.wait_for(client.registered, STEP_TIMEOUT)
        return client

    def write(self, data: bytes) -> None:
        assert self._proto.transport is not None
        self._proto.transport.write(data)

    def _on_lines(self, lines: list[bytes], now: float) -> None:
        for line in lines:
            self._on_line(line, now)

    def _on_line(self, line: bytes, now: float) -> None:
        line = line.rstrip(b"\r")
        if not line:
            return
        if line.startswith(b"PING"):
            self.write(b"PONG" + line[4:] + b"\r\n")
            return
        parts = line.split(b" ", 3)
        if len(parts) < 2:
            return
        command = parts[1]
        if command == b"PRIVMSG" and len(parts) == 4:
            if self.on_privmsg is not None:
                self.on_privmsg(parts[2], parts[3][1:], now)
        elif command == b"001":
            if not self.registered.done():
                self.registered.set_result(None)
        elif command == b"366" and len(parts) == 4:
            channel = parts[3].split(b" ", 1)[0].lower()
            future = self._joins.pop(channel, None)
            if future is not None and not future.done():
                future.set_result(None)
        elif command == b"PONG":
            if self._pongs:
                self._pongs.popleft().set_result(None)
        elif command == b"ERROR" or (command.isdigit() and command[:1] in (b"4", b"5")):
            self.violations.append(line.decode(errors="replace")[:200])

    async def join(self, channel: str) -> None:
        """JOIN and wait for RPL_ENDOFNAMES (366) of that channel."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._joins[channel.lower().encode()] = future
        self.write(f"JOIN {channel}\r\n".encode())
        await asyncio.wait_for(future, STEP_TIMEOUT)

    async def ping(self, timeout: float = STEP_TIMEOUT) -> None:
        """A round trip: everything the server queued for us before it has arrived."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs.append(future)
        self.write(b"PING :bench\r\n")
        await asyncio.wait_for(future, timeout)

    def privmsg(self, target: str, text: str) -> float:
        sent_at = time.perf_counter()
        self.write(f"PRIVMSG {target} :{text}\r\n".encode())
        return sent_at

    def close(self) -> None:
        if self._proto.transport is not None:
            self.write(b"QUIT :done\r\n")
            self._proto.transport.close()
