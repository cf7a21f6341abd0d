"""Delivery bookkeeping: every expected delivery counted, every anomaly named.

A figure from a benchmark that loses messages is worthless, so each message
carries its sender stream and sequence number in its text
(`"<stream>:<seq>:xxxx"`, padded to the payload size) and each receiver checks
that, per stream, sequence numbers arrive exactly once and in order, and (for
chatd) that message ids grow. The per-message countdown of receivers is also
what drives the sender window ("at most W messages ahead of the slowest
receiver").
"""

from __future__ import annotations

import asyncio
import math
import re
from array import array
from dataclasses import dataclass, field
from typing import Any

PAYLOAD_BYTES = 40  # why: the reference figures use 40-byte payloads.

# A JSON string body that needs no unescaping or decoding: printable ASCII but `"` and `\`.
_PLAIN = rb"[\x20\x21\x23-\x5b\x5d-\x7e]*"
# why: chatd's message event for one of our payloads, exactly as chatd/protocol.py emits it
# (compact, keys in this order, nothing else). A line that matches is valid JSON whose
# json.loads gives exactly these fields, so the groups are what the JSON path would read;
# any other line (a file, a DM, an escape, non-ASCII, another layout) takes the JSON path.
MESSAGE_FRAME = re.compile(
    rb'\{"event":"message","id":([1-9][0-9]{0,17}),"room":"(%s)","user":"%s",'
    rb'"text":"([0-9]{1,9}):([0-9]{1,9}):%s","ts":"%s"\}' % ((_PLAIN,) * 4)
)
# why: every receiver of a room reads the same bytes for a message; parsing them once and
# looking the result up for the others is exact (equal bytes, equal fields) and cheaper.
# Receivers read a message within moments of each other, so the most recent frames are
# enough; a frame dropped before every receiver had it is only parsed again.
PARSED_FRAMES = 4096


def payload(stream: int, seq: int, size: int = PAYLOAD_BYTES) -> str:
    head = f"{stream}:{seq}:"
    return head + "x" * max(0, size - len(head))


def parse_payload(text: str | bytes) -> tuple[int, int]:
    """(stream, seq) from a payload; ValueError when it is not one of ours."""
    if isinstance(text, bytes):
        text = text.decode()
    stream, seq, _rest = text.split(":", 2)
    return int(stream), int(seq)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (nan when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]


def latency_summary(samples: array | list[float]) -> dict[str, float | int | None]:
    """p50/p90/p99/p99.9/max in milliseconds (None without samples), and the count."""
    values = sorted(samples)
    if not values:
        return {
            "count": 0,
            "p50_ms": None,
            "p90_ms": None,
            "p99_ms": None,
            "p999_ms": None,
            "max_ms": None,
        }
    return {
        "count": len(values),
        **{
            f"p{label}_ms": round(percentile(values, q) * 1000.0, 3)
            for label, q in (("50", 0.50), ("90", 0.90), ("99", 0.99), ("999", 0.999))
        },
        "max_ms": round(values[-1] * 1000.0, 3),
    }


@dataclass(slots=True)
class Stream:
    """One sender's sequence of messages and how far each has got."""

    index: int
    total: int
    receivers: int
    remaining: list[int] = field(init=False)  # per seq: receivers that still lack it
    sent_at: array = field(init=False)  # per seq: perf_counter when written
    sent: int = 0
    completed: int = 0  # a prefix of seqs every receiver has
    acked: int = 0  # replies received (chatd only)
    last_ack_id: int = 0
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        # why: a list, not an array: each delivery reads and writes one item, and a list
        # item needs no conversion to and from a Python int.
        self.remaining = [self.receivers] * self.total
        self.sent_at = array("d", [0.0]) * self.total
        if self.receivers == 0:
            self.completed = self.total  # nobody to deliver to: only acks matter

    def ahead(self, acks: bool) -> int:
        """Messages sent but not yet everywhere (and, with acks, not yet acknowledged)."""
        done = min(self.completed, self.acked) if acks else self.completed
        return self.sent - done

    def finished(self, acks: bool) -> bool:
        return self.completed == self.total and (not acks or self.acked == self.total)


@dataclass(slots=True)
class Receiver:
    """What one receiving connection has seen, per stream."""

    name: str
    expected: list[int]  # per stream index: the next seq
    last_id: dict[str | None, int] = field(default_factory=dict)  # room -> last message id
    group: int = 0  # whose latencies it shares (Tracker.group_latency): a node, say


