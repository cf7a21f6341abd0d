"""Server settings: one frozen value built from defaults, the environment and flags.

Every setting can be given as a `chatd serve` flag or as `CHATD_<NAME>` in the
environment; a flag wins over the environment, which wins over the default.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


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
        if self.login_timeout <= 0:
            problems.append("--login-timeout must be positive")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            problems.append("--log-level must be debug, info, warning or error")
        if problems:
            raise ValueError("; ".join(problems))


SETTINGS = tuple(fields(ServerConfig))


def env_name(setting: str) -> str:
    return f"CHATD_{setting.upper()}"
