"""Server settings: one frozen value built from defaults, the environment and flags.

Every setting can be given as a `chatd serve` flag or as `CHATD_<NAME>` in the
environment; a flag wins over the environment, which wins over the default.
"""

from __future__ import annotations

import socket
from dataclasses import Field, dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit


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


def setting_type(setting: Field[Any]) -> type[int | float | str]:
    """What a setting's value is: the type of its default."""
    default = setting.default
    assert isinstance(default, int | float | str), setting.name
    return type(default)


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
