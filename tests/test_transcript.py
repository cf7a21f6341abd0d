"""The transcript codec and its hardened loader, as pure functions: no database, no CLI."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from pathlib import Path

import pytest

from chatd import safepickle
from chatd import transcript as tr
from chatd.safepickle import PickleBudget
from chatd.transcript import (
    FileMeta,
    Transcript,
    TranscriptError,
    TranscriptMessage,
    dumps_transcript,
    loads_transcript,
    to_plain,
    write_atomic,
)

pytestmark = pytest.mark.timeout(30)

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def sample(count: int = 3) -> Transcript:
    messages = tuple(
        TranscriptMessage(i, "alice" if i % 2 else "Bob.x", f"line {i}\n\tmore", T0 + i)
        for i in range(1, count + 1)
    )
    return Transcript("general", "the topic", T0 + 10_000, messages)


def plain(**changes: object) -> dict[str, object]:
    data = to_plain(sample())
    data.update(changes)
    return data


def with_message(**changes: object) -> bytes:
    data = plain()
    message = dict(data["messages"][0])  # type: ignore[index]
    message.update(changes)
    for key, value in changes.items():
        if value is ...:
            del message[key]
    data["messages"] = [message]
    return pickle.dumps(data, protocol=5)


def refusal(data: bytes, budget: PickleBudget | None = None) -> str:
    with pytest.raises(TranscriptError) as caught:
        loads_transcript(data, budget)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300, message
    return message


def test_round_trip_keeps_every_field() -> None:
    meta = FileMeta(7, "cat.png", 1234, "image/png", "ab" * 32)
    original = Transcript(
        "general",
        "",
        T0,
        (*sample().messages, TranscriptMessage(9, "carol", "cat.png", T0 + 9, meta)),
    )
    data = dumps_transcript(original)
    assert data[:2] == b"\x80\x05"
    assert loads_transcript(data) == original


def test_accepts_protocol_4_and_plain_pickle_dumps_output() -> None:
    assert loads_transcript(pickle.dumps(plain(), protocol=4)) == sample()
    assert loads_transcript(pickle.dumps(plain(), protocol=5)) == sample()


def test_unknown_keys_are_ignored_and_rooms_normalised() -> None:
    data = plain(room="#General", extra={"nested": [1, 2.5, None, True]})
    data["messages"][0]["reactions"] = ["+1"]  # type: ignore[index]
    assert loads_transcript(pickle.dumps(data, protocol=5)) == sample()


def test_trailing_whitespace_is_stripped_like_a_live_send() -> None:
    loaded = loads_transcript(with_message(text="hi  \n\t "))
    assert loaded.messages[0].text == "hi"


def test_large_transcript_in_frames_loads() -> None:
    big = sample(5000)
    assert loads_transcript(dumps_transcript(big)) == big


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"id": "1"}, "messages[0].id: expected int, got str"),
        ({"id": True}, "messages[0].id: expected int, got bool"),
        ({"id": 0}, "messages[0].id: not a positive 64-bit integer"),
        ({"id": 1 << 63}, "messages[0].id: not a positive 64-bit integer"),
        ({"user": 42}, "messages[0].user: expected str, got int"),
        ({"user": "no spaces"}, "messages[0].user: not a valid username"),
        ({"ts": 1700000000}, "messages[0].ts: expected str, got int"),
        ({"ts": "yesterday"}, "messages[0].ts: not an RFC 3339 timestamp"),
        ({"ts": "2023-13-01T00:00:00Z"}, "messages[0].ts: not an RFC 3339 timestamp"),
        ({"text": ...}, "messages[0]: 'text' is missing"),
        ({"text": "\x1b[2Jgotcha"}, "messages[0].text: a message may hold no control"),
        ({"text": "   "}, "messages[0].text: a message is 1-4000 characters"),
        ({"text": "x" * 4001}, "messages[0].text: a message is 1-4000 characters"),
        ({"text": "a\ud800b"}, "messages[0].text: not valid Unicode"),
        ({"file": {"id": 1}}, "messages[0].file: 'name' is missing"),
        ({"file": "x.png"}, "messages[0].file: expected dict, got str"),
    ],
)
def test_message_fields_are_checked(changes: dict[str, object], expected: str) -> None:
    assert expected in refusal(with_message(**changes))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"format": "chatd.other"}, "not a transcript: 'format' is not 'chatd.transcript'"),
        ({"version": 2}, "transcript version 2 is not supported"),
        ({"version": "1"}, "transcript.version: expected int, got str"),
        ({"room": "no room!"}, "transcript.room: a room name is"),
        ({"topic": None}, "transcript.topic: expected str, got NoneType"),
        ({"topic": "bell\x07"}, "transcript.topic: a topic may hold no control"),
        ({"exported_at": None}, "transcript.exported_at: expected str"),
        ({"messages": {"0": {}}}, "transcript.messages: expected list, got dict"),
    ],
)
def test_top_level_fields_are_checked(changes: dict[str, object], expected: str) -> None:
    assert expected in refusal(pickle.dumps(plain(**changes), protocol=5))


def test_a_list_root_is_not_a_transcript() -> None:
    assert "holds no dict" in refusal(pickle.dumps([1, 2], protocol=5))


def test_find_class_refuses_even_without_the_scan(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = pickle.dumps(_Touch(str(marker)), protocol=5)
    with pytest.raises(safepickle.UnsafePickle, match="names the global"):
        safepickle._PlainUnpickler(io.BytesIO(payload)).load()
    assert not marker.exists()


class _Touch:
    """Unpickling this calls open(path, "w"): the marker shows whether code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (self.path, "w"))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\x80\x05(]\x94h\x00h\x00l.", "a list or dict appears more than once"),
        (b"\x80\x05]\x94h\x01a.", "memo index 1 at byte 4 was never stored"),
        (b"\x80\x05]q\x01.", "memo index 1 at byte 3 is out of sequence"),
        (b"\x80\x05N.N", "damaged pickle: 1 bytes after its end"),
        (b"\x80\x05NN.", "STOP at byte 4 with a bad stack"),
        (b"\x80\x05Na.", "APPEND at byte 3 has too few operands"),
        (b"\x80\x05(NNe.", "APPENDS at byte 5 has no container"),
        (b"\x80\x05C\x01x.", "opcode SHORT_BINBYTES at byte 2 is not plain transcript data"),
        (b"\x80\x05)\x94.", "opcode EMPTY_TUPLE at byte 2 is not plain transcript data"),
        (b"\x80\x05\x8f.", "opcode EMPTY_SET at byte 2 is not plain transcript data"),
        (b"\x80\x05I1\n.", "opcode INT at byte 2 is not plain transcript data"),
        (b"\x80\x05\x95\xff\x00\x00\x00\x00\x00\x00\x00N.", "frame at byte 2 is too long"),
    ],
)
def test_scan_refuses_malformed_and_foreign_opcodes(payload: bytes, expected: str) -> None:
    assert expected in refusal(payload)


