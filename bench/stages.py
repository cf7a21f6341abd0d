"""What each stage of a `send` costs, in one process: no sockets, no threads, no generator.

The scenarios measure the whole server; this splits one message's path into
its stages (frame splitting, JSON parsing, dispatch to the writer's queue,
the writer's commit and fan-out) on a real SQLite file, so a change to one
stage can be measured on its own. Each figure is the best of several rounds
of a 500-message batch, in microseconds per message.

    .venv/bin/python -m bench.stages
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from chatd.commands import dispatch
from chatd.config import ServerConfig
from chatd.db import upgrade
from chatd.protocol import FrameDecoder, parse_request
from chatd.sendqueue import ReplySlot
from chatd.server import Server
from chatd.session import Session
from chatd.writer import MessageWriter, Post


class CountingOutbox:
    """An outbox that only counts bytes: the socket side is left out on purpose."""

    def __init__(self) -> None:
        self.bytes = 0

    def put(self, data: bytes, *, event: bool = False) -> bool:
        self.bytes += len(data)
        return True

    def reserve(self) -> ReplySlot:
        return ReplySlot()

    def fill(self, replies: Iterable[tuple[ReplySlot, bytes]]) -> None:
        self.bytes += sum(len(data) for _slot, data in replies)


def best_of(rounds: int, count: int, run: Callable[[], object]) -> float:
    """Microseconds per message of the fastest round."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return 1e6 * best / count


def take_queued(writer: MessageWriter) -> list[Post]:
    """The posts dispatch queued (the writer thread is not running here)."""
    queue = writer._queue
    posts = list(queue)
    queue.clear()
    return posts


def measure(count: int, rounds: int, workdir: Path) -> dict[str, float]:
    url = f"sqlite:///{workdir / 'stages.db'}"
    upgrade(url)
    server = Server(ServerConfig(db=url, send_rate=0, files_dir=str(workdir / "files")))
    services = server.services
    user = services.store.create_user("alice", services.hasher.hash("stages-password"))
    session = Session("127.0.0.1:1", services, CountingOutbox())
    session.user = user
    services.hub.connect(user.username, session)
    dispatch(session, {"op": "join", "id": 0, "room": "general"})
    text = "x" * 40
    chunk = b"".join(
        b'{"op":"send","id":%d,"room":"general","text":"%s"}\n' % (n, text.encode())
        for n in range(count)
    )
    lines = list(FrameDecoder().feed(chunk))
    frames = [parse_request(line) for line in lines]
    writer = services.writer

    def dispatch_all() -> None:
        for frame in frames:
            dispatch(session, frame)
        take_queued(writer)

    def dispatch_and_commit() -> None:
        for frame in frames:
            dispatch(session, frame)
        writer._commit(take_queued(writer))

    try:
        figures = {
            "split frames": best_of(rounds, count, lambda: list(FrameDecoder().feed(chunk))),
            "parse": best_of(rounds, count, lambda: [parse_request(line) for line in lines]),
            "dispatch send": best_of(rounds, count, dispatch_all),
            "dispatch + commit": best_of(rounds, count, dispatch_and_commit),
        }
    finally:
        services.store.close()
    figures["commit (writer)"] = figures["dispatch + commit"] - figures["dispatch send"]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="cost of each stage of a send, per message")
    parser.add_argument("--messages", type=int, default=500, help="messages per batch")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="chatd-stages-") as tmp:
        figures = measure(args.messages, args.rounds, Path(tmp))
    for stage, micros in figures.items():
        print(f"{stage:20s} {micros:6.2f} us/message")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
