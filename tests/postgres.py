"""A private PostgreSQL for the tests: its own cluster in a temporary directory, on 127.0.0.1.

The suite never uses the machine's PostgreSQL service, its port 5432 or its
socket directory. `PostgresCluster.start` runs `initdb` and `pg_ctl` from the
first PostgreSQL found on PATH, else the newest under /usr/lib/postgresql;
the server listens on a free TCP port of 127.0.0.1 only, with its Unix socket
inside the cluster's own directory, and trusts every connection (only this
machine can reach it, and it holds nothing but test data). `initdb` refuses
to run as root, so as root every server command runs as an unprivileged
user (`postgres` when it exists) through `runuser`, and that user owns the
directory.

Each test gets databases as a migration leaves them: the current schema, no
row but the log's head at position 0. They
are created and migrated once per session and emptied for each test (any
connection a test left open ended, the schema revision checked, TRUNCATE
... RESTART IDENTITY): 13-21 ms here, where a fresh copy of a migrated
template (CREATE DATABASE ... TEMPLATE) took 55-380 ms on this machine's
shared disk and an alembic upgrade about 200 ms.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

MISSING_BINARIES = "PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql"
MISSING_DRIVER = (
    "psycopg not installed; install the postgresql extra: pip install -e '.[postgresql]'"
)
SUPERUSER = "chatd"
SYSTEM_PORT = 5432
# why: bounds on each step, so a wedged initdb or server fails the session instead of hanging it;
# together they fit in pytest-timeout's 60 s for the first test that asks for the cluster.
INITDB_TIMEOUT = 30.0
START_TIMEOUT = 15
STOP_TIMEOUT = 15
# why: emptying a database waits this long for the connections it ended to let go of locks.
LOCK_TIMEOUT = 10
# why: another process may take the free port between our look and the server's bind.
START_ATTEMPTS = 3
# why: fast and disposable (nothing here must survive a crash); room for every server's pool
# (up to 15 connections each, several servers in some tests) plus the CLI's stores.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "autovacuum": "off",
    "log_min_messages": "warning",
}


def find_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl: PATH first, then the newest Debian layout."""
    initdb = shutil.which("initdb")
    if initdb is not None and _has_server_binaries(Path(initdb).resolve().parent):
        return Path(initdb).resolve().parent
    versions = [
        (int(directory.parent.name), directory)
        for directory in Path("/usr/lib/postgresql").glob("*/bin")
        if directory.parent.name.isdigit() and _has_server_binaries(directory)
    ]
    return max(versions)[1] if versions else None


def _has_server_binaries(directory: Path) -> bool:
    return (directory / "initdb").is_file() and (directory / "pg_ctl").is_file()


@functools.cache
def _head_revision() -> str | None:
    from chatd.db import alembic_config, head_revision

    return head_revision(alembic_config("sqlite://"))


def _unprivileged_user() -> str | None:
    """Who runs the server's commands: None for ourselves, unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and there is no unprivileged user (postgres, nobody)")


def _free_port() -> int:
    """A port of 127.0.0.1 free right now; never PostgreSQL's usual 5432."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port != SYSTEM_PORT:
            return port


