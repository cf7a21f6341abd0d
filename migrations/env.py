"""Alembic environment: runs migrations on the connection chatd hands over.

`chatd init-db` passes its own connection (inside one transaction) through
`config.attributes["connection"]`; the `alembic` command line gets an engine
from the URL in alembic.ini or `CHATD_DB`.
"""

from __future__ import annotations

import os
from typing import Any

from alembic import context
from sqlalchemy import Connection

from chatd.db import create_db_engine
from chatd.models import Base

config = context.config

# The full-text index is each backend's own and not in the models (migration 0006):
# SQLite's FTS5 table and its shadow tables, PostgreSQL's tsvector column and index.
SEARCH_TABLE_PREFIX = "messages_fts"
SEARCH_NAMES = frozenset({"search", "ix_messages_search"})


def _include_name(name: str | None, kind: str, _parent: Any) -> bool:
    if kind == "table" and name is not None and name.startswith(SEARCH_TABLE_PREFIX):
        return False
    return not (kind in ("column", "index") and name in SEARCH_NAMES)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        compare_type=True,
        include_name=_include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = os.environ.get("CHATD_DB") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set CHATD_DB or sqlalchemy.url to the database URL")
    engine = create_db_engine(url, foreign_keys=False)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("chatd migrations run online only")
run_migrations_online()
