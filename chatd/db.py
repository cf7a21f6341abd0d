"""Engines and schema versions: how chatd opens a database and keeps it migrated.

SQLite gets the settings a server needs (WAL, FULL sync, a busy timeout,
foreign keys) and real transactions: Python's sqlite3 module emits no BEGIN
for reads or DDL, so we take over BEGIN as SQLAlchemy's SQLite dialect page
documents, and writes start with BEGIN IMMEDIATE so WAL never hands a writer
SQLITE_BUSY halfway through a transaction.

Write transactions take turns on every backend, across processes too
(`chatd import` beside a running server): on SQLite through BEGIN
IMMEDIATE, on PostgreSQL through one transaction-scoped advisory lock taken
first. So message ids are handed out in commit order, and a reader never
sees a message while one with a smaller id is yet to be committed: a join's
history and a client catching up with `after` would skip that one for good.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from chatd.permissions import create_private_file, make_private_dir

log = logging.getLogger(__name__)

# why: a writer waits this long for another process (an import, a backup) to finish.
WRITER_WAIT_MS = 30_000
# why: execution option asking the begin event for BEGIN IMMEDIATE (SQLite) or the
# writers' lock (PostgreSQL).
WRITE_OPTION = "chatd_write"
# The advisory lock key PostgreSQL writers take turns on ("chatd-wr"); advisory locks
# are per database, so servers on other databases of the same cluster never meet.
POSTGRES_WRITERS_LOCK = int.from_bytes(b"chatd-wr", "big")


class SchemaError(Exception):
    """The database is not at the schema this version of chatd needs."""


class DatabaseUrlError(ValueError):
    """A --db or CHATD_DB value that is neither a database URL nor a path."""


def sqlite_url(path: str | os.PathLike[str]) -> str:
    """The URL of an SQLite file, its path made absolute (`~` expanded) and quoted as URLs need."""
    absolute = Path(path).expanduser().absolute()
    return URL.create("sqlite", database=str(absolute)).render_as_string(hide_password=False)


def default_db_url(environ: Mapping[str, str] = os.environ) -> str:
    """An SQLite file in the user's data directory (XDG base directory spec)."""
    data_home = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return sqlite_url(Path(data_home) / "chatd" / "chatd.db")


def database_url(value: str, source: str = "--db") -> str:
    """A URL as given; anything without `://` is the path of an SQLite file.

    Operators type paths far more often than URLs, and a path can never be
    mistaken for a URL, since SQLAlchemy URLs all start with `name://`.
    """
    if "://" not in value:
        return sqlite_url(value)
    try:
        make_url(value)
    except (ArgumentError, ValueError) as exc:
        raise DatabaseUrlError(f"{source} {value!r} is not a database URL: {exc}") from None
    return value


def resolve_url(flag: str | None, environ: Mapping[str, str]) -> str:
    """--db, else CHATD_DB, else the default SQLite file; a URL or a plain path."""
    if flag:
        return database_url(flag, "--db")
    if environ.get("CHATD_DB"):
        return database_url(environ["CHATD_DB"], "CHATD_DB")
    return default_db_url(environ)


def _sqlite_path(url: str) -> Path | None:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def default_files_dir(url: str) -> Path:
    """Attachments live beside an SQLite file, else in the user's data directory."""
    path = _sqlite_path(url) if is_sqlite(url) else None
    if path is not None:
        return path.with_name(f"{path.name}.files")
    path = _sqlite_path(default_db_url())
    assert path is not None
    return path.with_name("files")


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_files(url: str) -> list[Path]:
    """The files of an SQLite database (the database, -wal, -shm) and its directory; [] if none."""
    path = _sqlite_path(url) if is_sqlite(url) else None
    if path is None:
        return []
    return [
        path,
        path.with_name(f"{path.name}-wal"),
        path.with_name(f"{path.name}-shm"),
        path.parent,
    ]


def _ensure_sqlite_file(url: str) -> None:
    """A new database is created 0600 in a 0700 directory; its -wal and -shm follow its mode."""
    path = _sqlite_path(url)
    if path is not None:
        make_private_dir(path.parent)
        create_private_file(path)


