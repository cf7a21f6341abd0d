"""render.py: pure formatting, and nothing received ever reaching the terminal raw."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime

import pytest

from chatd.errors import ErrorCode
from client import render
from client.errors import ClientErrorCode, error_code
from client.layout import display_width
from client.render import PLAIN, Style

COLOUR = Style(colour=True)
TS = "2026-11-24T23:45:56.123Z"
AT_40 = {"me": "bob", "current_room": "general", "style": PLAIN, "tz": UTC, "width": 40}
OSC8 = re.compile(r"\x1b\]8;;([^\x1b]*)\x1b\\")


def msg(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"id": 7, "room": "general", "user": "alice", "text": "hi", "ts": TS}
    base.update(fields)
    return base


def lines(message: dict[str, object], *, current: str | None = "general", style: Style = PLAIN):
    return render.message_lines(message, me="bob", current_room=current, style=style, tz=UTC)


HOSTILE = [
    "\x1b[2J\x1b[H",  # clear screen, cursor home
    "\x1b]0;pwned\x07",  # set window title (OSC, BEL)
    "\x1b]52;c;ZXZpbA==\x1b\\",  # write the clipboard (OSC 52, ST)
    "\x1bP+q544e\x1b\\",  # DCS request
    "\x9b31m",  # 8-bit CSI
    "\x9d0;title\x9c",  # 8-bit OSC
    "\x1b[6n",  # cursor position report request
    "\x1bc",  # full reset
    "\x1b7\x1b8",  # save/restore cursor
    "\x07\x08\x7f\x00\r",  # bell, backspace, DEL, NUL, carriage return
    "\u202eevil\u202c",  # right-to-left override
    "\x1b[",  # truncated CSI
    "\x1b",  # lone ESC
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_sanitize_leaves_no_control_character(payload: str) -> None:
    # é is not ASCII, so it cannot be mistaken for the end of a truncated sequence
    cleaned = render.sanitize(f"a{payload}é")
    assert cleaned.startswith("a") and cleaned.endswith("é")
    assert not any(unicodedata.category(ch) == "Cc" for ch in cleaned), repr(cleaned)
    assert "\u202e" not in cleaned


def test_sanitize_removes_escape_sequences_whole() -> None:
    assert render.sanitize("\x1b[31mred\x1b[0m \x1b]0;title\x07done") == "red done"


def test_sanitize_keeps_ordinary_unicode() -> None:
    text = "héllo wörld 你好 🙂 e\u0301"
    assert render.sanitize(text) == text


def test_sanitize_tabs_and_newlines() -> None:
    assert render.sanitize("a\tb") == "a    b"
    assert render.sanitize("a\nb") == "a b"
    assert render.sanitize("a\nb", keep_newlines=True) == "a\nb"
    assert render.sanitize("a\u2028b") == "a b"


def test_sanitize_non_strings() -> None:
    assert render.sanitize(None) == ""
    assert render.sanitize(42) == "42"


@pytest.mark.parametrize("field", ["user", "room", "text", "ts", "to"])
def test_hostile_message_fields_never_reach_the_line(field: str) -> None:
    evil = "x\x1b]0;pwned\x07\x1b[2Jy"
    message = msg(**{field: evil})
    if field == "to":
        message["room"] = None
    for line in lines(message, style=COLOUR):
        # our own colour codes are the only escapes: ESC followed by [ digits ; m
        stripped = line
        for code in ("\x1b[0m", "\x1b[1m", "\x1b[2m", "\x1b[36m", "\x1b[1;31m"):
            stripped = stripped.replace(code, "")
        for colour in render.NAME_COLOURS:
            stripped = stripped.replace(f"\x1b[{colour}m", "")
        assert "\x1b" not in stripped and "\x07" not in stripped, repr(line)
        assert "pwned" not in line


def test_room_message_in_current_room() -> None:
    assert lines(msg()) == ["23:45 <alice> hi"]


def test_room_message_elsewhere_carries_the_room() -> None:
    assert lines(msg(), current="random") == ["23:45 #general <alice> hi"]
    assert lines(msg(), current=None) == ["23:45 #general <alice> hi"]


def test_local_time_uses_the_given_zone() -> None:
    from datetime import timedelta, timezone

    line = render.message_lines(
        msg(), me="bob", current_room="general", style=PLAIN, tz=timezone(timedelta(hours=2))
    )
    assert line == ["01:45 <alice> hi"]


def test_action_and_direct_messages() -> None:
    assert lines(msg(text="/me waves")) == ["23:45 * alice waves"]
    assert lines(msg(room=None, to="bob")) == ["23:45 *alice* hi"]
    assert lines(msg(room=None, user="bob", to="alice")) == ["23:45 -> *alice* hi"]


def test_an_action_in_a_direct_message_keeps_the_direct_mark() -> None:
    assert lines(msg(room=None, to="bob", text="/me waves")) == ["23:45 *alice* * alice waves"]
    sent = msg(room=None, user="bob", to="alice", text="/me waves")
    assert lines(sent) == ["23:45 -> *alice* * bob waves"]
    assert lines(msg(room=None, to="bob", text="/message")) == ["23:45 *alice* /message"]


def test_multiline_message_is_indented_under_its_text() -> None:
    assert lines(msg(text="one\ntwo\n\tthree")) == [
        "23:45 <alice> one",
        "              two",
        "                  three",
    ]


def test_file_message_names_the_file() -> None:
    message = msg(text="look", file={"id": 3, "name": "cat.png", "size": 2048, "mime": "x/y"})
    assert lines(message) == [
        "23:45 alice shared cat.png (2.0 KiB, x/y) - /download 3",
        "      look",
    ]


def test_bad_timestamp_or_missing_fields_do_not_raise() -> None:
    assert lines({"room": "general"}) == ["--:-- <?> "]
    assert lines(msg(ts="yesterday")) == ["--:-- <alice> hi"]


def test_name_colour_is_stable_and_case_insensitive() -> None:
    assert render.name_colour("alice") == render.name_colour("Alice")
    assert render.name_colour("alice") in render.NAME_COLOURS
    # crc32 of the folded name, not the salted hash(): same value in every process
    assert render.name_colour("alice") == render.NAME_COLOURS[663665735 % 12]
    assert len({render.name_colour(f"user{n}") for n in range(100)}) > 6


def test_colour_style_paints_names_and_plain_style_does_not() -> None:
    coloured = lines(msg(), style=COLOUR)[0]
    assert f"\x1b[{render.name_colour('alice')}malice\x1b[0m" in coloured
    assert "\x1b" not in lines(msg())[0]


def test_join_part_topic_lines_are_dim() -> None:
    moment = datetime(2026, 11, 24, 9, 5, tzinfo=UTC)
    join = render.event_lines(
        {"event": "join", "room": "general", "user": "bob"}, moment=moment, style=COLOUR
    )
    assert join == ["\x1b[2m09:05 -- bob joined #general\x1b[0m"]
    part = render.event_lines(
        {"event": "part", "room": "a", "user": "b"}, moment=moment, style=PLAIN
    )
    assert part == ["09:05 -- b left #a"]
    topic = render.event_lines(
        {"event": "topic", "room": "a", "user": "b", "topic": "news"}, moment=moment, style=PLAIN
    )
    assert topic == ["09:05 -- b set the topic of #a: news"]
    cleared = render.event_lines(
        {"event": "topic", "room": "a", "user": "b", "topic": ""}, moment=moment, style=PLAIN
    )
    assert cleared == ["09:05 -- b cleared the topic of #a"]
    assert render.event_lines({"event": "message"}, moment=moment, style=PLAIN) == []


def test_day_line() -> None:
    assert render.day_line(date(2026, 11, 24), PLAIN) == "-- Tuesday 24 November 2026 --"


def test_error_text_has_a_clear_line_for_each_code() -> None:
    assert render.error_text({"error": "username_taken", "message": "x"}) == (
        "that username is taken"
    )
    assert render.error_text({"error": "invalid_credentials"}) == "wrong username or password"
    assert render.error_text({"error": "not_in_room", "message": "you are not in #a"}) == (
        "you are not in #a"
    )
    limited = render.error_text({"error": "rate_limited", "retry_after": 2.4})
    assert limited == "slow down: too many requests; try again in 2 s"
    assert render.error_text({"error": "brand_new", "message": "m\x1b[2J"}) == "m"


def test_rate_limited_shows_what_the_server_says_is_limited() -> None:
    logins = "too many failed logins for this account from your address; try again in 60 s"
    limited = {"error": "rate_limited", "message": logins, "retry_after": 60.0}
    assert render.error_text(limited) == logins
    undated = {"error": "rate_limited", "message": "too many uploads", "retry_after": 2.4}
    assert render.error_text(undated) == "too many uploads; try again in 2 s"


def test_error_codes_from_the_wire_are_looked_up_safely() -> None:
    assert error_code({"error": "rate_limited"}) is ErrorCode.RATE_LIMITED
    assert error_code({"error": "from_a_newer_server"}) is None
    assert error_code({"error": ["not", "a", "string"]}) is None
    assert error_code({"ok": True}) is None
    # only the client itself gives a reply its own codes; from the wire it is unknown
    assert error_code({"error": "not_sent"}) is None
    assert error_code({"error": ClientErrorCode.NOT_SENT}) is ClientErrorCode.NOT_SENT
    assert render.error_text({"error": "not_sent", "message": "odd"}) == "odd"
    assert render.error_text({"error": "from_a_newer_server"}) == "from_a_newer_server"


def test_who_and_rooms_lines() -> None:
    who = render.who_lines(
        {"room": "a", "members": ["zed", "bob", "amy"], "online": ["zed"]}, PLAIN
    )
    assert who == ["-!- #a: 3 members, 1 online", "-!- +zed amy bob"]
    rooms = render.rooms_lines(
        {"rooms": [{"room": "a", "topic": "t", "members": 2, "messages": 5}]}, {"a"}, PLAIN
    )
    assert rooms[0].startswith("-!- * #a") and rooms[0].endswith("2 members, 5 msgs  t")
    assert "no rooms" in render.rooms_lines({"rooms": []}, set(), PLAIN)[0]


def test_rooms_counts_read_as_english() -> None:
    rooms = render.rooms_lines(
        {"rooms": [{"room": "a", "topic": "", "members": 1, "messages": 1}]}, set(), PLAIN
    )
    assert rooms[0].endswith("1 member, 1 msg")
    hostile = render.rooms_lines({"rooms": [{"room": "a", "members": "x\x1b[2J"}]}, set(), PLAIN)
    assert hostile[0].endswith("? members, ? msgs")


def test_counts_read_as_english() -> None:
    assert render.counted(1, "member") == "1 member"
    assert render.counted(0, "member") == "0 members"
    assert render.counted(2, "member") == "2 members"


def test_shutdown_reason_is_said_once() -> None:
    assert render.shutdown_text("the server is shutting down") == "the server is shutting down"
    assert render.shutdown_text("") == "the server is shutting down"
    assert render.shutdown_text(None) == "the server is shutting down"
    assert render.shutdown_text("The server is shutting down for an upgrade.") == (
        "The server is shutting down for an upgrade."
    )
    assert render.shutdown_text("maintenance\x1b[2J") == "the server is shutting down: maintenance"


LINKS = Style(colour=False, links=True)
FOX = "the quick brown fox jumps over the lazy dog again and again"


def test_a_long_line_wraps_at_words_under_its_text() -> None:
    assert render.message_lines(msg(text=FOX), **AT_40) == [
        "23:45 <alice> the quick brown fox jumps",
        "              over the lazy dog again",
        "              and again",
    ]


def test_wrapping_counts_cells_not_characters_or_escapes() -> None:
    for text in (FOX, "你好" * 30, "e\u0301" * 70):
        for style in (PLAIN, COLOUR, LINKS):
            shown = render.message_lines(msg(text=text), **{**AT_40, "style": style})
            assert len(shown) > 1
            assert all(display_width(line) <= 40 for line in shown), shown


def test_a_url_cut_by_wrapping_still_links_to_the_whole_url_on_each_line() -> None:
    url = "https://example.org/" + "a" * 60
    shown = render.message_lines(msg(text=f"see {url} now"), **{**AT_40, "style": LINKS})
    assert len(shown) == 4
    targets = [OSC8.findall(line) for line in shown]
    assert targets[:3] == [[url, ""], [url, ""], [url, ""]]
    assert OSC8.sub("", shown[-1]).endswith("now")


def test_scripts_get_whole_lines() -> None:
    assert render.message_lines(
        msg(text=FOX), me="bob", current_room="general", style=PLAIN, tz=UTC
    ) == [f"23:45 <alice> {FOX}"]


def test_notices_and_events_wrap_under_their_text() -> None:
    assert render.notice_lines(FOX, PLAIN, width=30) == [
        "-!- the quick brown fox jumps",
        "    over the lazy dog again",
        "    and again",
    ]
    errors = render.notice_lines(FOX, COLOUR, width=30, error=True)
    assert errors[1] == "    \x1b[1;31mover the lazy dog again\x1b[0m"
    topic = {"event": "topic", "room": "a", "user": "b", "topic": FOX}
    moment = datetime(2026, 11, 24, 9, 5, tzinfo=UTC)
    assert render.event_lines(topic, moment=moment, style=PLAIN, width=40) == [
        "09:05 -- b set the topic of #a: the",
        "         quick brown fox jumps over the",
        "         lazy dog again and again",
    ]


def test_a_file_line_wraps_under_the_time_like_its_caption() -> None:
    message = msg(text="look", file={"id": 3, "name": "a rather long file name.png", "size": 2048})
    assert render.message_lines(message, **AT_40) == [
        "23:45 alice shared a rather long file",
        "      name.png (2.0 KiB,",
        "      application/octet-stream) -",
        "      /download 3",
        "      look",
    ]


def test_tables_wrap_their_second_column_under_itself() -> None:
    rows = [
        ("/join ROOM", "join a room (creating it) and make it current"),
        ("/upload [@USER] PATH [CAPTION]", "send a file to the current room"),
    ]
    assert render.table_lines(rows, PLAIN, width=40) == [
        "-!- /join ROOM        join a room",
        "                      (creating it) and",
        "                      make it current",
        "-!- /upload [@USER] PATH [CAPTION]",
        "                      send a file to the",
        "                      current room",
    ]
    assert render.table_lines(rows, PLAIN) == [
        "-!- /join ROOM                      join a room (creating it) and make it current",
        "-!- /upload [@USER] PATH [CAPTION]  send a file to the current room",
    ]


def test_rooms_wrap_like_a_table() -> None:
    reply = {
        "rooms": [{"room": "general", "members": 3, "messages": 120, "topic": "release plans"}]
    }
    assert render.rooms_lines(reply, {"general"}, PLAIN, width=40) == [
        "-!- * #general  3 members, 120 msgs",
        "                release plans",
    ]
