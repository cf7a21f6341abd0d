"""A small, strict protocol client for tests: real sockets, every read bounded in time."""

from __future__ import annotations

import itertools
import json
import socket
import ssl
import time
from typing import Any

from chatd.protocol import MAX_SERVER_FRAME_BYTES, FrameDecoder, encode

READ_TIMEOUT = 10.0


class ConnectionClosed(ConnectionError):
    """The server closed the connection."""


class WireClient:
    """Speaks PROTOCOL.md; keeps events that arrive while it waits for a reply."""

    def __init__(
        self,
        address: tuple[str, int],
        timeout: float = READ_TIMEOUT,
        *,
        rcvbuf: int | None = None,
        tls: ssl.SSLContext | None = None,
        source: str | None = None,
    ) -> None:
        """`source`: connect from this local address (any of 127.0.0.0/8 works on Linux)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source is not None:
            sock.bind((source, 0))
        if rcvbuf is not None:
            # why: before connect, so the small window is what the server sees.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect(address)
        self.sock = sock if tls is None else tls.wrap_socket(sock, server_hostname="localhost")
        self.timeout = timeout
        self._decoder = FrameDecoder(MAX_SERVER_FRAME_BYTES)
        self._frames: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self.username: str | None = None
        self.welcome = self.next_frame()
        assert self.welcome["event"] == "welcome", self.welcome

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, frame: dict[str, Any]) -> None:
        self.sock.sendall(encode(frame))

    def next_frame(self, timeout: float | None = None) -> dict[str, Any]:
        """The next frame of any kind; ConnectionClosed at end of stream."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._frames:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame from the server in time")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionClosed
            self._frames.extend(json.loads(line) for line in self._decoder.feed(data))
        return self._frames.pop(0)

    def next_reply(self, timeout: float | None = None) -> dict[str, Any]:
        """The next reply; events on the way are kept in `events`."""
        while True:
            frame = self.next_frame(timeout)
            if "event" in frame:
                self.events.append(frame)
                continue
            return frame

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        """Send a request with a fresh id and return its reply (ok or not)."""
        rid = next(self._ids)
        self.send_frame({"op": op, "id": rid, **args})
        reply = self.next_reply()
        assert reply["id"] == rid, (reply, rid)
        return reply

    def ok(self, op: str, **args: Any) -> dict[str, Any]:
        reply = self.request(op, **args)
        assert reply["ok"] is True, reply
        return reply

    def error(self, op: str, **args: Any) -> str:
        reply = self.request(op, **args)
        assert reply["ok"] is False, reply
        assert set(reply) >= {"id", "ok", "error", "message"}, reply
        return reply["error"]

    def next_event(self, name: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        """The next event (of that name), from those kept or from the wire."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            for index, event in enumerate(self.events):
                if name is None or event["event"] == name:
                    return self.events.pop(index)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {name or 'event'} event in time")
            frame = self.next_frame(remaining)
            assert "event" in frame, f"unexpected reply {frame}"
            self.events.append(frame)

    def drain(self) -> list[dict[str, Any]]:
        """Every event the server has sent so far: a ping round trip flushes the pipe."""
        self.ok("ping")
        events, self.events = self.events, []
        return events