def create_db_engine(url: str, *, foreign_keys: bool = True) -> Engine:
    """An engine for `url`; on SQLite with the pragmas and BEGIN handling above."""
    if not is_sqlite(url):
        engine = create_engine(url, pool_pre_ping=True)
        if engine.dialect.name == "postgresql":
            _take_turns_on_postgresql(engine)
        return engine
    _ensure_sqlite_file(url)
    engine = create_engine(url, pool_size=8, max_overflow=24)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={WRITER_WAIT_MS}")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        # why: a deleted message's text must not survive in freed pages (PROTOCOL.md: erased
        # for good); most builds have it on already, this makes sure.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _take_turns_on_postgresql(engine: Engine) -> None:
    """Write transactions start by waiting for the writers' lock, as BEGIN IMMEDIATE does.

    Held until commit or rollback. The wait is bounded like SQLite's busy
    timeout: lock_timeout is set for the session when a connection opens.
    """

    @event.listens_for(engine, "connect", insert=True)
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # why: set inside a transaction, the first rollback would undo it (SQLAlchemy's
        # PostgreSQL dialect page, "Setting Alternate Search Paths on Connect").
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET lock_timeout = {WRITER_WAIT_MS}")
        cursor.close()
        dbapi_connection.autocommit = autocommit

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(WRITE_OPTION, False):
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({POSTGRES_WRITERS_LOCK})")


def alembic_config(url: str) -> Config:
    """Alembic settings that work from any directory, out of the installed package."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("chatd.migrations")))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision(config: Config) -> str | None:
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_empty(engine: Engine) -> bool:
    """True for a database with no tables at all: a new one, safe to create."""
    with engine.connect() as connection:
        return not inspect(connection).get_table_names()


def upgrade(url: str) -> str | None:
    """Create or upgrade the schema to the newest revision; returns that revision.

    The whole upgrade runs in one transaction, so a failed migration leaves
    the database as it was (SQLite DDL is transactional with our BEGIN).
    Foreign keys are off meanwhile: batch mode copies tables. Each migration
    that runs is logged as one line; a database already at the newest
    revision logs nothing.
    """
    engine = create_db_engine(url, foreign_keys=False)
    config = alembic_config(url)
    try:
        with engine.begin() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            script = ScriptDirectory.from_config(config)
            for step in reversed(list(script.iterate_revisions("head", current or "base"))):
                log.info(
                    "upgrading the database schema: %s -> %s (%s)",
                    step.down_revision or "none",
                    step.revision,
                    step.doc,
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        return current_revision(engine)
    finally:
        engine.dispose()


def check_schema(url: str, *, create_if_empty: bool) -> None:
    """Refuse a database behind (or ahead of) this chatd; create an empty one if asked."""
    if not create_if_empty and is_sqlite(url):
        path = _sqlite_path(url)
        if path is not None and not path.exists():
            raise SchemaError(f"there is no database at {path}: run `chatd init-db` first")
    engine = create_db_engine(url)
    try:
        empty = is_empty(engine)
        current = None if empty else current_revision(engine)
    finally:
        engine.dispose()
    if empty and create_if_empty:
        upgrade(url)
        return
    head = head_revision(alembic_config(url))
    if current != head:
        raise SchemaError(
            f"the database is at schema revision {current or 'none'}, this chatd needs {head}: "
            "run `chatd init-db` to upgrade it"
        )


def backup_sqlite(url: str, destination: Path) -> None:
    """A consistent copy of a live SQLite database through SQLite's online backup API.

    Written beside `destination` and renamed into place, so a failed backup
    never leaves a half-written file under the name asked for.
    """
    if not is_sqlite(url):
        raise SchemaError("chatd backup copies SQLite databases; use pg_dump for PostgreSQL")
    check_schema(url, create_if_empty=False)
    temporary = destination.with_name(f".{destination.name}.partial")
    engine = create_db_engine(url)
    try:
        raw = engine.raw_connection()
        try:
            # why: a crashed backup's leftover may be anything, of any mode.
            temporary.unlink(missing_ok=True)
            create_private_file(temporary)
            target = sqlite3.connect(temporary)
            try:
                driver = raw.driver_connection
                assert isinstance(driver, sqlite3.Connection)
                driver.backup(target)
            finally:
                target.close()
        finally:
            raw.close()
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)
        engine.dispose()
