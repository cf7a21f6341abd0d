"""`chatd export` / `chatd import` end to end: real databases, in-process and as a script."""

from __future__ import annotations

import pickle
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, select, text

from chatd.cli import main
from chatd.db import create_db_engine
from chatd.names import parse_ts
from chatd.records import NewTopic
from chatd.store import open_store
from chatd.transcript import (
    Transcript,
    TranscriptMessage,
    dumps_transcript,
    loads_transcript,
    write_atomic,
)

pytestmark = pytest.mark.timeout(30)

T0 = parse_ts("2024-03-01T12:00:00.000Z")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv), {})
    out, err = capsys.readouterr()
    return status, out, err


def query(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """The rows of one query, on either backend."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]
    finally:
        engine.dispose()


def rows(url: str, room: str) -> list[tuple[str, int, str, int | None]]:
    """(author, ts_ms, text, sender_id) of a room's messages in id order."""
    return query(
        url,
        "SELECT author, ts_ms, text, sender_id FROM messages"
        " JOIN rooms ON rooms.id = messages.room_id WHERE rooms.name = :room ORDER BY messages.id",
        room=room,
    )


def db_dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in key order: what "the database is unchanged" compares."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            tables = MetaData()
            tables.reflect(connection)
            return {
                name: [
                    tuple(row)
                    for row in connection.execute(
                        select(table).order_by(*table.primary_key.columns)
                    )
                ]
                for name, table in tables.tables.items()
            }
    finally:
        engine.dispose()


def write_transcript(path: Path, room: str, messages: list[tuple[str, int, str]]) -> Path:
    records = tuple(
        TranscriptMessage(i, user, text, ts) for i, (user, ts, text) in enumerate(messages, 1)
    )
    write_atomic(path, dumps_transcript(Transcript(room, "imported topic", T0, records)))
    return path


@pytest.fixture
def live_db(db_url: str) -> str:
    """A room with a topic, two authors, repeats, tabs, newlines and non-ASCII text."""
    store = open_store(db_url)
    try:
        alice = store.create_user("alice", "hash")
        bob = store.create_user("Bob", "hash")
        room, _ = store.join(alice, "general")
        store.join(bob, "general")
        store.append_log([NewTopic(alice, "general", "welcome to #general")])
        for author, text in [
            (alice, "hello"),
            (bob, "hi alice\n\tindented"),
            (alice, "héllo wörld 😀"),
            (alice, "hello"),
            (bob, "ok"),
            (bob, "ok"),
        ]:
            store.append_message(author, text, room=room.name)
        store.append_message(alice, "a direct message", recipient=bob)
    finally:
        store.close()
    return db_url


def test_round_trip_into_a_fresh_database_under_a_new_name(
    live_db: str,
    new_db_url: Callable[[], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = tmp_path / "general.pkl"
    status, out, _ = run(capsys, "export", "--room", "#General", str(first), "--db", live_db)
    assert status == 0
    assert out == f"exported 6 messages of #general to {first}\n"

    other = new_db_url()
    status, out, err = run(capsys, "import", str(first), "--room", "archive", "--db", other)
    assert (status, err) == (0, "")
    assert out == "imported 6 messages into #archive, 0 already there\n"
    assert [r[:3] for r in rows(other, "archive")] == [r[:3] for r in rows(live_db, "general")]
    assert all(sender is None for *_, sender in rows(other, "archive"))  # no account created
    assert query(other, "SELECT count(*) FROM users") == [(0,)]

    second = tmp_path / "archive.pkl"
    assert run(capsys, "export", "--room", "archive", str(second), "--db", other)[0] == 0
    original = loads_transcript(first.read_bytes())
    again = loads_transcript(second.read_bytes())
    assert (
        (again.room, again.topic)
        == ("archive", original.topic)
        == ("archive", "welcome to #general")
    )
    strip = [(m.user, m.ts_ms, m.text, m.file) for m in original.messages]
    assert [(m.user, m.ts_ms, m.text, m.file) for m in again.messages] == strip
    assert [m.user for m in original.messages] == ["alice", "Bob", "alice", "alice", "Bob", "Bob"]


def test_import_is_idempotent_and_keeps_repeated_messages(
    live_db: str,
    new_db_url: Callable[[], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "t.pkl"
    assert run(capsys, "export", "--room", "general", str(path), "--db", live_db)[0] == 0
    before = db_dump(live_db)
    status, out, _ = run(capsys, "import", str(path), "--db", live_db)
    assert (status, out) == (0, "imported 0 messages into #general, 6 already there\n")
    assert db_dump(live_db) == before

    copy = new_db_url()
    assert run(capsys, "import", str(path), "--db", copy)[1].startswith("imported 6 messages")
    once = db_dump(copy)
    assert run(capsys, "import", str(path), "--db", copy)[1].endswith(", 6 already there\n")
    assert db_dump(copy) == once


def test_import_adds_only_what_is_missing_and_links_accounts(
    live_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = rows(live_db, "general")
    path = write_transcript(
        tmp_path / "t.pkl",
        "general",
        [
            ("alice", existing[0][1], "hello"),  # already there
            ("ALICE", existing[0][1], "hello"),  # again: a repeat beyond what is stored
            ("ghost", T0, "from an author without an account"),
            ("bob", T0 + 1, "bob in lower case"),
        ],
    )
    status, out, _ = run(capsys, "import", str(path), "--db", live_db)
    assert (status, out) == (0, "imported 3 messages into #general, 1 already there\n")
    added = rows(live_db, "general")[len(existing) :]
    ids = dict(query(live_db, "SELECT username, id FROM users"))
    assert added == [
        ("ALICE", existing[0][1], "hello", ids["alice"]),
        ("ghost", T0, "from an author without an account", None),
        ("bob", T0 + 1, "bob in lower case", ids["Bob"]),
    ]


def test_since_and_until_export_a_half_open_slice(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    minute = 60_000
    path = write_transcript(
        tmp_path / "t.pkl",
        "slices",
        [("alice", T0 + n * minute, f"minute {n}") for n in (3, 0, 2, 1, 4)],
    )
    assert run(capsys, "import", str(path), "--db", db_url)[0] == 0
    out_path = tmp_path / "slice.pkl"
    status, _, _ = run(
        capsys, "export", "--room", "slices", str(out_path), "--db", db_url,
        "--since", "2024-03-01T12:01:00Z", "--until", "2024-03-01T13:03:00+01:00",
    )  # fmt: skip
    assert status == 0
    texts = [m.text for m in loads_transcript(out_path.read_bytes()).messages]
    assert texts == ["minute 2", "minute 1"]  # stored order, 12:01 <= ts < 12:03
    run(
        capsys,
        "export",
        "--room",
        "slices",
        str(out_path),
        "--db",
        db_url,
        "--since",
        "2024-03-01T12:03:00Z",
    )
    assert [m.text for m in loads_transcript(out_path.read_bytes()).messages] == [
        "minute 3",
        "minute 4",
    ]


@pytest.mark.parametrize(
    ("argv", "status", "expected"),
    [
        (["export", "--room", "nope", "X"], 1, "chatd: there is no room #nope\n"),
        (["export", "--room", "bad room", "X"], 2, "chatd: --room 'bad room': a room name is"),
        (
            ["export", "--room", "general", "X", "--since", "soon"],
            2,
            "chatd: --since 'soon' is not",
        ),
        (["import", "X", "--room", "a/b"], 2, "chatd: --room 'a/b': a room name is"),
        (["import", "X", "--max-bytes", "0"], 2, "chatd: --max-bytes must be at least 1\n"),
        (["import", "missing.pkl"], 1, "chatd: [Errno 2] No such file or directory"),
    ],
)
def test_mistakes_are_one_line_errors(
    argv: list[str],
    status: int,
    expected: str,
    live_db: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    before = db_dump(live_db)
    result, out, err = run(capsys, *argv, "--db", live_db)
    assert (result, out) == (status, "")
    assert err.startswith(expected) and err.count("\n") == 1, err
    assert db_dump(live_db) == before
    assert not (tmp_path / "X").exists()


def test_a_database_behind_the_schema_is_refused(
    live_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.pkl"
    assert run(capsys, "export", "--room", "general", str(path), "--db", live_db)[0] == 0
    old = f"sqlite:///{tmp_path / 'old.db'}"
    sqlite3.connect(tmp_path / "old.db").execute("CREATE TABLE legacy (x)").connection.close()
    for argv in (["import", str(path)], ["export", "--room", "general", str(tmp_path / "o")]):
        status, out, err = run(capsys, *argv, "--db", old)
        assert (status, out) == (1, "")
        assert "run `chatd init-db`" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
    with sqlite3.connect(tmp_path / "old.db") as connection:
        dump = list(connection.iterdump())
    assert dump == ["BEGIN TRANSACTION;", "CREATE TABLE legacy (x);", "COMMIT;"]


def test_import_while_the_server_runs_is_seen_on_join(
    server, connect, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = connect("alice")
    alice.ok("join", room="general")
    live = alice.ok("send", room="general", text="sent live")["message"]
    path = write_transcript(
        tmp_path / "t.pkl",
        "general",
        [("ghost", T0, "from the archive"), ("alice", T0 + 1, "alice, long ago")],
    )
    assert run(capsys, "import", str(path), "--db", db_url)[0] == 0
    assert run(capsys, "import", str(path), "--room", "fresh", "--db", db_url)[0] == 0

    bob = connect("bob")
    # the server keeps each room's recent history; it notices the import within seconds
    deadline = time.monotonic() + 15
    while len(history := bob.ok("join", room="general")["history"]) < 3:
        assert time.monotonic() < deadline, history
        time.sleep(0.1)
    assert [(m["user"], m["text"]) for m in history] == [
        ("alice", "sent live"), ("ghost", "from the archive"), ("alice", "alice, long ago"),
    ]  # fmt: skip
    assert history[1]["ts"] == "2024-03-01T12:00:00.000Z" and history[1]["id"] > live["id"]
    assert alice.ok("history", room="general")["messages"] == history

    # a room the import created while the server ran: unknown to the hub until joined
    assert alice.ok("who", room="fresh")["members"] == []
    joined = bob.ok("join", room="fresh")
    assert joined["topic"] == "imported topic"
    assert [m["text"] for m in joined["history"]] == ["from the archive", "alice, long ago"]
    assert joined["members"] == ["bob"]
    sent = bob.ok("send", room="fresh", text="new here")["message"]
    assert sent["id"] > joined["history"][-1]["id"]
    rooms = {r["room"]: r for r in alice.ok("rooms")["rooms"]}
    assert rooms["fresh"]["messages"] == 3


def test_a_message_sent_right_after_an_import_does_not_hide_it_from_join(
    server, connect, db_url: str
) -> None:
    alice = connect("alice")
    alice.ok("join", room="general")
    alice.ok("send", room="general", text="live 1")
    bob = connect("bob")
    assert len(bob.ok("join", room="general")["history"]) == 1  # the server keeps it now
    other = open_store(db_url)
    try:
        other.import_messages("general", "", [("ghost", T0, "archived")])
    finally:
        other.close()
    alice.ok("send", room="general", text="live 2")  # before housekeeping looks
    joined = [m["text"] for m in bob.ok("join", room="general")["history"]]
    assert joined == ["live 1", "archived", "live 2"]
    assert (
        bob.ok("history", room="general")["messages"] == bob.ok("join", room="general")["history"]
    )


def test_installed_script_exports_to_stdout_and_imports_from_stdin(
    live_db: str, new_db_url: Callable[[], str]
) -> None:
    script = str(Path(sys.executable).parent / "chatd")
    exported = subprocess.run(
        [script, "export", "--room", "general", "-", "--db", live_db],
        capture_output=True, timeout=20, check=True,
    )  # fmt: skip
    assert exported.stderr == b"exported 6 messages of #general to -\n"
    assert pickle.loads(exported.stdout)["format"] == "chatd.transcript"
    target = new_db_url()
    imported = subprocess.run(
        [script, "import", "-", "--db", target],
        input=exported.stdout, capture_output=True, timeout=20, check=True,
    )  # fmt: skip
    assert imported.stdout == b"imported 6 messages into #general, 0 already there\n"
    assert [r[:3] for r in rows(target, "general")] == [r[:3] for r in rows(live_db, "general")]
