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
  worst case). Goal: p99 <= 5 ms.
- durable ingest through the log's own transaction (Store.append_log,
  batches of 512, synchronous=FULL) into two fresh databases, one with the
  search index and one without it (its table and triggers dropped), in
  alternating rounds. Goal: with the index no more than 15% slower.
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
import random
import sqlite3
import statistics
import time
from pathlib import Path

from chatd.db import upgrade
from chatd.records import NewDelete, NewMessage, UserRecord
from chatd.searchtext import parse_query
from chatd.store import open_store

VOCABULARY_SIZE = 20000
SEED = 16


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


def measure_unread(
    path: Path, url: str, count: int, rng: random.Random
) -> dict[str, dict[str, float]]:
    db = sqlite3.connect(path, isolation_level=None)
    reader_id = db.execute("SELECT id FROM users WHERE username = 'reader'").fetchone()[0]
    results = {}
    for label, behind in (
        ("a few dozen unread a room", (10, 60)),
        ("every room past the cap", None),
    ):
        db.execute("BEGIN")
        for (room_id,) in db.execute("SELECT DISTINCT room_id FROM messages").fetchall():
            if behind is None:
                value = 0
            else:
                skip = rng.randint(*behind)
                value = db.execute(
                    "SELECT id FROM messages WHERE room_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                    (room_id, skip),
                ).fetchone()[0]
            db.execute(
                "UPDATE room_markers SET last_read = ? WHERE user_id = ? AND room_id = ?",
                (value, reader_id, room_id),
            )
        db.execute("COMMIT")
        store = open_store(url)
        try:
            reader = store.user_by_name("reader")
            assert reader is not None
            rooms, _direct = store.unread(reader)
            samples = []
            for _ in range(count):
                began = time.perf_counter()
                store.unread(reader)
                samples.append(time.perf_counter() - began)
            results[label] = {
                **percentiles(samples),
                "rooms": len(rooms),
                "unread_total": sum(r.unread for r in rooms),
            }
        finally:
            store.close()
    db.close()
    return results


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


def measure_ingest(directory: Path, count: int, rounds: int, texts: Texts) -> dict[str, object]:
    batches_text = [texts.text() for _ in range(count)]
    figures: dict[str, list[float]] = {"with index": [], "without index": []}
    for round_number in range(rounds):
        order = [True, False] if round_number % 2 == 0 else [False, True]
        for index in order:
            url, authors = fresh_ingest_db(directory / "ingest.db", index)
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
            figures["with index" if index else "without index"].append(count / elapsed)
    with_index = statistics.median(figures["with index"])
    without = statistics.median(figures["without index"])
    ratios = [a / b for a, b in zip(figures["with index"], figures["without index"], strict=True)]
    return {
        "messages_per_round": count,
        "with_index_msgs_per_s": round(with_index),
        "without_index_msgs_per_s": round(without),
        "slowdown_percent": round((1 - with_index / without) * 100, 1),
        "per_round_ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "rounds": rounds,
    }


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
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    path = args.dir / f"conversations-{args.messages}-{args.rooms}.db"
    if not path.exists():
        print(f"building {path} ...")
        build(path, args.messages, args.rooms, random.Random(SEED))
    url = f"sqlite:///{path}"
    texts = Texts(random.Random(SEED))
    report: dict[str, object] = {"messages": args.messages, "rooms": args.rooms}
    print("search ...")
    report["search"] = measure_search(url, search_queries(texts, args.queries, rng))
    print("unread ...")
    report["unread"] = measure_unread(path, url, args.unread_calls, rng)
    print("erase after a delete ...")
    report["erase"] = measure_erase(url)
    print("ingest, with and without the index ...")
    report["ingest"] = measure_ingest(args.dir, args.ingest, args.rounds, texts)
    report["database_bytes"] = path.stat().st_size
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
