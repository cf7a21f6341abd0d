"""Server settings: one frozen value built from defaults, the environment and flags.

Every setting can be given as a `chatd serve` flag or as `CHATD_<NAME>` in the
environment; a flag wins over the environment, which wins over the default.
"""

from __future__ import annotations

import re
import socket
from dataclasses import Field, dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# why: it is the source of every numeric, so it must be one token without `!`, `@` or spaces.
_IRC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=7700, metadata={"help": "TCP port (0 picks a free one)"})
    db: str = field(
        default="",
        metadata={"help": "database URL (default: SQLite at $XDG_DATA_HOME/chatd/chatd.db)"},
    )
    history_size: int = field(default=50, metadata={"help": "messages replayed on join"})
    max_frame: int = field(default=64 * 1024, metadata={"help": "largest client frame, bytes"})
    bcrypt_rounds: int = field(default=12, metadata={"help": "bcrypt cost for new hashes"})
    log_level: str = field(default="info", metadata={"help": "debug, info, warning or error"})
    login_timeout: float = field(
        default=30.0, metadata={"help": "seconds a connection may take to log in"}
    )
    sendq_bytes: int = field(
        default=4 * 1024 * 1024,
        metadata={"help": "bytes queued to one client before it is dropped (sendq_exceeded)"},
    )
    max_file_bytes: int = field(
        default=25 * 1024 * 1024, metadata={"help": "largest file announced in welcome, bytes"}
    )
    upload_quota_bytes: int = field(
        default=1024**3, metadata={"help": "bytes of files one user may store; 0 = no quota"}
    )
    upload_timeout: float = field(
        default=600.0,
        metadata={"help": "seconds an unfinished upload may idle before it is dropped"},
    )
    files_dir: str = field(
        default="", metadata={"help": "where attachments are stored (default: beside the database)"}
    )
    send_rate: float = field(
        default=5.0,
        metadata={"help": "messages a second per connection (send, dm, upload); 0 = no limit"},
    )
    send_burst: int = field(
        default=20, metadata={"help": "messages a connection may send at once before --send-rate"}
    )
    login_failures: int = field(
        default=5,
        metadata={
            "help": "failed logins a minute for one account from one address (an account from "
            "anywhere: 4x, an address over all accounts: 10x); 0 = no limit"
        },
    )
    registrations_per_hour: int = field(
        default=10, metadata={"help": "registrations per address per hour; 0 = no limit"}
    )
    registration: str = field(
        default="open", metadata={"help": "open, or closed (only `chatd user add` makes accounts)"}
    )
    max_bad_frames: int = field(
        default=20,
        metadata={"help": "malformed requests a connection may send at once before it is closed"},
    )
    max_connections: int = field(default=20_000, metadata={"help": "connections in all"})
    max_connections_per_ip: int = field(
        default=128, metadata={"help": "connections from one address; 0 = no limit"}
    )
    tls_cert: str = field(default="", metadata={"help": "PEM certificate chain: serve TLS"})
    tls_key: str = field(default="", metadata={"help": "PEM private key for --tls-cert"})
    bus: str = field(
        default="",
        metadata={
            "help": "the cluster's Redis (redis://HOST:PORT/DB): run as one node of several; "
            "needs a PostgreSQL --db"
        },
    )
    node: str = field(
        default="", metadata={"help": "this node's name (default: the host name and the port)"}
    )
    irc_port: int = field(
        default=-1,
        metadata={"help": "serve IRC on this TCP port too (0 picks a free one; -1: no IRC)"},
    )
    irc_tls_port: int = field(
        default=-1,
        metadata={"help": "serve IRC over TLS on this port, with --tls-cert/--tls-key (-1: none)"},
    )
    irc_server_name: str = field(
        default="", metadata={"help": "the IRC server's name (default: the host name)"}
    )
    irc_network: str = field(default="chatd", metadata={"help": "the IRC network's name"})
    irc_replay_lines: int = field(
        default=-1,
        metadata={
            "help": "messages replayed on join to IRC clients without draft/chathistory "
            "(-1: --history-size)"
        },
    )
    irc_guests: bool = field(
        default=False,
        metadata={"help": "let IRC clients that do not log in chat as guests (named guest-NICK)"},
    )

    @property
    def irc_name(self) -> str:
        """The IRC server's name: --irc-server-name, else the host name."""
        return self.irc_server_name or socket.gethostname()

    @property
    def replay_lines(self) -> int:
        """Messages an IRC client without draft/chathistory is shown on join."""
        limit = self.history_size if self.irc_replay_lines < 0 else self.irc_replay_lines
        return min(limit, self.history_size)

    @property
    def node_name(self) -> str:
        """This node's name, for logs and `welcome`: --node, else the host name and the port."""
        return self.node or f"{socket.gethostname()}:{self.port}"

    def __post_init__(self) -> None:
        problems = [
            f"--{name.replace('_', '-')} must be positive"
            for name in ("history_size", "max_frame", "bcrypt_rounds", "sendq_bytes")
            if getattr(self, name) <= 0
        ]
        if not 0 <= self.port <= 65535:
            problems.append("--port must be 0-65535")
        for name in ("irc_port", "irc_tls_port"):
            if not -1 <= getattr(self, name) <= 65535:
                problems.append(f"--{name.replace('_', '-')} must be 0-65535, or -1 for none")
        if self.irc_tls_port >= 0 and not self.tls_cert:
            problems.append("--irc-tls-port needs --tls-cert and --tls-key")
        if self.irc_replay_lines < -1:
            problems.append("--irc-replay-lines must not be negative (-1: --history-size)")
        if not _IRC_NAME.fullmatch(self.irc_server_name or "x"):
            problems.append("--irc-server-name must be a host name: letters, digits, . and -")
        if not _IRC_NAME.fullmatch(self.irc_network):
            problems.append("--irc-network must be letters, digits, . and -")
        if not 4 <= self.bcrypt_rounds <= 31:
            problems.append("--bcrypt-rounds must be 4-31")
        if self.max_frame < 1024:
            problems.append("--max-frame must be at least 1024")
        if self.upload_timeout <= 0:
            problems.append("--upload-timeout must be positive")
        if self.max_file_bytes < 0 or self.upload_quota_bytes < 0:
            problems.append("--max-file-bytes and --upload-quota-bytes must not be negative")
        if self.login_timeout <= 0:
            problems.append("--login-timeout must be positive")
        for name in (
            "send_rate",
            "send_burst",
            "login_failures",
            "registrations_per_hour",
            "max_bad_frames",
            "max_connections_per_ip",
        ):
            if getattr(self, name) < 0:
                problems.append(f"--{name.replace('_', '-')} must not be negative")
        if self.max_connections <= 0:
            problems.append("--max-connections must be positive")
        if self.registration not in ("open", "closed"):
            problems.append("--registration must be open or closed")
        if bool(self.tls_cert) != bool(self.tls_key):
            problems.append("--tls-cert and --tls-key go together")
        if self.bus and not self.bus.startswith(("redis://", "rediss://", "unix://")):
            problems.append("--bus must be a Redis URL: redis://HOST:PORT/DB")
        if self.bus and self.db.startswith("sqlite"):
            problems.append(
                "--bus needs a PostgreSQL database (--db postgresql+psycopg://...): "
                "an SQLite file belongs to one process"
            )
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            problems.append("--log-level must be debug, info, warning or error")
        if problems:
            raise ValueError("; ".join(problems))


SETTINGS = tuple(fields(ServerConfig))


def setting_type(setting: Field[Any]) -> type[bool | int | float | str]:
    """What a setting's value is: the type of its default (a bool is a switch)."""
    default = setting.default
    assert isinstance(default, bool | int | float | str), setting.name
    return type(default)


# why: the words an environment variable may use for a switch (CHATD_IRC_GUESTS=1).
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def parse_switch(raw: str) -> bool:
    """An environment value for a switch; ValueError when it is neither yes nor no."""
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(raw)


class UsageError(Exception):
    """A bad flag or environment value: the command exits with status 2."""


def env_name(setting: str) -> str:
    return f"CHATD_{setting.upper()}"


def without_password(url: str) -> str:
    """`url` fit for a log line: a password in it becomes ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))
