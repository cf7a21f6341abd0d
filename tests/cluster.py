"""Several chatd nodes for the tests: real `chatd serve` processes on one PostgreSQL and one Redis.

`Nodes` starts nodes as subprocesses (each on a free port of 127.0.0.1,
its log in the test's directory) and can kill, pause and resume them, as
the faults of issue 14 need. `Member` is a logged-in connection whose
every frame a reader thread records, so a test can send while faults
happen and check afterwards, with `check_room` and `check_dms`, that what
each member was sent is exactly what PostgreSQL holds: ids ascending,
contiguous from the member's join, none twice, every acknowledged message
stored.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from wire import ConnectionClosed, WireClient

PASSWORD = "correct horse"
# why: a node starts in about a second here (imports, migrations checked, bcrypt at 4 rounds).
# why: the installed command, as a user runs it; `python -m chatd` from the checkout
# would import the source tree, which lacks `chatd.migrations` when not installed editable.
CHATD = str(Path(sys.executable).with_name("chatd"))
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


@dataclass
class Node:
    name: str
    process: subprocess.Popen[bytes]
    log_file: Path
    port: int = 0

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9: no goodbye to anyone."""
        self.process.kill()
        self.process.wait(STOP_TIMEOUT)

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)


@dataclass
class Nodes:
    """The nodes of one test's cluster; `stop_all` at teardown."""

    db_url: str
    bus_url: str
    directory: Path
    started: list[Node] = field(default_factory=list)

    def start(self, name: str, *extra: str, env: dict[str, str] | None = None) -> Node:
        log_file = self.directory / f"node-{name}.log"
        command = [
            CHATD,
            "serve",
            "--host=127.0.0.1",
            "--port=0",
            f"--db={self.db_url}",
            f"--bus={self.bus_url}",
            f"--node={name}",
            f"--files-dir={self.directory / f'files-{name}'}",
            "--bcrypt-rounds=4",
            "--send-rate=0",
            "--login-failures=0",
            "--registrations-per-hour=0",
            "--max-connections-per-ip=0",
            *extra,
        ]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CHATD_")}
        environ.update(env or {})
        with open(log_file, "ab") as output:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=output, stderr=output, env=environ
            )
        node = Node(name, process, log_file)
        self.started.append(node)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = LISTENING.search(node.log)
            if found:
                node.port = int(found.group(1))
                return node
            if process.poll() is not None:
                raise RuntimeError(f"node {name} exited at start:\n{node.log}")
            time.sleep(0.05)
        raise RuntimeError(f"node {name} did not start in time:\n{node.log}")

    def stop_all(self) -> None:
        for node in self.started:
            node.stop()


