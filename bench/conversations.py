"""Conversation state at scale (issue 16): search, unread and ingest with the search index.

    .venv/bin/python -m bench.conversations                 # 1,000,000 messages, 200 rooms
    .venv/bin/python -m bench.conversations --messages 100000 --ingest 20000   # a quick look

Builds (once, kept in --dir) an SQLite database of --messages stored
messages in --rooms rooms, with a reader who is a member of every room, then
measures, in one run:

- `search` for the reader (every room and their direct messages), newest 20,
  over a mix of queries: common and rare words, two words, word beginnings,
  phrases; p50 and p99 per kind and overall. Goal: p99 <= 20 ms.
- `unread` for the reader in all the rooms: with a few dozen unread messages
  a room (a day's reading), and with every room past the 1000 cap (the
  worst case). Goal: p99 <= 5 ms. Side by side with it, in turns, the
  statement `unread` used before migration 0008 (a walk of the index above
  each marker, up to 1000), which must give the same answers.
- durable ingest through the log's own transaction (Store.append_log,
  batches of 512, synchronous=FULL) into two fresh databases, one with the
  search index and one without it (its table and triggers dropped), in
  alternating rounds. Goal: with the index no more than 15% slower. With
  --before DIR (a copy of chatd's tree before the room ordinals, e.g.
  `git archive 4810673 chatd migrations | tar -x -C DIR`), a third database
  in each round is written by that tree's chatd: what the ordinals cost.
  Each round's databases are written by child processes, one per database.
- the time one delete's erasure takes at this size (the FTS5 merge and the
  WAL truncation, chatd/store/sqlite.py), which the writer pays after a batch
  with deletes.

Timings are of the store's methods in this process, without sockets: what the
index and the queries cost, not the server around them. Everything is local;
every loop is bounded.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

from alembic import command
from sqlalchemy import text

from chatd.db import alembic_config, create_db_engine, upgrade
from chatd.records import NewDelete, NewMessage, UserRecord
from chatd.replies import DirectUnread, RoomUnread
from chatd.searchtext import parse_query
from chatd.store import Store, open_store
from chatd.store.conversations import _DIRECT_UNREAD

VOCABULARY_SIZE = 20000
SEED = 16
HERE = Path(__file__).resolve().parents[1]
# `unread`'s statement for rooms before migration 0008, as it was (chatd/store/conversations.py)
ROOMS_UNREAD_BEFORE = """
SELECT r.name, COALESCE(k.last_read, 0),
    COALESCE((SELECT MAX(m.id) FROM messages m WHERE m.room_id = r.id), 0),
    (SELECT COUNT(*) FROM (SELECT 1 FROM messages m
        WHERE m.room_id = r.id AND m.id > COALESCE(k.last_read, 0)
        AND (m.sender_id IS NULL OR m.sender_id <> :user) AND NOT m.deleted
        LIMIT 1000) AS u),
    (SELECT COUNT(*) FROM (SELECT 1 FROM room_mentions x
        WHERE x.user_id = :user AND x.room_id = r.id AND x.message_id > COALESCE(k.last_read, 0)
        LIMIT 1000) AS n)
FROM memberships ms JOIN rooms r ON r.id = ms.room_id
LEFT JOIN room_markers k ON k.user_id = ms.user_id AND k.room_id = ms.room_id
WHERE ms.user_id = :user
"""


def _vocabulary(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < VOCABULARY_SIZE:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 10))))
    return sorted(words)


class Texts:
    """Chat-like texts: 3-15 words drawn with a Zipf-like skew, a mention now and then."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.words = _vocabulary(rng)
        weights = [1 / (rank + 1) for rank in range(len(self.words))]
        self.cumulative = list(itertools.accumulate(weights))

    def text(self) -> str:
        count = self.rng.randint(3, 15)
        words = self.rng.choices(self.words, cum_weights=self.cumulative, k=count)
        if self.rng.random() < 0.02:
            words.append("@reader")
        return " ".join(words)


