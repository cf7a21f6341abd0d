"""A private Redis for the tests: its own redis-server on a free port of 127.0.0.1.

The suite never uses the machine's Redis service or its port 6379.
`RedisServer.start` runs the first `redis-server` found on PATH, else in
/usr/bin or /usr/sbin, in the foreground (`--daemonize no`, so it is our
child and we know its pid), bound to 127.0.0.1 only, without persistence
(`--save ''`, `--appendonly no`: nothing in it must survive) and with its
working directory in a temporary directory. Its output goes to a log file
there, quoted when it fails to start.

The cluster's tests break the bus on purpose, so the server can be
restarted on the same port (`restart`), kept down for a while (`down()`:
connections are refused), frozen (`frozen()`: SIGSTOP, so connections
hang, as with a wedged server) and sent any command (`command`: CLIENT
KILL, CONFIG SET, ...). `reset` undoes all that between tests: the server
running again, every CONFIG SET made through `command` reverted, every key
gone (FLUSHALL).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

MISSING_SERVER = (
    "redis-server not found; install redis-server (Debian: apt-get install redis-server)"
)
SYSTEM_PORT = 6379
# why: Debian installs it in /usr/bin; other layouts use sbin, which a user's PATH may lack.
SEARCHED_DIRECTORIES = (Path("/usr/bin"), Path("/usr/sbin"))
# why: bounds on each step, so a wedged server fails the test instead of hanging the session.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
# why: how long each helper's connection waits for an answer; a test client may ask for others.
CLIENT_TIMEOUT = 5.0
# why: a waiting readiness probe asks again this often; redis-server starts in ~10 ms here.
PING_INTERVAL = 0.01
# why: another process may take the free port between our look and the server's bind.
START_ATTEMPTS = 3
# why: as chatd's cluster deployment sets it (docs: the default 32mb cuts a slow subscriber).
PUBSUB_BUFFER_LIMIT = "pubsub 256mb 64mb 60"


def find_server() -> Path | None:
    """The redis-server program: PATH first, then /usr/bin and /usr/sbin."""
    found = shutil.which("redis-server")
    if found is not None:
        return Path(found)
    for directory in SEARCHED_DIRECTORIES:
        candidate = directory / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    """A port of 127.0.0.1 free right now; never Redis's usual 6379."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port != SYSTEM_PORT:
            return port


def _is_config_set(args: tuple[Any, ...]) -> bool:
    return len(args) >= 2 and str(args[0]).upper() == "CONFIG" and str(args[1]).upper() == "SET"


@dataclass
class RedisServer:
    """A running private redis-server; `stop` (idempotent) ends it and deletes its directory."""

    binary: Path
    directory: Path
    port: int = 0
    _process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None
    # why: what CONFIG SET changed through `command`, as it was, so `reset` can put it back
    _changed_config: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, binary: Path) -> RedisServer:
        """Start on a free port and wait until it answers PING; cleaned up if this fails."""
        server = cls(binary, Path(tempfile.mkdtemp(prefix="chatd-redis-")))
        atexit.register(server.stop)  # why: also when pytest dies before its teardown
        try:
            server._start_on_a_free_port()
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self, **options: Any) -> redis.Redis:
        """A new redis-py client of this server (the caller closes it).

        Its calls wait CLIENT_TIMEOUT at most and are not retried unless
        `options` say otherwise, so a test against a stopped server fails
        fast instead of sitting out redis-py's default retries.
        """
        options.setdefault("socket_timeout", CLIENT_TIMEOUT)
        options.setdefault("socket_connect_timeout", CLIENT_TIMEOUT)
        options.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis.from_url(self.url, **options)

    def command(self, *args: Any) -> Any:
        """Run one command on the server and return its answer: `command("CLIENT", "KILL",
        "TYPE", "pubsub")`, `command("CONFIG", "SET", "maxmemory", "1mb")`.

        A setting changed by CONFIG SET here is put back by `reset`, before the next test.
        """
        with self.client(decode_responses=True) as connection:
            if _is_config_set(args):
                for name in args[2::2]:
                    key = str(name).lower()
                    if key not in self._changed_config:
                        self._changed_config.update(connection.config_get(key))
            return connection.execute_command(*args)

    def restart(self) -> None:
        """Stop the server, then start it again on the same port (its data is lost)."""
        self.stop_server()
        self._start_server()

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """The server stopped for the block (connections refused), then started on its port."""
        self.stop_server()
        try:
            yield
        finally:
            self._start_server()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The server stopped by SIGSTOP for the block: connections are accepted by the
        kernel, commands get no answer until it continues, as with a wedged server."""
        assert self._process is not None and self.running, "the server is not running"
        self._process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self._process.send_signal(signal.SIGCONT)

    def reset(self) -> None:
        """As new for the next test: running, its settings as started, and no key at all."""
        if not self.running:
            self._start_server()
        with self.client(decode_responses=True) as connection:
            for name, value in self._changed_config.items():
                connection.config_set(name, value)
            self._changed_config.clear()
            connection.flushall()

    def _start_on_a_free_port(self) -> None:
        for attempt in range(START_ATTEMPTS):
            self.port = _free_port()
            try:
                self._start_server()
                return
            except _PortTaken:
                if attempt == START_ATTEMPTS - 1:
                    raise

    def _start_server(self) -> None:
        """Start on `self.port` and wait (bounded) until it answers PING."""
        if self._log is None:
            self._log = self.log_file.open("ab")
        start_of_log = self.log_file.stat().st_size
        self._process = subprocess.Popen(
            [
                str(self.binary),
                *("--bind", "127.0.0.1", "--port", str(self.port)),
                *("--save", "", "--appendonly", "no"),
                *("--dir", str(self.directory), "--daemonize", "no"),
                *("--client-output-buffer-limit", PUBSUB_BUFFER_LIMIT),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
        )
        deadline = time.monotonic() + START_TIMEOUT
        with self.client(socket_timeout=1.0, socket_connect_timeout=1.0) as probe:
            while True:
                if self._process.poll() is not None:
                    log = self._log_since(start_of_log)
                    if "Address already in use" in log:
                        raise _PortTaken(self.port)
                    raise RuntimeError(f"redis-server exited ({self._process.returncode}):\n{log}")
                try:
                    probe.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop_server()
                        raise RuntimeError(
                            f"redis-server did not answer within {START_TIMEOUT} s:\n"
                            + self._log_since(start_of_log)
                        ) from None
                    time.sleep(PING_INTERVAL)

    def _log_since(self, offset: int) -> str:
        with self.log_file.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def stop_server(self) -> None:
        """Stop the server if it runs: SIGTERM (it saves nothing), SIGKILL if that hangs."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        # why: a frozen server handles SIGTERM only once it runs again
        process.send_signal(signal.SIGCONT)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
            raise

    def stop(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop_server()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
            shutil.rmtree(self.directory, ignore_errors=True)


class _PortTaken(RuntimeError):
    def __init__(self, port: int) -> None:
        super().__init__(f"redis-server could not bind 127.0.0.1:{port}: address in use")
