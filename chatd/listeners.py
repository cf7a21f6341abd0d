"""Where clients connect: a listening socket, TLS or not, and the dialect its connections speak.

`chatd serve` opens its listeners before it opens the database, so a taken
port or a bad certificate is reported first, and before any migration runs.
The server accepts on each with its own thread.
"""

from __future__ import annotations

import errno
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from chatd.config import ServerConfig
from chatd.connection import Converse
from chatd.dialects import Dialect
from chatd.dialects.irc import IrcDialect
from chatd.dialects.json import JsonDialect
from chatd.transport import server_context

LISTEN_BACKLOG = 1024
# why: Linux's default net.ipv4.ip_unprivileged_port_start.
FIRST_UNPRIVILEGED_PORT = 1024


class ListenError(OSError):
    """The address cannot be listened on; the message says why in an operator's words."""


def _listen_problem(host: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"port {port} is in use on {host}"
    if error.errno == errno.EACCES:
        return (
            f"permission denied to listen on port {port} of {host}: ports below "
            f"{_first_unprivileged_port()} need root or CAP_NET_BIND_SERVICE"
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: it is not an address of this machine"
    return f"cannot listen on port {port} of {host}: {error.strerror or error}"


def _first_unprivileged_port() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return FIRST_UNPRIVILEGED_PORT


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, or ListenError saying plainly why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(LISTEN_BACKLOG)
    except OSError as exc:
        listener.close()
        raise ListenError(_listen_problem(host, port, exc)) from None
    return listener


@dataclass(frozen=True, slots=True)
class Listener:
    """One listening socket and what its connections speak."""

    name: str  # in logs: "listening on ..." for chatd's own protocol
    sock: socket.socket
    tls: ssl.SSLContext | None
    dialect: Dialect
    converse: Converse

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def close(self) -> None:
        self.sock.close()


def open_listeners(config: ServerConfig) -> list[Listener]:
    """Every listener `config` asks for; TlsSetupError or ListenError when one cannot be had.

    chatd's own protocol first (its address is the server's), then IRC, plain
    and over TLS, if asked for; the IRC listeners share one dialect.
    """
    tls = server_context(config.tls_cert, config.tls_key) if config.tls_cert else None
    dialect = JsonDialect(config)
    wanted: list[tuple[str, int, ssl.SSLContext | None, Dialect, Converse]] = [
        ("", config.port, tls, dialect, dialect.converse)
    ]
    if config.irc_port >= 0 or config.irc_tls_port >= 0:
        irc = IrcDialect(config)
        if config.irc_port >= 0:
            wanted.append(("irc", config.irc_port, None, irc, irc.converse))
        if config.irc_tls_port >= 0:
            wanted.append(("irc", config.irc_tls_port, tls, irc, irc.converse))
    opened: list[Listener] = []
    try:
        for name, port, context, speaks, converse in wanted:
            opened.append(Listener(name, listen(config.host, port), context, speaks, converse))
    except BaseException:
        for listener in opened:
            listener.close()
        raise
    return opened
