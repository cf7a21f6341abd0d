"""`chatd import` of hostile and broken files: one line, exit 1, no code run, database unchanged.

Each payload that tries to run code would create a marker file under
tmp_path if it ever ran; `test_payloads_are_live` proves they would.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from chatd.cli import main
from chatd.store import open_store
from chatd.transcript import Transcript, TranscriptMessage, to_plain

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.sqlite_only("the loader refuses these files before the import touches a database"),
]

T0 = 1_700_000_000_000


class Call:
    """Unpickling this calls func(*args): pickled with STACK_GLOBAL + REDUCE at protocol 5."""

    def __init__(self, func: Callable[..., object], *args: object) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[object, ...]:
        return (self.func, self.args)


class Marker:
    """A class whose construction creates the marker file: "any class" as a payload."""

    def __init__(self, path: str) -> None:
        Path(path).touch()


def valid_plain() -> dict[str, object]:
    messages = (
        TranscriptMessage(1, "alice", "hi", T0),
        TranscriptMessage(2, "ghost", "yo", T0 + 1),
    )
    return to_plain(Transcript("general", "topic", T0, messages))


def payload_os_system(marker: Path) -> bytes:
    return pickle.dumps(Call(os.system, f"touch {shlex.quote(str(marker))}"), protocol=5)


def payload_eval_protocol0(marker: Path) -> bytes:
    return pickle.dumps(Call(eval, f"open({str(marker)!r}, 'w').close()"), protocol=0)


def payload_class_via_global(marker: Path) -> bytes:
    # PROTO 5, GLOBAL "module\nMarker\n", the path, TUPLE1, REDUCE, STOP: hand-made, so
    # the first dangerous opcode is GLOBAL, not the STACK_GLOBAL a pickler would write.
    path = str(marker).encode()
    return (
        b"\x80\x05c" + Marker.__module__.encode() + b"\nMarker\n"
        b"X" + len(path).to_bytes(4, "little") + path + b"\x85R."
    )


def payload_class_via_stack_global(marker: Path) -> bytes:
    return pickle.dumps(Call(Marker, str(marker)), protocol=5)


def payload_global_inside_a_transcript(marker: Path) -> bytes:
    data = valid_plain()
    data["extra"] = Call(os.system, f"touch {shlex.quote(str(marker))}")
    return pickle.dumps(data, protocol=5)


CODE_PAYLOADS = {
    "os.system via STACK_GLOBAL and REDUCE": (payload_os_system, "opcode STACK_GLOBAL"),
    "builtins.eval via GLOBAL, protocol 0": (payload_eval_protocol0, "opcode GLOBAL at byte 0"),
    "a class via GLOBAL": (payload_class_via_global, "opcode GLOBAL at byte 2"),
    "a class via STACK_GLOBAL": (payload_class_via_stack_global, "opcode STACK_GLOBAL"),
    "a global deep inside a valid transcript": (
        payload_global_inside_a_transcript,
        "opcode STACK_GLOBAL",
    ),
}


def db_dump(url: str) -> list[str]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        return list(connection.iterdump())


@pytest.fixture
def seeded_db(db_url: str) -> str:
    """A database with a room and a message, so "unchanged" has something to lose."""
    store = open_store(db_url)
    try:
        alice = store.create_user("alice", "not-a-real-hash")
        room, _ = store.join(alice, "general")
        store.append_message(alice, "already here", room=room.name)
    finally:
        store.close()
    return db_url


def refuse(capsys: pytest.CaptureFixture[str], path: Path, db_url: str, *flags: str) -> str:
    """Import `path`; assert exit 1, one stderr line naming the file, nothing on stdout."""
    before = db_dump(db_url)
    status = main(["import", str(path), "--db", db_url, *flags], {})
    out, err = capsys.readouterr()
    assert status == 1, (out, err)
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"chatd: {path}: "), err
    assert "Traceback" not in err
    assert db_dump(db_url) == before
    return err


@pytest.mark.parametrize("case", list(CODE_PAYLOADS))
def test_code_execution_payloads_are_refused_without_running(
    case: str, tmp_path: Path, seeded_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    build, where = CODE_PAYLOADS[case]
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(build(marker))
    err = refuse(capsys, path, seeded_db)
    assert "names a global or builds an object" in err
    assert where in err
    assert not marker.exists()


def test_reduce_without_a_global_is_refused(
    tmp_path: Path, seeded_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "reduce.pkl"
    path.write_bytes(b"\x80\x05NNR.")
    assert "opcode REDUCE at byte 4" in refuse(capsys, path, seeded_db)


@pytest.mark.parametrize("case", list(CODE_PAYLOADS))
def test_payloads_are_live(case: str, tmp_path: Path) -> None:
    """Control: plain pickle.loads would run each payload, so the tests above mean something."""
    marker = tmp_path / "ran"
    build, _ = CODE_PAYLOADS[case]
    code = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
    subprocess.run(
        [sys.executable, "-c", code],
        input=build(marker),
        cwd=Path(__file__).parent,
        timeout=20,
        check=False,
        capture_output=True,
    )
    assert marker.exists()


def test_truncated_file_is_refused(
    tmp_path: Path, seeded_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pickle.dumps(valid_plain(), protocol=5)
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: len(data) // 2])
    assert "truncated or damaged pickle" in refuse(capsys, path, seeded_db)


@pytest.mark.parametrize(
    "content", [b'{"format": "chatd.transcript"}\n', b"\x89PNG\r\n\x1a\n", b"", b"hello world"]
)
def test_a_file_that_is_not_a_pickle_is_refused(
    content: bytes, tmp_path: Path, seeded_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "not.pkl"
    path.write_bytes(content)
    assert "not a transcript: not a pickle of protocol 4 or 5" in refuse(capsys, path, seeded_db)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"format": "chatd.other"}, "not a transcript: 'format' is not 'chatd.transcript'"),
        ({"version": 2}, "transcript version 2 is not supported (this chatd reads version 1)"),
    ],
)
def test_wrong_format_or_version_is_refused(
    changes: dict[str, object],
    expected: str,
    tmp_path: Path,
    seeded_db: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "t.pkl"
    path.write_bytes(pickle.dumps({**valid_plain(), **changes}, protocol=5))
    assert expected in refuse(capsys, path, seeded_db)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("id", "1", "messages[1].id: expected int, got str"),
        ("user", ["alice"], "messages[1].user: expected str, got list"),
        ("ts", 1700000000.5, "messages[1].ts: expected str, got float"),
        ("text", None, "messages[1].text: expected str, got NoneType"),
    ],
)
def test_wrong_field_types_are_refused(
    field: str,
    value: object,
    expected: str,
    tmp_path: Path,
    seeded_db: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = valid_plain()
    data["messages"][1][field] = value  # type: ignore[index]
    path = tmp_path / "t.pkl"
    path.write_bytes(pickle.dumps(data, protocol=5))
    assert expected in refuse(capsys, path, seeded_db)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\x1b]0;owned\x07", "a message may hold no control character but newline and tab"),
        ("\u009bc", "a message may hold no control character"),
        (" \n ", "a message is 1-4000 characters"),
        ("x" * 4001, "a message is 1-4000 characters"),
    ],
)
def test_text_breaking_the_text_rules_is_refused(
    text: str, expected: str, tmp_path: Path, seeded_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = valid_plain()
    data["messages"][1]["text"] = text  # type: ignore[index]
    path = tmp_path / "t.pkl"
    path.write_bytes(pickle.dumps(data, protocol=5))
    err = refuse(capsys, path, seeded_db)
    assert f"invalid transcript: messages[1].text: {expected}" in err


def test_a_file_over_max_bytes_is_refused(
    tmp_path: Path, seeded_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.pkl"
    path.write_bytes(pickle.dumps(valid_plain(), protocol=5))
    err = refuse(capsys, path, seeded_db, "--max-bytes", "100")
    assert "the file is larger than --max-bytes (100 bytes)" in err


def test_deep_nesting_is_refused(
    tmp_path: Path, seeded_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    depth = 100_000
    path = tmp_path / "deep.pkl"
    path.write_bytes(b"\x80\x05" + b"]" * depth + b"a" * (depth - 1) + b".")
    assert "data nested deeper than 32" in refuse(capsys, path, seeded_db)


def test_deeper_nesting_is_refused_before_loading(
    tmp_path: Path, seeded_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    depth = 2_000_000
    path = tmp_path / "deeper.pkl"
    path.write_bytes(b"\x80\x05" + b"]" * depth + b"a" * (depth - 1) + b".")
    assert "the pickle nests too deep at byte" in refuse(capsys, path, seeded_db)


def bomb_levels(first_memo: int, levels: int = 40) -> bytes:
    """Lists each holding the previous one twice, memoized from `first_memo` on."""
    out = bytearray(b"]\x94")  # the innermost empty list
    for level in range(levels):
        get = b"j" + (first_memo + level).to_bytes(4, "little")  # LONG_BINGET
        out += b"(" + get * 2 + b"l\x94"  # MARK, GET, GET, LIST, MEMOIZE
    return bytes(out)


def shared_reference_bomb(levels: int = 40) -> bytes:
    """~500 bytes that unpickle into 2**levels references to one empty list."""
    return b"\x80\x05(" + bomb_levels(0, levels) + b"l."  # every level in one outer list


def test_shared_reference_bomb_is_refused(
    tmp_path: Path, seeded_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = shared_reference_bomb()
    assert len(data) < 600
    path = tmp_path / "bomb.pkl"
    path.write_bytes(data)
    assert "a list or dict appears more than once" in refuse(capsys, path, seeded_db)


def test_shared_reference_bomb_under_an_unknown_key_is_refused(
    tmp_path: Path, seeded_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A valid transcript whose ignored key "extra" holds the bomb: ignored keys are walked too."""
    head = pickle.dumps(valid_plain(), protocol=5)
    assert head[2:3] == b"\x95" and head[-2:] == b"u."
    memo = sum(1 for op, _, _ in pickletools.genops(head) if op.name == "MEMOIZE")
    # drop the optional FRAME, then add "extra": [bomb levels] to the root's last SETITEMS
    extra = b"\x8c\x05extra(" + bomb_levels(memo) + b"l"
    data = head[:2] + head[11:-2] + extra + b"u."
    assert pickle.loads(data)["messages"] == valid_plain()["messages"]
    path = tmp_path / "bomb.pkl"
    path.write_bytes(data)
    assert "a list or dict appears more than once" in refuse(capsys, path, seeded_db)


@pytest.mark.parametrize(
    "payload",
    [
        # 13 bytes: PROTO 5, EMPTY_LIST, LONG_BINPUT 2**31-1, NONE, APPEND, NONE, APPEND, STOP
        b"\x80\x05]r\xff\xff\xff\x7fNaNa.",
        # the file attached to CPython issue 115952 itself
        b"]replace.\n",
    ],
)
def test_memo_index_bomb_of_cpython_issue_115952_is_refused(
    payload: bytes, tmp_path: Path, seeded_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "memo.pkl"
    path.write_bytes(payload)
    err = refuse(capsys, path, seeded_db)
    if payload.startswith(b"\x80\x05"):
        assert len(payload) == 13
        assert "memo index 2147483647 at byte 3 is out of sequence" in err
    else:
        assert "not a transcript" in err


def test_installed_script_refuses_a_hostile_file(tmp_path: Path, seeded_db: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload_os_system(marker))
    before = db_dump(seeded_db)
    script = Path(sys.executable).parent / "chatd"
    result = subprocess.run(
        [str(script), "import", str(path), "--db", seeded_db],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "names a global" in result.stderr
    assert not marker.exists()
    assert db_dump(seeded_db) == before