def build(path: Path, messages: int, rooms: int, rng: random.Random) -> None:
    """The database, made fast (bulk inserts, no fsync), indexed as the writer indexes."""
    url = f"sqlite:///{path}"
    upgrade(url)
    store = open_store(url)
    try:
        reader = store.create_user("reader", "x")
        authors = [store.create_user(f"user{n}", "x") for n in range(50)]
        for room in range(rooms):
            store.join(reader, f"room{room}")
            for author in authors[room % 5 :: 5]:
                store.join(author, f"room{room}")
    finally:
        store.close()
    texts = Texts(rng)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    room_ids = [row[0] for row in db.execute("SELECT id FROM rooms ORDER BY id")]
    author_rows = db.execute("SELECT id, username FROM users WHERE username <> 'reader'")
    authors_by_id = list(author_rows)
    head = db.execute("SELECT position FROM log_head").fetchone()[0]
    start = time.monotonic()
    step = 50000
    for first in range(0, messages, step):
        rows = []
        for n in range(first, min(first + step, messages)):
            room_index = n % rooms
            author_id, author = authors_by_id[(room_index % 5) + 5 * rng.randrange(10)]
            text = texts.text()
            mentions = "reader" if text.endswith("@reader") else None
            rows.append(
                (
                    room_ids[room_index],
                    author_id,
                    author,
                    text,
                    1_700_000_000_000 + n,
                    head + n + 1,
                    mentions,
                )
            )
        db.execute("BEGIN")
        newest = db.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0]
        db.executemany(
            "INSERT INTO messages (room_id, sender_id, author, text, ts_ms, position, mentions) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.execute(
            "INSERT INTO room_mentions (user_id, room_id, message_id) "
            "SELECT (SELECT id FROM users WHERE username = 'reader'), room_id, id "
            "FROM messages WHERE id > ? AND mentions IS NOT NULL",
            (newest,),
        )
        db.execute(
            "INSERT INTO messages_fts (rowid, text) SELECT id, text FROM messages WHERE id > ?",
            (newest,),
        )
        db.execute("COMMIT")
        print(f"  built {min(first + step, messages)} messages, {time.monotonic() - start:.0f} s")
    db.execute("UPDATE log_head SET position = ?", (head + messages,))
    # the rooms' ordinals, as migration 0008 numbers existing messages
    db.execute(
        "UPDATE messages SET room_seq = numbered.n FROM "
        "(SELECT id, ROW_NUMBER() OVER (PARTITION BY room_id ORDER BY id) AS n "
        "FROM messages WHERE room_id IS NOT NULL) AS numbered WHERE messages.id = numbered.id"
    )
    db.execute(
        "UPDATE rooms SET last_seq = COALESCE("
        "(SELECT MAX(m.room_seq) FROM messages m WHERE m.room_id = rooms.id), 0)"
    )
    db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('optimize')")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "n": len(ordered),
    }


def search_queries(texts: Texts, count: int, rng: random.Random) -> dict[str, list[str]]:
    common = texts.words[:50]
    rare = texts.words[-5000:]
    kinds: dict[str, list[str]] = {
        "common word": [rng.choice(common) for _ in range(count)],
        "rare word": [rng.choice(rare) for _ in range(count)],
        "two words": [
            f"{rng.choice(common)} {rng.choice(texts.words[:2000])}" for _ in range(count)
        ],
        "word beginning": [rng.choice(texts.words[:2000])[:3] for _ in range(count)],
        "phrase": [],
    }
    for _ in range(count):
        words = texts.text().split()
        start = rng.randrange(max(1, len(words) - 1))
        kinds["phrase"].append('"' + " ".join(words[start : start + 2]) + '"')
    return kinds


