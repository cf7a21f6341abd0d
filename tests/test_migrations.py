"""Migrations own the schema: they match the models, round-trip, and ship in the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from alembic import command
from msgspec import UNSET
from sqlalchemy import event, inspect
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateIndex

from chatd.db import alembic_config, create_db_engine, current_revision, head_revision, upgrade
from chatd.models import Base

ROOT = Path(__file__).resolve().parents[1]


def tables(url: str) -> set[str]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def test_migrations_match_the_models(db_url):
    command.check(alembic_config(db_url))  # raises when autogenerate finds a difference


def index_sql(url: str) -> dict[str, str]:
    """CREATE INDEX statements as SQLite stored them, by index name (explicit indexes only)."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            ).all()
    finally:
        engine.dispose()
    return {name: " ".join(sql.split()) for name, sql in rows}


def test_indexes_match_the_models_including_their_where(tmp_path):
    # why: alembic's autogenerate compares an index's columns, not its WHERE clause.
    url = f"sqlite:///{tmp_path / 'where.db'}"
    upgrade(url)
    dialect = sqlite.dialect()
    expected = {}
    for table in Base.metadata.sorted_tables:
        for index in table.indexes:
            sql = str(CreateIndex(index).compile(dialect=dialect))
            expected[index.name] = " ".join(sql.split())
            where = index.dialect_options["sqlite"]["where"]
            assert str(index.dialect_options["postgresql"]["where"]) == str(where), index.name
    assert index_sql(url) == expected


def test_message_indexes_skip_nulls_and_the_lookups_still_use_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'partial.db'}"
    upgrade(url)
    stored = index_sql(url)
    assert stored["ix_messages_dm_pair_id"].endswith(" WHERE dm_pair IS NOT NULL")
    assert stored["ix_messages_file_id"].endswith(" WHERE file_id IS NOT NULL")
    assert " WHERE " not in stored["ix_messages_room_id_id"]

    from chatd.records import UserRecord
    from chatd.store import open_store

    store = open_store(url)
    statements: list[tuple[str, object]] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _record(_conn, _cursor, statement, parameters, _context, _many):
        statements.append((statement, parameters))

    alice, bob = UserRecord(1, "alice", "x", False), UserRecord(2, "bob", "x", False)
    try:
        assert store.conversation_page(alice, bob, None, 50) == []
        assert store.conversation_page(bob, alice, 100, 50) == []
        assert store.file_access(1) is None
        assert store.inbox_page(alice, None, 50) == []
        assert store.inbox_page(alice, None, 50, after=10) == []
        event.remove(store.engine, "before_cursor_execute", _record)
        with store.engine.connect() as connection:
            partial = {
                row[1]
                for row in connection.exec_driver_sql("PRAGMA index_list(messages)")
                if row[4]
            }
            plans = [
                " / ".join(
                    row[3]
                    for row in connection.exec_driver_sql(
                        f"EXPLAIN QUERY PLAN {statement}", parameters
                    )
                )
                for statement, parameters in statements
                if statement.lstrip().upper().startswith("SELECT")
            ]
    finally:
        store.close()
    assert partial == {
        "ix_messages_dm_pair_id",
        "ix_messages_file_id",
        "ix_messages_dm_recipient_id",
        "ix_messages_dm_sender_id",
        "ix_messages_position",
        "ix_messages_room_id_deleted",
        "ix_messages_room_id_imported",
    }
    assert len(plans) == 5, plans
    for plan in plans[:2]:
        assert "SEARCH messages USING INDEX ix_messages_dm_pair_id (dm_pair=?" in plan, plan
    assert "SEARCH messages USING INDEX ix_messages_file_id (file_id=?)" in plans[2], plans
    for plan in plans[3:]:
        assert "INDEX ix_messages_dm_recipient_id (recipient_id=?" in plan, plan
        assert "INDEX ix_messages_dm_sender_id (sender_id=?" in plan, plan

    command.downgrade(alembic_config(url), "0003")
    assert "ix_messages_dm_sender_id" not in index_sql(url)
    command.downgrade(alembic_config(url), "0002")
    full = index_sql(url)
    assert full["ix_messages_dm_pair_id"].endswith("ON messages (dm_pair, id)")
    assert full["ix_messages_file_id"].endswith("ON messages (file_id)")
    upgrade(url)
    assert index_sql(url) == stored


