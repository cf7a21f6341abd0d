"""What each stage of a `send` costs, in one process: no sockets, no threads, no generator.

The scenarios measure the whole server; this splits one message's path into
its stages (frame splitting, decoding into the typed request, dispatch to
the writer's queue, the writer's commit and fan-out) on a real SQLite file,
with the JSON dialect a connection uses, so a change to one stage can be
measured on its own. Each figure is the best of several rounds of a
500-message batch, in microseconds per message. The server's own modules
are used as they are (no copies), so a change in their seams breaks this
script loudly rather than measuring something else.

    .venv/bin/python -m bench.stages
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from chatd.commands import dispatch
from chatd.config import ServerConfig
from chatd.db import upgrade
from chatd.dialects.json import JsonDialect
from chatd.handlers import HANDLERS
from chatd.protocol import FrameDecoder, decode_request
from chatd.requests import Join
from chatd.sendqueue import ReplySlot
from chatd.server import Server
from chatd.session import Session
from chatd.writer import MessageWriter, Post


class CountingOutbox:
    """An outbox that only counts bytes: the socket side is left out on purpose."""

    def __init__(self) -> None:
        self.bytes = 0

    def put(self, data: bytes, *, event: bool = False, barrier: bool = False) -> bool:
        self.bytes += len(data)
        return True

    def reserve(self) -> ReplySlot:
        return ReplySlot()

    def fill(self, replies: Iterable[tuple[ReplySlot, bytes]]) -> None:
        self.bytes += sum(len(data) for _slot, data in replies)

    def put_in_order(self, items: Iterable[bytes | tuple[ReplySlot, bytes]]) -> None:
        for item in items:
            self.bytes += len(item) if isinstance(item, bytes) else len(item[1])


class GcMeter:
    """Time spent in the cyclic garbage collector, per generation, while active.

    Why: a best-of figure leaves out the rounds in which a full collection ran,
    yet in the server those collections are paid for by every message; their
    cost grows with every tracked object alive (all of chatd's and its
    libraries' import-time objects included), not with the message.
    """

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._started = 0.0
        self._active = False

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if not self._active:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            generation = info["generation"]
            self.seconds[generation] += time.perf_counter() - self._started
            self.collections[generation] += 1

    def __enter__(self) -> GcMeter:
        self._active = True
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        self._active = False
        gc.callbacks.remove(self._callback)


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
    posts = [item for item in queue if isinstance(item, Post)]
    queue.clear()
    return posts


def measure(count: int, rounds: int, workdir: Path) -> dict[str, float]:
    url = f"sqlite:///{workdir / 'stages.db'}"
    upgrade(url)
    config = ServerConfig(db=url, send_rate=0, files_dir=str(workdir / "files"))
    server = Server(config)
    services = server.services
    user = services.store.create_user("alice", services.hasher.hash("stages-password"))
    session = Session("127.0.0.1:1", services, CountingOutbox(), JsonDialect(config))
    session.user = user
    services.hub.connect(user.username, session)
    dispatch(session, Join(id=0, room="general"), HANDLERS)
    text = "x" * 40
    chunk = b"".join(
        b'{"op":"send","id":%d,"room":"general","text":"%s"}\n' % (n, text.encode())
        for n in range(count)
    )
    lines = list(FrameDecoder().feed(chunk))
    requests = [decode_request(line) for line in lines]
    writer = services.writer

    def dispatch_all() -> None:
        for request in requests:
            dispatch(session, request, HANDLERS)
        take_queued(writer)

    def dispatch_and_commit() -> None:
        for request in requests:
            dispatch(session, request, HANDLERS)
        writer._commit(take_queued(writer))

    try:
        figures = {
            "split frames": best_of(rounds, count, lambda: list(FrameDecoder().feed(chunk))),
            "decode request": best_of(
                rounds, count, lambda: [decode_request(line) for line in lines]
            ),
            "dispatch send": best_of(rounds, count, dispatch_all),
            "dispatch + commit": best_of(rounds, count, dispatch_and_commit),
        }
        figures["commit (writer)"] = figures["dispatch + commit"] - figures["dispatch send"]
        # the collector's share: every round counts here, not only the best one
        tracked = len(gc.get_objects())
        gc.collect()
        with GcMeter() as meter:
            started = time.perf_counter()
            for _ in range(rounds):
                dispatch_and_commit()
            elapsed = time.perf_counter() - started
        messages = rounds * count
        figures["dispatch + commit, mean of all rounds"] = 1e6 * elapsed / messages
        figures["of which the collector"] = 1e6 * sum(meter.seconds) / messages
        for generation in range(3):
            figures[f"  gen {generation} collections / 1000 msgs"] = (
                1000 * meter.collections[generation] / messages
            )
        figures["  tracked objects alive"] = float(tracked)
    finally:
        services.store.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="cost of each stage of a send, per message")
    parser.add_argument("--messages", type=int, default=500, help="messages per batch")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="chatd-stages-") as tmp:
        figures = measure(args.messages, args.rounds, Path(tmp))
    for stage, value in figures.items():
        if stage.startswith("  "):
            print(f"{stage:38s} {value:9.2f}")
        else:
            print(f"{stage:38s} {value:9.2f} us/message")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