class Tracker:
    """Counts deliveries for a set of streams and records every anomaly."""

    def __init__(self, streams: list[Stream], *, acks: bool, keep_latency: bool = False) -> None:
        # why: receivers keep their next seq in a list indexed by stream index.
        assert [stream.index for stream in streams] == list(range(len(streams)))
        self.streams = {stream.index: stream for stream in streams}
        self._parsed: dict[bytes, tuple[int, str, Stream | None, int]] = {}
        self.acks = acks
        self._unfinished = len(streams)
        self.expected_deliveries = sum(s.total * s.receivers for s in streams)
        self.delivered = 0
        self.gaps = 0  # sequence numbers skipped (a later one arrived first)
        self.late_or_duplicate = 0
        self.foreign = 0  # a message that is no stream's
        self.id_order = 0  # chatd ids not ascending within a room
        self.ack_order = 0
        self.receivers: list[Receiver] = []
        self.keep_latency = keep_latency
        self.latency = array("d")  # delivery latency, seconds
        self.latency_at = array("d")  # send time of each latency sample
        self.group_latency: dict[int, array[float]] = {}  # the same samples by receiver group
        self.ack_latency = array("d")
        self.done = asyncio.Event()

    def receiver(self, name: str, group: int = 0) -> Receiver:
        receiver = Receiver(name, [0] * len(self.streams), group=group)
        self.receivers.append(receiver)
        return receiver

    def take_line(self, receiver: Receiver, line: bytes, now: float) -> bool:
        """A raw chatd line arrived at `receiver`: count it if it is a MESSAGE_FRAME.

        False for any other line, which the client then parses as JSON.
        """
        parsed = self._parsed.get(line)
        if parsed is None:
            match = MESSAGE_FRAME.fullmatch(line)
            if match is None:
                return False
            id_digits, room_name, index_digits, seq_digits = match.groups()
            stream = self.streams.get(int(index_digits))
            parsed = (int(id_digits), room_name.decode(), stream, int(seq_digits))
            if len(self._parsed) >= PARSED_FRAMES:
                del self._parsed[next(iter(self._parsed))]  # the oldest
            self._parsed[line] = parsed
        msg_id, room, stream, seq = parsed
        if stream is None:
            self.foreign += 1
        else:
            self._count(receiver, stream, seq, now, room, msg_id)
        return True

    def deliver(
        self,
        receiver: Receiver,
        text: str | bytes,
        now: float,
        room: str | None = "",
        msg_id: int = 0,
    ) -> None:
        """One message arrived at `receiver`."""
        try:
            index, seq = parse_payload(text)
            stream = self.streams[index]
        except (ValueError, KeyError):
            self.foreign += 1
            return
        self._count(receiver, stream, seq, now, room, msg_id)

    def _count(
        self,
        receiver: Receiver,
        stream: Stream,
        seq: int,
        now: float,
        room: str | None,
        msg_id: int,
    ) -> None:
        """Message `seq` of `stream` (chatd id `msg_id`, 0 for IRC) arrived at `receiver`."""
        if msg_id:
            last_id = receiver.last_id
            if msg_id <= last_id.get(room, 0):
                self.id_order += 1
            last_id[room] = msg_id
        next_seqs = receiver.expected
        index = stream.index
        expected = next_seqs[index]
        if seq < expected or seq >= stream.total:
            self.late_or_duplicate += 1
            return
        if seq > expected:
            self.gaps += seq - expected
        next_seqs[index] = seq + 1
        self.delivered += 1
        if self.keep_latency:
            sent_at = stream.sent_at[seq]
            self.latency.append(now - sent_at)
            self.latency_at.append(sent_at)
            group = self.group_latency.get(receiver.group)
            if group is None:
                group = self.group_latency[receiver.group] = array("d")
            group.append(now - sent_at)
        remaining = stream.remaining
        left = remaining[seq] - 1
        remaining[seq] = left
        if left == 0 and seq == stream.completed:
            completed = seq + 1
            while completed < stream.total and remaining[completed] == 0:
                completed += 1
            stream.completed = completed
            stream.progress.set()
            self._check_done(stream)

    def ack(self, stream: Stream, message_id: int, now: float) -> None:
        """The sender's reply to `send` arrived (they come in request order)."""
        if stream.acked >= stream.sent:
            self.ack_order += 1
            return
        if message_id <= stream.last_ack_id:
            self.ack_order += 1
        stream.last_ack_id = message_id
        if self.keep_latency:
            self.ack_latency.append(now - stream.sent_at[stream.acked])
        stream.acked += 1
        stream.progress.set()
        self._check_done(stream)

    def _check_done(self, stream: Stream) -> None:
        if stream.finished(self.acks):
            self._unfinished -= 1
            if self._unfinished == 0:
                self.done.set()

    def missing(self) -> int:
        """Deliveries that never arrived: gaps plus the tails each receiver lacks."""
        lacking = 0
        for stream in self.streams.values():
            got = sum(r.expected[stream.index] for r in self.receivers)
            lacking += stream.sent * stream.receivers - got
        return self.gaps + max(0, lacking)

    def report(self) -> dict[str, Any]:
        unsent = sum(s.total - s.sent for s in self.streams.values())
        unacked = sum(s.sent - s.acked for s in self.streams.values()) if self.acks else 0
        anomalies = {
            "unsent": unsent,
            "unacknowledged": unacked,
            "missing": self.missing(),
            "gaps": self.gaps,
            "late_or_duplicate": self.late_or_duplicate,
            "foreign": self.foreign,
            "id_not_ascending": self.id_order,
            "ack_id_not_ascending": self.ack_order,
        }
        return {
            "expected_deliveries": self.expected_deliveries,
            "delivered": self.delivered,
            "anomalies": anomalies,
            "correct": self.delivered == self.expected_deliveries and not any(anomalies.values()),
        }
