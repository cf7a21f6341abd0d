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
from array import array
from dataclasses import dataclass, field
from typing import Any

PAYLOAD_BYTES = 40  # why: the reference figures use 40-byte payloads.


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
    remaining: array = field(init=False)  # per seq: receivers that still lack it
    sent_at: array = field(init=False)  # per seq: perf_counter when written
    sent: int = 0
    completed: int = 0  # a prefix of seqs every receiver has
    acked: int = 0  # replies received (chatd only)
    last_ack_id: int = 0
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.remaining = array("i", [self.receivers]) * self.total
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
    expected: dict[int, int] = field(default_factory=dict)  # stream -> next seq
    last_id: dict[str, int] = field(default_factory=dict)  # room -> last message id


class Tracker:
    """Counts deliveries for a set of streams and records every anomaly."""

    def __init__(self, streams: list[Stream], *, acks: bool, keep_latency: bool = False) -> None:
        self.streams = {stream.index: stream for stream in streams}
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
        self.ack_latency = array("d")
        self.done = asyncio.Event()

    def receiver(self, name: str) -> Receiver:
        receiver = Receiver(name)
        self.receivers.append(receiver)
        return receiver

    def deliver(
        self, receiver: Receiver, text: str | bytes, now: float, room: str = "", msg_id: int = 0
    ) -> None:
        """One message arrived at `receiver`."""
        try:
            index, seq = parse_payload(text)
            stream = self.streams[index]
        except (ValueError, KeyError):
            self.foreign += 1
            return
        if msg_id:
            if msg_id <= receiver.last_id.get(room, 0):
                self.id_order += 1
            receiver.last_id[room] = msg_id
        expected = receiver.expected.get(index, 0)
        if seq < expected or seq >= stream.total:
            self.late_or_duplicate += 1
            return
        if seq > expected:
            self.gaps += seq - expected
        receiver.expected[index] = seq + 1
        self.delivered += 1
        if self.keep_latency:
            sent_at = stream.sent_at[seq]
            self.latency.append(now - sent_at)
            self.latency_at.append(sent_at)
        stream.remaining[seq] -= 1
        if stream.remaining[seq] == 0 and seq == stream.completed:
            remaining = stream.remaining
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
            got = sum(r.expected.get(stream.index, 0) for r in self.receivers)
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
