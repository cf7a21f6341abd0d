"""Engines and schema versions: how chatd opens a database and keeps it migrated.

SQLite gets the settings a server needs (WAL, FULL sync, a busy timeout,
foreign keys) and real transactions: Python's sqlite3 module emits no BEGIN
for reads or DDL, so we take over BEGIN as SQLAlchemy's SQLite dialect page
documents, and writes start with BEGIN IMMEDIATE so WAL never hands a writer
SQLITE_BUSY halfway through a transaction.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url

# why: a writer waits this long for another process (an import, a backup) to finish.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# why: execution option asking the begin event for BEGIN IMMEDIATE.
WRITE_OPTION = "chatd_write"


class SchemaError(Exception):
    """The database is not at the schema this version of chatd needs."""


def default_db_url() -> str:
    """An SQLite file in the user's data directory (XDG base directory spec)."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite:///{Path(data_home) / 'chatd' / 'chatd.db'}"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _ensure_sqlite_dir(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def create_db_engine(url: str, *, foreign_keys: bool = True) -> Engine:
    """An engine for `url`; on SQLite with the pragmas and BEGIN handling above."""
    if not is_sqlite(url):
        return create_engine(url, pool_pre_ping=True)
    _ensure_sqlite_dir(url)
    engine = create_engine(url, pool_size=8, max_overflow=24)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


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
    Foreign keys are off meanwhile: batch mode copies tables.
    """
    engine = create_db_engine(url, foreign_keys=False)
    config = alembic_config(url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        return current_revision(engine)
    finally:
        engine.dispose()


def check_schema(url: str, *, create_if_empty: bool) -> None:
    """Refuse a database behind (or ahead of) this chatd; create an empty one if asked."""
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