def test_upgrade_downgrade_upgrade(db_url):
    config = alembic_config(db_url)
    assert upgrade(db_url) == head_revision(config)
    assert {"users", "rooms", "memberships", "messages"} <= tables(db_url)
    command.downgrade(config, "base")
    assert tables(db_url) <= {"alembic_version"}
    upgrade(db_url)
    engine = create_db_engine(db_url)
    try:
        assert current_revision(engine) == head_revision(config)
    finally:
        engine.dispose()


@pytest.mark.timeout(180)
def test_wheel_ships_the_migrations_and_init_db_works_from_anywhere(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        timeout=150,
        capture_output=True,
    )
    (wheel,) = wheels.glob("chatd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "chatd/migrations/env.py" in names
    assert "chatd/migrations/script.py.mako" in names
    assert any(n.startswith("chatd/migrations/versions/0001") for n in names)
    fresh = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(fresh)], check=True, timeout=120)
    pip = [str(fresh / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    subprocess.run([*pip, str(wheel)], check=True, timeout=120, capture_output=True)
    # why: the fresh venv borrows the dependencies (not chatd) from the running one, offline.
    fresh_site = next((fresh / "lib").glob("python3*/site-packages"))
    (fresh_site / "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [str(fresh / "bin" / "chatd"), "init-db"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"revision {head_revision(alembic_config('sqlite://'))}" in result.stdout
    assert (tmp_path / "data" / "chatd" / "chatd.db").exists()
    where = subprocess.run(
        [str(fresh / "bin" / "python"), "-c", "import chatd.migrations as m; print(m.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.stdout.startswith(str(fresh_site)), where


def test_upgrade_keeps_the_data_of_an_older_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = alembic_config(url)
    engine = create_db_engine(url, foreign_keys=False)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO users (id, username, username_key, password_hash, disabled,"
                " created_ms) VALUES (1, 'Alice', 'alice', 'x', 0, 0), (2, 'Bob', 'bob', 'x', 0, 0)"
            )
            connection.exec_driver_sql(
                "INSERT INTO rooms (id, name, topic, created_ms) VALUES (1, 'general', 't', 0)"
            )
            connection.exec_driver_sql(
                "INSERT INTO messages (id, room_id, sender_id, author, text, ts_ms)"
                " VALUES (7, 1, 1, 'Alice', 'from before', 5)"
            )
            connection.exec_driver_sql(
                "INSERT INTO messages (id, sender_id, author, recipient_id, dm_pair, text, ts_ms)"
                " VALUES (8, 2, 'Bob', 1, '1:2', 'direct, from before', 6)"
            )
    finally:
        engine.dispose()
    del config.attributes["connection"]
    upgrade(url)
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            positions = connection.exec_driver_sql(
                "SELECT id, position FROM messages ORDER BY id"
            ).all()
            head = connection.exec_driver_sql("SELECT position FROM log_head").scalar_one()
    finally:
        engine.dispose()
    assert [tuple(row) for row in positions] == [(7, 1), (8, 2)] and head == 2
    from chatd.records import RoomRecord, UserRecord
    from chatd.store import open_store

    store = open_store(url)
    try:
        (message,) = store.room_page(RoomRecord(1, "general", "t"), None, 10)
        (direct,) = store.conversation_page(
            UserRecord(1, "Alice", "x", False), UserRecord(2, "Bob", "x", False), None, 10
        )
    finally:
        store.close()
    assert (message.id, message.user, message.text, message.file) == (
        7,
        "Alice",
        "from before",
        UNSET,
    )
    assert (direct.id, direct.user, direct.to, direct.text) == (
        8,
        "Bob",
        "Alice",
        "direct, from before",
    )


def test_upgrade_numbers_the_messages_of_each_room_and_unread_counts_from_them(db_url):
    config = alembic_config(db_url)
    engine = create_db_engine(db_url, foreign_keys=False)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0007")  # db_url is at the newest revision
        with engine.begin() as connection:
            run = connection.exec_driver_sql
            run(
                "INSERT INTO users (id, username, username_key, password_hash, disabled,"
                " created_ms) VALUES (1, 'alice', 'alice', 'x', FALSE, 0),"
                " (2, 'bob', 'bob', 'x', FALSE, 0)"
            )
            run(
                "INSERT INTO rooms (id, name, topic, created_ms) VALUES"
                " (1, 'general', '', 0), (2, 'other', '', 0), (3, 'empty', '', 0)"
            )
            run(
                "INSERT INTO memberships (user_id, room_id, joined_ms) VALUES"
                " (1, 1, 0), (2, 1, 0), (1, 2, 0), (2, 2, 0), (2, 3, 0)"
            )
            # ids 1..9: general, other and a direct message interleaved; 5 deleted
            rows = [(1, 1), (2, 2), (3, 1), (4, None), (5, 1), (6, 2), (7, 1), (8, 1), (9, 2)]
            for message_id, room_id in rows:
                if room_id is None:
                    run(
                        "INSERT INTO messages (id, sender_id, author, recipient_id, dm_pair,"
                        f" text, ts_ms, position) VALUES ({message_id}, 1, 'alice', 2, '1:2',"
                        f" 'dm', 0, {message_id})"
                    )
                else:
                    run(
                        "INSERT INTO messages (id, room_id, sender_id, author, text, ts_ms,"
                        f" position, deleted) VALUES ({message_id}, {room_id}, 1, 'alice',"
                        f" 'x', 0, {message_id}, {'TRUE' if message_id == 5 else 'FALSE'})"
                    )
            run("UPDATE log_head SET position = 9")
            if connection.dialect.name == "postgresql":  # ids given above: the sequence follows
                run("SELECT setval(pg_get_serial_sequence('messages', 'id'), 9)")
            run(
                "INSERT INTO room_markers (user_id, room_id, last_read) VALUES"
                " (1, 1, 8), (1, 2, 9), (2, 1, 3), (2, 2, 2), (2, 3, 0)"
            )
    finally:
        engine.dispose()
    del config.attributes["connection"]
    upgrade(db_url)
    engine = create_db_engine(db_url)
    try:
        with engine.connect() as connection:
            ordinals = connection.exec_driver_sql(
                "SELECT id, room_seq FROM messages ORDER BY id"
            ).all()
            last = connection.exec_driver_sql("SELECT id, last_seq FROM rooms ORDER BY id").all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in ordinals] == [
        (1, 1),
        (2, 1),
        (3, 2),
        (4, None),
        (5, 3),
        (6, 2),
        (7, 4),
        (8, 5),
        (9, 3),
    ]
    assert [tuple(row) for row in last] == [(1, 5), (2, 3), (3, 0)]
    from chatd.records import NewMessage, UserRecord
    from chatd.store import open_store

    store = open_store(db_url)
    bob = UserRecord(2, "bob", "x", False)
    try:
        # above bob's markers: general 5 (deleted), 7, 8; other 6, 9
        assert [(r.room, r.last_read, r.unread) for r in store.unread(bob)[0]] == [
            ("empty", 0, 0),
            ("general", 3, 2),
            ("other", 2, 2),
        ]
        (sent,) = store.append_messages(
            [NewMessage(UserRecord(1, "alice", "x", False), "new", room="general")]
        )
        assert [r.unread for r in store.unread(bob)[0]] == [0, 3, 2]
    finally:
        store.close()
    engine = create_db_engine(db_url)
    try:
        with engine.connect() as connection:
            seq = connection.exec_driver_sql(
                f"SELECT room_seq FROM messages WHERE id = {sent.id}"
            ).scalar_one()
    finally:
        engine.dispose()
    assert seq == 6
    command.downgrade(config, "0007")
    assert upgrade(db_url) == head_revision(config)


def test_unread_counts_deleted_and_imported_messages_from_their_own_indexes(tmp_path):
    # why: SQLite plans without statistics; a room's deleted messages counted by walking
    # the room index would cost up to a whole room per call.
    url = f"sqlite:///{tmp_path / 'plans.db'}"
    upgrade(url)
    from chatd.store.conversations import _ROOMS_UNREAD

    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            plan = [
                row[3]
                for row in connection.exec_driver_sql(
                    f"EXPLAIN QUERY PLAN {_ROOMS_UNREAD}", {"user": 1}
                )
            ]
    finally:
        engine.dispose()
    assert any("INDEX ix_messages_room_id_deleted (room_id=? AND id>?)" in p for p in plan), plan
    assert any("INDEX ix_messages_room_id_imported (room_id=? AND sender_id=?" in p for p in plan)
    assert any("COVERING INDEX ix_messages_room_id_id (room_id=? AND id<?)" in p for p in plan)