def test_budgets_bound_opcodes_containers_nodes_and_stack() -> None:
    data = dumps_transcript(sample(200))
    ops = sum(1 for _ in pickletools.genops(data))
    assert "more than 100 pickle opcodes" in refusal(data, PickleBudget(max_opcodes=100))
    assert loads_transcript(data, PickleBudget(max_opcodes=ops)) == sample(200)
    assert "more than 50 lists and dicts" in refusal(data, PickleBudget(max_containers=50))
    assert "more than 300 values" in refusal(data, PickleBudget(max_nodes=300))
    wide = b"\x80\x05(" + b"N" * 100 + b"l."
    assert "nests too deep at byte" in refusal(wide, PickleBudget(max_stack=50))
    assert "larger than --max-bytes (10 bytes)" in refusal(data, PickleBudget(max_bytes=10))


def test_budgets_scale_with_the_size_cap() -> None:
    small = PickleBudget.for_size(4096)
    assert (small.max_opcodes, small.max_containers, small.max_nodes) == (2048, 256, 2048)
    assert PickleBudget.for_size(safepickle.DEFAULT_MAX_BYTES) == PickleBudget()


def test_read_capped_refuses_a_large_file_before_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "big.pkl"
    path.write_bytes(b"x" * 101)
    with pytest.raises(TranscriptError, match=r"larger than --max-bytes \(100 bytes\)"):
        tr.read_capped(str(path), 100)
    assert tr.read_capped(str(path), 101) == b"x" * 101
    with pytest.raises(TranscriptError):
        tr.read_capped("-", 100, io.BytesIO(b"y" * 101))


def test_write_atomic_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "t.pkl"
    target.write_bytes(b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["t.pkl"]


def test_write_atomic_keeps_the_old_file_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "t.pkl"
    target.write_bytes(b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.pkl"]
