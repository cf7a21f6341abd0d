"""The IRC codec, names and text rules: pure functions, checked against the ircdocs parser
test vectors (the irc-parser-tests package: msg-split, msg-join, userhost-split) and by
properties over random lines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from parser_tests.data import msg_join, msg_split, userhost_split

from chatd.irc.codec import (
    MAX_LINE_BYTES,
    TOO_LONG,
    LineDecoder,
    encode_line,
    format_line,
    format_tags,
    parse,
    parse_text,
    split_source,
)
from chatd.irc.names import (
    channel_of,
    guest_username,
    message_id_of,
    msgid_of,
    nick_of,
    room_of,
    username_of,
)
from chatd.irc.text import from_irc, split_line, strip_formatting, to_irc
from chatd.names import clean_text


@pytest.mark.parametrize("case", msg_split["tests"], ids=lambda case: case["input"][:40])
def test_lines_split_as_the_ircdocs_vectors_say(case):
    line = parse_text(case["input"])
    atoms = case["atoms"]
    assert line is not None
    assert line.verb == atoms["verb"]
    assert line.params == atoms.get("params", [])
    assert line.source == atoms.get("source")
    assert line.tags == {key: value or "" for key, value in (atoms.get("tags") or {}).items()}


@pytest.mark.parametrize("case", msg_join["tests"], ids=lambda case: case.get("desc", "")[:40])
def test_lines_join_as_the_ircdocs_vectors_say(case):
    atoms = case["atoms"]
    tags = atoms.get("tags") or {}
    text = format_tags(tags) + format_line(
        atoms["verb"], atoms.get("params", []), atoms.get("source")
    )
    assert text in case["matches"]


@pytest.mark.parametrize("case", userhost_split["tests"], ids=lambda case: case["source"])
def test_sources_split_as_the_ircdocs_vectors_say(case):
    atoms = case["atoms"]
    assert split_source(case["source"]) == (
        atoms.get("nick", ""),
        atoms.get("user", ""),
        atoms.get("host", ""),
    )


def test_the_decoder_takes_a_line_byte_by_byte_and_either_line_end():
    decoder = LineDecoder()
    data = b"NICK alice\r\n\r\nUSER a 0 * :A\nPING x\r\n"
    lines = [line for byte in data for line in decoder.feed(bytes([byte]))]
    assert lines == [b"NICK alice", b"USER a 0 * :A", b"PING x"]


def test_a_line_over_512_bytes_is_too_long_and_the_next_one_is_read():
    decoder = LineDecoder()
    body = b"PRIVMSG #a :" + b"x" * (MAX_LINE_BYTES - len(b"PRIVMSG #a :") - 2)
    assert list(decoder.feed(body + b"\r\n")) == [body]
    assert list(decoder.feed(body + b"x\r\nPING y\r\n")) == [TOO_LONG, b"PING y"]


def test_tags_have_4094_bytes_of_their_own():
    decoder = LineDecoder()
    tags = b"@" + b"a" * 4094 + b" "
    assert list(decoder.feed(tags + b"PING x\r\n")) == [tags + b"PING x"]
    assert list(decoder.feed(b"@" + b"a" * 4095 + b" PING x\r\n")) == [TOO_LONG]


def test_a_peer_that_never_ends_its_line_is_cut_off_once_and_read_past():
    decoder = LineDecoder()
    assert list(decoder.feed(b"x" * 4000)) == []
    assert list(decoder.feed(b"x" * 4000)) == [TOO_LONG]
    assert list(decoder.feed(b"x" * 50_000)) == []
    assert list(decoder.feed(b"x\r\nPING z\r\n")) == [b"PING z"]


def test_invalid_utf8_is_marked_and_replaced():
    line = parse(b"PRIVMSG #a :caf\xe9")
    assert line is not None and not line.valid_utf8
    assert line.params == ["#a", "caf\ufffd"]


def test_a_line_of_spaces_or_a_bare_tag_has_no_command():
    assert parse(b"   ") is None
    assert parse(b"@a=b ") is None


_words = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0 "), min_size=1
)


@settings(max_examples=300, deadline=None)
@given(
    verb=st.from_regex(r"[A-Z]{1,10}|[0-9]{3}", fullmatch=True),
    params=st.lists(_words.filter(lambda w: not w.startswith(":")), max_size=5),
    trailing=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0")),
    tags=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9/-]{0,10}", fullmatch=True),
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")),
        max_size=3,
    ),
)
def test_what_is_encoded_parses_back_the_same(verb, params, trailing, tags):
    data = encode_line(verb, [*params, trailing], "src", tags)
    assert data.endswith(b"\r\n")
    line = parse(data[:-2])
    assert line is not None
    assert (line.verb, line.params, line.source) == (verb, [*params, trailing], "src")
    assert line.tags == tags


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700))
def test_any_bytes_decode_without_error(data):
    decoder = LineDecoder()
    for item in decoder.feed(data + b"\n"):
        if item is not TOO_LONG:
            assert isinstance(item, bytes)
            parse(item)


# names


@pytest.mark.parametrize("name", ["alice", "bob.smith", "a.b.c", "9lives", "x_-y"])
def test_every_username_has_a_nick_that_maps_back(name):
    assert username_of(nick_of(name)) == name
    assert "." not in nick_of(name)


def test_names_that_are_no_username_have_none():
    assert username_of("bad!nick") is None
    assert username_of("a") is None


def test_rooms_are_lower_case_channels():
    assert room_of("#General") == "general"
    assert room_of("general") is None
    assert room_of("##x") is None
    assert room_of("#caf\u00e9") is None
    assert channel_of("general") == "#general"


def test_a_guest_is_named_guest_nick():
    assert guest_username("bob") == "guest-bob"
    assert guest_username("b|c") == "guest-b.c"
    assert guest_username("x" * 30) is None


def test_msgids_carry_the_database_prefix():
    assert message_id_of("abc", msgid_of("abc", 42)) == 42
    assert message_id_of("abc", msgid_of("xyz", 42)) is None
    assert message_id_of("abc", "abc-") is None


# text


def test_formatting_is_stripped_and_the_rest_is_valid_chatd_text():
    text = "\x02bold\x02 \x0304,12red\x03 \x1ditalic\x1d \x0fplain\x07 tab\there"
    assert strip_formatting(text) == "bold red italic plain tab\there"
    assert clean_text(strip_formatting(text))


def test_ctcp_action_is_slash_me_and_other_ctcp_is_no_message():
    assert from_irc("\x01ACTION waves\x01") == "/me waves"
    assert from_irc("\x01VERSION\x01") is None
    assert to_irc("/me waves", 60) == ["\x01ACTION waves\x01"]


def test_long_text_splits_at_words_within_the_line_limit():
    text = " ".join(["word"] * 300)
    pieces = split_line(text, 100)
    assert all(len(piece.encode()) <= 100 for piece in pieces)
    assert " ".join(pieces) == text


def test_multi_line_text_is_several_lines_without_empty_ones():
    assert to_irc("one\n\ntwo", 60) == ["one", "two"]


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=4000), st.integers(min_value=40, max_value=200))
def test_every_piece_fits_its_line(text, overhead):
    for piece in to_irc(text, overhead):
        assert len(piece.encode("utf-8")) + overhead <= MAX_LINE_BYTES or len(piece) == 1
