"""A small IRC client for tests: real sockets, every read bounded in time, chatd's codec."""

from __future__ import annotations

import base64
import socket
import ssl
import time
from collections.abc import Callable

from chatd.irc.codec import Line, LineDecoder, parse

READ_TIMEOUT = 10.0


class IrcClosed(ConnectionError):
    """The server closed the connection."""


class IrcWire:
    def __init__(
        self,
        address: tuple[str, int],
        timeout: float = READ_TIMEOUT,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        sock = socket.create_connection(address, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock if tls is None else tls.wrap_socket(sock, server_hostname="localhost")
        self.timeout = timeout
        self._decoder = LineDecoder()
        self._lines: list[Line] = []
        self.raw: list[bytes] = []
        self.nick = "*"
        self._pings = 0
        self.welcome: list[Line] = []  # what registration was answered with

    def close(self) -> None:
        self.sock.close()

    def send(self, *lines: str) -> None:
        self.sock.sendall(b"".join(line.encode("utf-8") + b"\r\n" for line in lines))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next(self, timeout: float | None = None) -> Line:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._lines:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no line from the server in time")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise IrcClosed
            for raw in self._decoder.feed(data):
                assert isinstance(raw, bytes), "the server sent an over-long line"
                self.raw.append(raw)
                line = parse(raw)
                assert line is not None and line.valid_utf8, raw
                self._lines.append(line)
        return self._lines.pop(0)

    def until(self, match: Callable[[Line], bool], timeout: float | None = None) -> list[Line]:
        """Lines up to and including the first that matches."""
        seen = []
        while True:
            line = self.next(timeout)
            seen.append(line)
            if match(line):
                return seen

    def expect(self, verb: str, timeout: float | None = None) -> Line:
        return self.until(lambda line: line.verb == verb, timeout)[-1]

    def sync(self) -> list[Line]:
        """Everything the server sends before answering a PING sent now (in command order)."""
        self._pings += 1
        token = f"sync{self._pings}"
        self.send(f"PING {token}")
        lines = self.until(lambda line: line.verb == "PONG" and line.params[-1] == token)
        return lines[:-1]

    def closed(self) -> list[Line]:
        """Every line until the server closes the connection."""
        lines = []
        try:
            while True:
                lines.append(self.next())
        except (IrcClosed, ConnectionResetError):
            return lines

    def register(
        self,
        nick: str,
        password: str | None,
        *,
        how: str = "sasl",
        caps: tuple[str, ...] = (),
        account: str | None = None,
    ) -> list[Line]:
        """Register and log in; the lines up to the end of the MOTD (and a sync after it)."""
        account = account or nick
        seen: list[Line] = []
        wanted = list(caps) + (["sasl"] if how == "sasl" else [])
        if wanted:
            self.send("CAP LS 302")
        if how == "pass" and password is not None:
            self.send(f"PASS :{account}:{password}")
        if how == "pass-user" and password is not None:
            self.send(f"PASS :{password}")
        self.send(f"NICK {nick}", f"USER {account} 0 * :{nick}")
        if wanted:
            self.expect("CAP")
            self.send("CAP REQ :" + " ".join(wanted))
            ack = self.expect("CAP")
            assert ack.params[1] == "ACK", ack
        if how == "sasl" and password is not None:
            self.send("AUTHENTICATE PLAIN")
            self.expect("AUTHENTICATE")
            payload = base64.b64encode(f"\0{account}\0{password}".encode()).decode()
            self.send(f"AUTHENTICATE {payload}")
            seen += self.until(lambda line: line.verb in ("903", "904"))
        if wanted:
            self.send("CAP END")
        lines = seen + self.until(lambda line: line.verb in ("376", "422", "ERROR"))
        welcome = next((line for line in lines if line.verb == "001"), None)
        if welcome is not None:
            self.nick = welcome.params[0]
        self.welcome = lines + self.sync()
        return self.welcome