def measure_search(url: str, kinds: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    store = open_store(url)
    try:
        reader = store.user_by_name("reader")
        assert reader is not None
        for query in kinds["common word"][:20]:  # warm the cache
            store.search(reader, parse_query(query), limit=20)
        results: dict[str, dict[str, float]] = {}
        everything: list[float] = []
        for kind, queries in kinds.items():
            samples = []
            for query in queries:
                began = time.perf_counter()
                store.search(reader, parse_query(query), limit=20)
                samples.append(time.perf_counter() - began)
            everything += samples
            results[kind] = percentiles(samples)
        results["all"] = percentiles(everything)
        return results
    finally:
        store.close()


def schema_before(path: Path) -> tuple[Path, dict[str, float]]:
    """A copy of the database taken back to migration 0007 (the schema `unread` walked),
    and how long that took; the copy is then upgraded again, as an operator's would be,
    and its ordinals checked against the built ones."""
    copies = [path.with_name(f"{path.stem}-{name}.db") for name in ("before", "again")]
    for copy in copies:
        copy.unlink(missing_ok=True)
        shutil.copyfile(path, copy)
    figures = {}
    engine = create_db_engine(f"sqlite:///{copies[0]}", foreign_keys=False)
    try:
        config = alembic_config(f"sqlite:///{copies[0]}")
        began = time.perf_counter()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0007")
        figures["downgrade_to_0007_s"] = round(time.perf_counter() - began, 1)
    finally:
        engine.dispose()
    shutil.copyfile(copies[0], copies[1])
    began = time.perf_counter()
    upgrade(f"sqlite:///{copies[1]}")
    figures["upgrade_from_0007_s"] = round(time.perf_counter() - began, 1)
    db = sqlite3.connect(copies[1])
    db.execute("ATTACH ? AS built", (str(path),))
    figures["ordinals_differing"] = (
        db.execute(
            "SELECT COUNT(*) FROM messages m JOIN built.messages b ON b.id = m.id "
            "WHERE m.room_seq IS NOT b.room_seq"
        ).fetchone()[0]
        + db.execute(
            "SELECT COUNT(*) FROM rooms r JOIN built.rooms b ON b.id = r.id "
            "WHERE r.last_seq <> b.last_seq"
        ).fetchone()[0]
    )
    db.close()
    copies[1].unlink()
    return copies[0], figures


def measure_unread(
    path: Path, before_path: Path, count: int, rng: random.Random
) -> dict[str, dict[str, object]]:
    """`unread` now and as it was (its statement on the schema before 0008), in turns."""
    dbs = [sqlite3.connect(p, isolation_level=None) for p in (path, before_path)]
    db = dbs[0]
    reader_id = db.execute("SELECT id FROM users WHERE username = 'reader'").fetchone()[0]
    results: dict[str, dict[str, object]] = {}
    for label, behind in (
        ("a few dozen unread a room", (10, 60)),
        ("every room past the cap", None),
    ):
        markers = []
        # the built rooms (a run before left its "erasing" room behind)
        built = "SELECT id FROM rooms WHERE name LIKE 'room%'"
        for (room_id,) in db.execute(built).fetchall():
            if behind is None:
                value = 0
            else:
                skip = rng.randint(*behind)
                value = db.execute(
                    "SELECT id FROM messages WHERE room_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                    (room_id, skip),
                ).fetchone()[0]
            markers.append((value, reader_id, room_id))
        for each in dbs:
            each.execute("BEGIN")
            each.executemany(
                "UPDATE room_markers SET last_read = ? WHERE user_id = ? AND room_id = ?",
                markers,
            )
            each.execute("COMMIT")
        store = open_store(f"sqlite:///{path}")
        old = open_store(f"sqlite:///{before_path}")
        try:
            reader = store.user_by_name("reader")
            assert reader is not None
            rooms, _direct = store.unread(reader)
            assert unread_before(old, reader) == store.unread(reader), label
            samples: dict[str, list[float]] = {"after": [], "before": []}
            for _ in range(count):
                began = time.perf_counter()
                store.unread(reader)
                samples["after"].append(time.perf_counter() - began)
                began = time.perf_counter()
                unread_before(old, reader)
                samples["before"].append(time.perf_counter() - began)
            results[label] = {
                "after": percentiles(samples["after"]),
                "before": percentiles(samples["before"]),
                "rooms": len(rooms),
                "unread_total": sum(r.unread for r in rooms),
                "mentions_total": sum(r.mentions for r in rooms),
            }
        finally:
            store.close()
            old.close()
    for each in dbs:
        each.close()
    return results


def unread_before(store: Store, user: UserRecord) -> tuple[list[RoomUnread], list[DirectUnread]]:
    """ConversationStore.unread as it was before migration 0008: rooms counted by walking."""
    with store._read() as connection:
        rooms = connection.execute(text(ROOMS_UNREAD_BEFORE), {"user": user.id}).all()
        direct = connection.execute(text(_DIRECT_UNREAD), {"user": user.id}).all()
    return (
        sorted((RoomUnread(*row) for row in rooms), key=lambda entry: entry.room),
        [DirectUnread(name, read, last, count, count) for name, read, last, count in direct],
    )


def fresh_ingest_db(path: Path, index: bool) -> tuple[str, list[UserRecord]]:
    path.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    upgrade(url)
    if not index:
        db = sqlite3.connect(path, isolation_level=None)
        for name in ("update", "delete"):
            db.execute(f"DROP TRIGGER messages_fts_{name}")
        db.execute("DROP TABLE messages_fts")
        # what the writer adds to its transaction, kept so both sides run the same statement
        db.execute("CREATE TABLE messages_fts (rowid INTEGER, text TEXT)")
        db.close()
    store = open_store(url)
    try:
        authors = [store.create_user(f"writer{n}", "x") for n in range(50)]
        for n, author in enumerate(authors):
            store.join(author, f"room{n % 10}")
    finally:
        store.close()
    return url, authors


def ingest_once(directory: Path, count: int, index: bool) -> float:
    """One round's database (in a child process): messages a second, durable."""
    texts = Texts(random.Random(SEED))
    batches_text = [texts.text() for _ in range(count)]
    url, authors = fresh_ingest_db(directory / f"ingest-{os.getpid()}.db", index)
    store = open_store(url)
    try:
        began = time.perf_counter()
        for first in range(0, count, 512):
            batch = [
                NewMessage(authors[n % 50], batches_text[n], room=f"room{n % 50 % 10}")
                for n in range(first, min(first + 512, count))
            ]
            store.append_log(batch)
        elapsed = time.perf_counter() - began
    finally:
        store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(directory / f"ingest-{os.getpid()}.db") + suffix).unlink(missing_ok=True)
    return count / elapsed


