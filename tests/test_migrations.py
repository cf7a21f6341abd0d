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
from sqlalchemy import inspect

from chatd.db import alembic_config, create_db_engine, current_revision, head_revision, upgrade

ROOT = Path(__file__).resolve().parents[1]


def tables(url: str) -> set[str]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def test_migrations_match_the_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'check.db'}"
    upgrade(url)
    command.check(alembic_config(url))  # raises when autogenerate finds a difference


def test_upgrade_downgrade_upgrade(tmp_path):
    url = f"sqlite:///{tmp_path / 'trip.db'}"
    config = alembic_config(url)
    assert upgrade(url) == head_revision(config)
    assert {"users", "rooms", "memberships", "messages"} <= tables(url)
    command.downgrade(config, "base")
    assert tables(url) <= {"alembic_version"}
    upgrade(url)
    engine = create_db_engine(url)
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
    assert "revision 0002" in result.stdout
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
                " created_ms) VALUES (1, 'Alice', 'alice', 'x', 0, 0)"
            )
            connection.exec_driver_sql(
                "INSERT INTO rooms (id, name, topic, created_ms) VALUES (1, 'general', 't', 0)"
            )
            connection.exec_driver_sql(
                "INSERT INTO messages (id, room_id, sender_id, author, text, ts_ms)"
                " VALUES (7, 1, 1, 'Alice', 'from before', 5)"
            )
    finally:
        engine.dispose()
    del config.attributes["connection"]
    upgrade(url)
    from chatd.records import RoomRecord
    from chatd.store import Store

    store = Store(url)
    try:
        (message,) = store.history_before(RoomRecord(1, "general", "t"), None, 10)
    finally:
        store.close()
    assert (message.id, message.user, message.text, message.file) == (
        7,
        "Alice",
        "from before",
        None,
    )