@dataclass
class PostgresCluster:
    """A running private server; `stop` (idempotent) ends it and deletes its directory."""

    binaries: Path
    directory: Path
    port: int = 0
    run_as: str | None = None
    _databases: list[str] = field(default_factory=list)  # test_1, test_2, ... made so far

    @classmethod
    def start(cls, binaries: Path) -> PostgresCluster:
        """initdb, then pg_ctl start on a free port; the directory is removed if this fails."""
        directory = Path(tempfile.mkdtemp(prefix="chatd-pg-"))
        cluster = cls(binaries, directory, run_as=_unprivileged_user())
        atexit.register(cluster.stop)  # why: also when pytest dies before its teardown
        try:
            cluster._init()
            cluster._start_server()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run one of the server's programs, as the unprivileged user when we are root."""
        command = [str(self.binaries / argv[0]), *argv[1:]]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.directory,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )

    def _init(self) -> None:
        if self.run_as is not None:
            user = pwd.getpwnam(self.run_as)
            os.chown(self.directory, user.pw_uid, user.pw_gid)
        done = self._run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--auth=trust",
            f"--username={SUPERUSER}",
            "--encoding=UTF8",
            # why: C collation orders text by bytes, as SQLite does, whatever the host's locale
            "--locale=C",
            "--no-sync",
            timeout=INITDB_TIMEOUT,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def _start_server(self) -> None:
        settings = {**SERVER_SETTINGS, "unix_socket_directories": str(self.directory)}
        for _attempt in range(START_ATTEMPTS):
            self.port = _free_port()
            self.log_file.unlink(missing_ok=True)
            # why: pg_ctl hands --options to the postgres command line through a shell
            options = " ".join(
                f"-c {name}={shlex.quote(value)}" for name, value in settings.items()
            )
            done = self._run(
                "pg_ctl",
                "start",
                "--pgdata",
                str(self.data),
                "--log",
                str(self.log_file),
                "--wait",
                f"--timeout={START_TIMEOUT}",
                f"--options=-p {self.port} {options}",
                timeout=START_TIMEOUT + 5,
            )
            if done.returncode == 0:
                return
            self.stop_server()
            log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
            if "could not bind" not in log and "in use" not in log:
                break
        raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}{done.stderr}\n{log}")

    def execute(self, statement: str, database: str = "postgres") -> None:
        """Statements outside a transaction (CREATE DATABASE, say), as the superuser."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=SUPERUSER,
            dbname=database,
            autocommit=True,
            connect_timeout=10,
        ) as connection:
            connection.execute(statement)

    def empty_database(self, index: int) -> str:
        """The URL of the test's `index`-th database (from 0), migrated and without a row.

        Created and migrated the first time a test needs that many; later
        tests get it back emptied: any connection a test left open ended,
        its tables truncated and their id sequences restarted. One a test
        left at another schema revision (tests/test_migrations.py goes down
        and up again) is made anew.
        """
        import psycopg

        from chatd.db import upgrade

        name = f"test_{index + 1}"
        url = self.url(name)
        if index < len(self._databases):
            try:
                self.execute(self._emptying(_head_revision()), name)
                return url
            except psycopg.Error:
                self.execute(f"DROP DATABASE {name} WITH (FORCE)")
        else:
            self._databases.append(name)
        self.execute(f"CREATE DATABASE {name}")
        upgrade(url)
        return url

    @staticmethod
    def _emptying(head: str | None) -> str:
        from chatd.models import Base

        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        return f"""
            SET lock_timeout = '{LOCK_TIMEOUT}s';
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid();
            DO $$ BEGIN
                IF (SELECT max(version_num) FROM alembic_version) IS DISTINCT FROM '{head}' THEN
                    RAISE EXCEPTION 'not at the newest schema revision';
                END IF;
            END $$;
            TRUNCATE {tables} RESTART IDENTITY;
            INSERT INTO log_head (id, position) VALUES (1, 0);
        """

    def stop_server(self) -> None:
        """Stop the server if it runs (or is still starting: pg_ctl start may have given up)."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            self._run(
                "pg_ctl",
                "stop",
                "--pgdata",
                str(self.data),
                "--mode=immediate",
                "--wait",
                f"--timeout={STOP_TIMEOUT}",
                timeout=STOP_TIMEOUT + 5,
            )
        except subprocess.TimeoutExpired:
            # why: the postmaster is ours and alive but will not stop; its children
            # exit by themselves once it is gone.
            with contextlib.suppress(OSError, ValueError, IndexError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
            raise

    def stop(self) -> None:
        """Stop the server (immediate: nothing in it is worth a checkpoint) and delete it all."""
        try:
            self.stop_server()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def driver_missing() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return True
    return False


def unavailable_reason() -> str | None:
    """Why the PostgreSQL half cannot run here, or None when it can."""
    if find_binaries() is None:
        return MISSING_BINARIES
    if driver_missing():
        return MISSING_DRIVER
    return None