def _ratios(figures: dict[str, list[float]], a: str, b: str) -> dict[str, object]:
    ratios = [x / y for x, y in zip(figures[a], figures[b], strict=True)]
    median = statistics.median(figures[a]) / statistics.median(figures[b])
    return {
        "slowdown_percent": round((1 - median) * 100, 1),
        "per_round_ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
    }


def measure_ingest(
    directory: Path, count: int, rounds: int, before: Path | None
) -> dict[str, object]:
    variants = [("with index", HERE, True), ("without index", HERE, False)]
    if before is not None:
        variants.append(("before, with index", before, True))
    figures: dict[str, list[float]] = {name: [] for name, _tree, _index in variants}
    for round_number in range(rounds):
        shift = round_number % len(variants)
        for name, tree, index in variants[shift:] + variants[:shift]:
            # why: this file run as a script (-P: its directory not on the path), so
            # `chatd` is the one in `tree`
            child = subprocess.run(
                [
                    *(sys.executable, "-P", __file__),
                    *("--ingest-child", "index" if index else "plain"),
                    *("--ingest", str(count), "--dir", str(directory)),
                ],
                env={**os.environ, "PYTHONPATH": str(tree)},
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
            )
            figures[name].append(float(child.stdout.split()[-1]))
    report: dict[str, object] = {
        "messages_per_round": count,
        "rounds": rounds,
        **{f"{name}_msgs_per_s": round(statistics.median(v)) for name, v in figures.items()},
        "index": _ratios(figures, "with index", "without index"),
    }
    if before is not None:
        report["ordinals"] = _ratios(figures, "with index", "before, with index")
    return report


def measure_erase(url: str) -> dict[str, float]:
    store = open_store(url)
    try:
        reader = store.user_by_name("reader")
        assert reader is not None
        store.join(reader, "erasing")
        (doomed,) = store.append_messages([NewMessage(reader, "doomed words", room="erasing")])
        store.append_log([NewDelete(reader, doomed.id)])
        began = time.perf_counter()
        store.erase_traces()
        return {"erase_traces_s": round(time.perf_counter() - began, 3)}
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--queries", type=int, default=200, help="queries of each kind")
    parser.add_argument("--unread-calls", type=int, default=300)
    parser.add_argument("--ingest", type=int, default=100_000, help="messages per ingest round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/chatd-bench-conversations"))
    parser.add_argument("--before", type=Path, help="chatd's tree before the room ordinals")
    parser.add_argument("--ingest-child", choices=("index", "plain"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.ingest_child:
        print(ingest_once(args.dir, args.ingest, args.ingest_child == "index"))
        return
    rng = random.Random(SEED)
    path = args.dir / f"conversations-{args.messages}-{args.rooms}.db"
    if not path.exists():
        print(f"building {path} ...")
        build(path, args.messages, args.rooms, random.Random(SEED))
    url = f"sqlite:///{path}"
    began = time.perf_counter()
    upgrade(url)  # a database built by an older chatd
    print(f"schema up to date in {time.perf_counter() - began:.1f} s")
    texts = Texts(random.Random(SEED))
    report: dict[str, object] = {"messages": args.messages, "rooms": args.rooms}
    print("search ...")
    report["search"] = measure_search(url, search_queries(texts, args.queries, rng))
    print("unread ...")
    before_path, report["migration"] = schema_before(path)
    print(f"migration: {report['migration']}")
    report["unread"] = measure_unread(path, before_path, args.unread_calls, rng)
    before_path.unlink()
    print("erase after a delete ...")
    report["erase"] = measure_erase(url)
    print("ingest, with and without the index ...")
    report["ingest"] = measure_ingest(args.dir, args.ingest, args.rounds, args.before)
    report["database_bytes"] = path.stat().st_size
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
