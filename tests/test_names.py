"""Name, password, text and timestamp rules of PROTOCOL.md."""

from __future__ import annotations

import pytest

from chatd.errors import ChatError, ErrorCode
from chatd.names import (
    check_password,
    check_username,
    clean_text,
    clean_topic,
    format_ts,
    normalize_room,
    parse_ts,
    username_key,
)


def code_of(call, *args) -> ErrorCode:
    with pytest.raises(ChatError) as caught:
        call(*args)
    return caught.value.code


@pytest.mark.parametrize("name", ["al", "Alice", "_bot", "9lives", "a.b-c_d", "x" * 32])
def test_valid_usernames(name):
    assert check_username(name) == name


@pytest.mark.parametrize(
    "name",
    ["a", "x" * 33, ".alice", "-alice", "al ice", "alïce", "ａlice", "al\nx", ""],  # noqa: RUF001
)
def test_invalid_usernames(name):
    assert code_of(check_username, name) is ErrorCode.INVALID_USERNAME


def test_username_key_folds_ascii_case_only():
    assert username_key("Alice") == username_key("ALICE") == "alice"


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("#General", "general"),
        ("general", "general"),
        ("a", "a"),
        ("#x-y_9", "x-y_9"),
        ("#" + "A" * 32, "a" * 32),
    ],
)
def test_room_names_normalise(given, normal):
    assert normalize_room(given) == normal


@pytest.mark.parametrize(
    "room", ["", "#", "##general", "gen eral", "café", "x" * 33, "gen.eral", "\u212aelvin", "#a\n"]
)
def test_invalid_room_names(room):
    assert code_of(normalize_room, room) is ErrorCode.INVALID_ROOM


@pytest.mark.parametrize("password", ["12345678", "x" * 72, "é" * 36])
def test_passwords_within_8_to_72_bytes(password):
    assert check_password(password) == password


@pytest.mark.parametrize("password", ["1234567", "x" * 73, "é" * 37])
def test_passwords_outside_8_to_72_bytes(password):
    assert code_of(check_password, password) is ErrorCode.INVALID_PASSWORD


def test_text_loses_trailing_whitespace_and_keeps_newlines_and_tabs():
    assert clean_text("line one\n\tline two  \n ") == "line one\n\tline two"
    assert clean_text("x" * 4000 + "   ") == "x" * 4000


@pytest.mark.parametrize(
    "text", ["", "   \n", "x" * 4001, "bell\x07", "esc\x1b[31m", "del\x7f", "c1\x85x", "nul\x00x"]
)
def test_invalid_texts(text):
    assert code_of(clean_text, text) is ErrorCode.INVALID_TEXT


def test_topics():
    assert clean_topic("") == ""
    assert clean_topic("release day  ") == "release day"
    assert code_of(clean_topic, "x" * 301) is ErrorCode.INVALID_TEXT
    assert code_of(clean_topic, "two\nlines") is ErrorCode.INVALID_TEXT


def test_timestamps_round_trip_with_milliseconds():
    assert format_ts(0) == "1970-01-01T00:00:00.000Z"
    assert parse_ts("2026-11-24T23:45:56.123Z") == 1795563956123
    assert format_ts(parse_ts("2026-11-24T23:45:56.123Z")) == "2026-11-24T23:45:56.123Z"
    assert parse_ts("2026-11-25T00:45:56.1234567+01:00") == 1795563956123
    with pytest.raises(ValueError):
        parse_ts("yesterday")


def test_control_detection_is_exactly_unicode_category_cc():
    import unicodedata

    from chatd.names import has_control

    for code in range(0x3000):
        char = chr(code)
        assert has_control(f"a{char}b") == (unicodedata.category(char) == "Cc"), hex(code)