class Member:
    """One logged-in connection; after `start_recording` a thread keeps every frame it is sent."""

    def __init__(self, node: Node, username: str, *, register: bool = True) -> None:
        self.username = username
        self.node = node
        self.client = WireClient(node.address)
        if register:
            self.client.ok("register", username=username, password=PASSWORD)
        self.login = self.client.ok("login", username=username, password=PASSWORD)
        self.start_after: dict[str, int] = {}  # room -> the last id of its join's history
        self._lock = threading.Lock()
        self.frames: list[dict[str, Any]] = []  # guarded by _lock
        self._sent: dict[int, tuple[str, Any]] = {}  # request id -> (op, room or peer)
        self._ids = itertools.count(1_000_000)
        self.closed = False
        self._reader: threading.Thread | None = None

    def join(self, room: str) -> dict[str, Any]:
        """Join before recording starts (the reply is read here)."""
        assert self._reader is None
        reply = self.client.ok("join", room=room)
        history = reply["history"]
        self.start_after[room] = history[-1]["id"] if history else 0
        return reply

    def start_recording(self) -> None:
        self.frames.extend(self.client.events)
        self.client.events.clear()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while True:
                frame = self.client.next_frame(timeout=3600)
                with self._lock:
                    self.frames.append(frame)
        except (ConnectionClosed, OSError, TimeoutError):
            self.closed = True

    def request(self, op: str, **args: Any) -> int:
        """Send a request without waiting; its reply is recorded. Returns its id."""
        rid = next(self._ids)
        self._sent[rid] = (op, args.get("room", args.get("to")))
        try:
            self.client.send_frame({"op": op, "id": rid, **args})
        except OSError:
            self.closed = True
        return rid

    def send(self, room: str, text: str) -> int:
        return self.request("send", room=room, text=text)

    def dm(self, to: str, text: str) -> int:
        return self.request("dm", to=to, text=text)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.frames)

    def reply(self, rid: int) -> dict[str, Any] | None:
        for frame in self.snapshot():
            if frame.get("id") == rid and "event" not in frame:
                return frame
        return None

    def wait_reply(self, rid: int, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.reply(rid)
            if found is not None:
                return found
            time.sleep(0.01)
        raise TimeoutError(f"no reply to {rid} for {self.username}")

    def acked_ids(self) -> list[int]:
        """Ids of this member's messages the server acknowledged (ok)."""
        return [
            frame["message"]["id"]
            for frame in self.snapshot()
            if "event" not in frame and frame.get("ok") and "message" in frame
        ]

    def room_ids(self, room: str) -> list[int]:
        """The ids of `room`'s messages as this member was sent them: events and own replies."""
        ids = []
        for frame in self.snapshot():
            if frame.get("event") == "message" and frame["room"] == room:
                ids.append(frame["id"])
            elif _own_message(frame) and frame["message"]["room"] == room:
                ids.append(frame["message"]["id"])
        return ids

    def dm_ids(self, peer: str) -> list[int]:
        """The ids of the direct messages with `peer` as this member was sent them."""
        pair = {self.username, peer}
        ids = []
        for frame in self.snapshot():
            if frame.get("event") == "dm" and {frame["user"], frame["to"]} == pair:
                ids.append(frame["id"])
            elif _own_message(frame) and frame["message"].get("to") == peer:
                ids.append(frame["message"]["id"])
        return ids

    def events(self, name: str) -> list[dict[str, Any]]:
        return [frame for frame in self.snapshot() if frame.get("event") == name]

    def close(self) -> None:
        self.client.close()


def _own_message(frame: dict[str, Any]) -> bool:
    return "event" not in frame and bool(frame.get("ok")) and "message" in frame


class Database:
    """Reads what PostgreSQL holds, for the checks."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    def room_ids(self, room: str) -> list[int]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT m.id FROM messages m JOIN rooms r ON r.id = m.room_id"
                    " WHERE r.name = :room ORDER BY m.id"
                ),
                {"room": room},
            )
            return [row[0] for row in rows]

    def dm_ids(self, one: str, other: str) -> list[int]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT m.id FROM messages m"
                    " JOIN users s ON s.id = m.sender_id JOIN users r ON r.id = m.recipient_id"
                    " WHERE (s.username = :a AND r.username = :b)"
                    " OR (s.username = :b AND r.username = :a) ORDER BY m.id"
                ),
                {"a": one, "b": other},
            )
            return [row[0] for row in rows]

    def all_ids(self) -> set[int]:
        with self.engine.connect() as connection:
            return {row[0] for row in connection.execute(text("SELECT id FROM messages"))}

    def close(self) -> None:
        self.engine.dispose()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `condition` held; AssertionError with `what` if it did not in time."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {what}")


def room_problems(members: Iterable[Member], room: str, db: Database) -> list[str]:
    """What is wrong with each member's view of `room`, against the database; [] when nothing.

    A member still connected must have every stored message after its
    join; one cut off (its node killed) a prefix of them.
    """
    stored = db.room_ids(room)
    problems = []
    for member in members:
        expected = [i for i in stored if i > member.start_after.get(room, 0)]
        got = member.room_ids(room)
        if member.closed:
            expected = expected[: len(got)]
        if got != expected:
            problems.append(
                _difference(f"{member.username}@{member.node.name} #{room}", got, expected)
            )
    return problems


def dm_problems(one: Member, other: Member, db: Database) -> list[str]:
    stored = db.dm_ids(one.username, other.username)
    problems = []
    for member, peer in ((one, other), (other, one)):
        got = member.dm_ids(peer.username)
        expected = stored[: len(got)] if member.closed else stored
        if got != expected:
            problems.append(_difference(f"{member.username} dm {peer.username}", got, expected))
    return problems


def _difference(who: str, got: list[int], expected: list[int]) -> str:
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    twice = sorted({i for i in got if got.count(i) > 1})
    inversions = [n for n in range(1, len(got)) if got[n] < got[n - 1]]
    around = got[max(0, inversions[0] - 3) : inversions[0] + 3] if inversions else []
    return (
        f"{who}: {len(got)} ids, {len(expected)} expected; missing {missing[:10]},"
        f" not stored {extra[:10]}, twice {twice[:10]}, out of order {around}"
    )


def converge(
    check: Callable[[], list[str]], timeout: float, what: str = "the members converge"
) -> float:
    """Seconds until `check` finds nothing wrong; the last problems if it never does."""
    start = time.monotonic()
    problems: list[str] = []
    while time.monotonic() - start < timeout:
        problems = check()
        if not problems:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s:\n" + "\n".join(problems))


def unacknowledged_lost(members: Iterable[Member], db: Database) -> list[int]:
    """Acknowledged message ids that the database does not hold: must be empty."""
    stored = db.all_ids()
    return [i for member in members for i in member.acked_ids() if i not in stored]


class Load:
    """Members sending in the background, paced and bounded in count and time.

    Each round, every sender still connected sends one message to `room`,
    and each (one, other) of `dm_pairs` one direct message each way.
    """

    def __init__(
        self,
        senders: list[Member],
        room: str,
        *,
        rate: float = 100.0,
        limit: int = 3000,
        dm_pairs: list[tuple[Member, Member]] = (),  # type: ignore[assignment]
    ) -> None:
        self._senders = senders
        self._room = room
        self._dm_pairs = list(dm_pairs)
        self._interval = (len(senders) + 2 * len(self._dm_pairs)) / rate
        self._limit = limit
        self._stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        counter = itertools.count()
        while not self._stop.is_set() and self.sent < self._limit:
            for member in self._senders:
                if not member.closed:
                    member.send(self._room, f"m{next(counter)} from {member.username}")
                    self.sent += 1
            for one, other in self._dm_pairs:
                for sender, peer in ((one, other), (other, one)):
                    if not sender.closed:
                        sender.dm(peer.username, f"d{next(counter)} to {peer.username}")
                        self.sent += 1
            self._stop.wait(self._interval)
