"""layout.py: display widths and word wrapping, pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.layout import (
    Run,
    cursor_after_reflow,
    display_width,
    text_width,
    wrap_runs,
    wrap_spans,
)


def wrapped(text: str, width: int) -> list[str]:
    return [text[start:end] for start, end in wrap_spans(text, width)]


def test_widths_count_terminal_cells() -> None:
    assert text_width("hello") == 5
    assert text_width("你好") == 4  # east-asian wide characters take two cells
    assert text_width("e\u0301") == 1  # a combining accent takes none
    assert text_width("👩\u200d💻") == 2  # an emoji sequence joined by ZWJ is one glyph
    assert text_width("") == 0


def test_escape_sequences_take_no_width() -> None:
    painted = "\x1b[31malice\x1b[0m \x1b]8;;https://x.test\x1b\\\x1b[4mlink\x1b[24m\x1b]8;;\x1b\\"
    assert display_width(painted) == len("alice link")


@pytest.mark.parametrize(
    ("text", "width", "lines"),
    [
        ("hello world foo", 11, ["hello world", "foo"]),
        ("hello world", 11, ["hello world"]),
        ("one  two   three", 9, ["one  two", "three"]),
        ("    indented text here", 13, ["    indented", "text here"]),
        ("abcdefghij", 4, ["abcd", "efgh", "ij"]),
        ("see https://example.org/x", 12, ["see https://", "example.org/", "x"]),
        ("你好你好你好", 5, ["你好", "你好", "你好"]),
        ("ab 你好", 4, ["ab", "你好"]),
        ("cafe\u0301 cafe\u0301", 4, ["cafe\u0301", "cafe\u0301"]),
        ("", 10, [""]),
        ("     ", 3, ["   "]),
        ("anything", 0, ["anything"]),
    ],
)
def test_wrap_at_word_boundaries(text: str, width: int, lines: list[str]) -> None:
    assert wrapped(text, width) == lines


def test_a_long_word_is_cut_between_characters_never_inside_one() -> None:
    assert wrapped("xe\u0301e\u0301e\u0301", 2) == ["xe\u0301", "e\u0301e\u0301"]
    assert wrapped("a你好", 2) == ["a", "你", "好"]


@given(st.text(alphabet="ab 你\u0301", max_size=40), st.integers(min_value=2, max_value=12))
def test_wrapped_lines_fit_and_keep_every_word(text: str, width: int) -> None:
    lines = wrapped(text, width)
    assert all(text_width(line) <= width for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")


def test_runs_keep_their_look_across_a_cut() -> None:
    runs = [Run("see "), Run("https://example.org/long", link="https://example.org/long")]
    assert wrap_runs(runs, 12) == [
        [Run("see "), Run("https://", link="https://example.org/long")],
        [Run("example.org/", link="https://example.org/long")],
        [Run("long", link="https://example.org/long")],
    ]
    assert wrap_runs([Run("ab", "31"), Run(" cd", "32")], 2) == [
        [Run("ab", "31")],
        [Run("cd", "32")],
    ]


@pytest.mark.parametrize(
    ("rows", "cursor", "width", "moved"),
    [
        ([], (48, 0), 30, (18, 1)),  # one long row cut in two
        ([], (30, 0), 30, (0, 1)),
        ([], (12, 0), 30, (12, 0)),  # it still fits: nothing moves
        ([100, 100], (5, 2), 30, (5, 8)),  # each full row above became four
        ([0, 20], (3, 2), 30, (3, 2)),
    ],
)
def test_cursor_after_reflow(
    rows: list[int], cursor: tuple[int, int], width: int, moved: tuple[int, int]
) -> None:
    assert cursor_after_reflow(rows, cursor, width) == moved
