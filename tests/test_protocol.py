"""The pure codec: framing fed byte by byte, strict JSON, ids, replies."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatd.errors import CHATD_CODES, ChatError, ErrorCode
from chatd.protocol import (
    FrameDecoder,
    FrameTooLarge,
    encode,
    error_reply,
    ok_reply,
    parse_request,
    request_id,
)


def feed_bytewise(decoder: FrameDecoder, data: bytes) -> list[bytes]:
    frames: list[bytes] = []
    for i in range(len(data)):
        frames.extend(decoder.feed(data[i : i + 1]))
    return frames


def test_frames_fed_one_byte_at_a_time_come_out_whole():
    stream = b'{"op":"ping"}\n{"op":"join","room":"caf\xc3\xa9"}\r\n'
    assert feed_bytewise(FrameDecoder(), stream) == [
        b'{"op":"ping"}',
        b'{"op":"join","room":"caf\xc3\xa9"}',
    ]


def test_blank_lines_are_skipped_and_only_one_cr_is_dropped():
    decoder = FrameDecoder()
    assert list(decoder.feed(b"\n \t\r\n\r\n{}\r\r\n")) == [b"{}\r"]


def test_partial_frame_waits_for_its_newline():
    decoder = FrameDecoder()
    assert list(decoder.feed(b'{"op":')) == []
    assert list(decoder.feed(b'"ping"}\n{')) == [b'{"op":"ping"}']
    assert decoder.buffered == 1


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
def test_frame_of_exactly_the_limit_passes(line_end):
    limit = 1024
    body = b'"' + b"x" * (limit - len(line_end) - 2) + b'"'
    frames = feed_bytewise(FrameDecoder(limit), body + line_end)
    assert frames == [body]


def test_frame_one_byte_over_the_limit_is_refused():
    limit = 1024
    with pytest.raises(FrameTooLarge):
        feed_bytewise(FrameDecoder(limit), b"x" * limit + b"\n")


def test_overlong_partial_frame_is_refused_before_its_newline():
    decoder = FrameDecoder(1024)
    with pytest.raises(FrameTooLarge):
        list(decoder.feed(b"x" * 1025))


def test_frames_before_an_oversize_one_are_still_delivered():
    decoder = FrameDecoder(1024)
    frames = []
    with pytest.raises(FrameTooLarge):
        for frame in decoder.feed(b"{}\n" + b"y" * 2000):
            frames.append(frame)
    assert frames == [b"{}"]


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe",
        b"not json",
        b'{"op": NaN}',
        b'{"op": Infinity}',
        b'{"op": -Infinity}',
        b'{"x": 1e999}',
        b'{"s": "\\ud800"}',
        b'{"\\udfff": 1}',
        b'{"n": 9223372036854775808}',
        b'{"n": -9223372036854775809}',
        b'{"a": [{"n": 99999999999999999999}]}',
        b'{"n": 1' + b"0" * 5000 + b"}",
        b"[1, 2]",
        b'"string"',
        b"42",
        b"null",
        b"{" + b'"a":{' * 32 + b"}" * 33,
        b"[" * 100000 + b"]" * 100000,
    ],
)
def test_bad_frames_are_bad_request(raw):
    with pytest.raises(ChatError) as caught:
        parse_request(raw)
    assert caught.value.code is ErrorCode.BAD_REQUEST


def test_nesting_of_exactly_32_levels_and_int64_bounds_are_accepted():
    nested = b"{" + b'"a":{' * 31 + b"}" * 32
    assert parse_request(nested)["a"]
    frame = parse_request(b'{"lo": -9223372036854775808, "hi": 9223372036854775807, "f": 1.5}')
    assert frame == {"lo": -(2**63), "hi": 2**63 - 1, "f": 1.5}
    assert parse_request(b'{"text": "99999999999999999999"}') == {"text": "9" * 20}


@pytest.mark.parametrize("rid", [None, 0, -5, 2**63 - 1, "", "x" * 64])
def test_valid_ids(rid):
    assert request_id({"id": rid}) == rid


@pytest.mark.parametrize("rid", [True, False, 1.5, "x" * 65, [], {}])
def test_invalid_ids_are_bad_request(rid):
    with pytest.raises(ChatError) as caught:
        request_id({"id": rid})
    assert caught.value.code is ErrorCode.BAD_REQUEST


def test_encode_is_one_compact_utf8_line():
    data = encode({"text": "héllo\nworld", "n": 1})
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert json.loads(data) == {"text": "héllo\nworld", "n": 1}
    assert "é".encode() in data


def test_replies_carry_id_ok_and_error_fields():
    assert ok_reply(7, {"room": "a"}) == {"id": 7, "ok": True, "room": "a"}
    reply = error_reply("x", ChatError(ErrorCode.RATE_LIMITED, "slow down", retry_after=1.5))
    assert reply == {
        "id": "x",
        "ok": False,
        "error": "rate_limited",
        "message": "slow down",
        "retry_after": 1.5,
    }


def test_error_codes_mirror_the_protocol_list():
    from pathlib import Path

    protocol = Path(__file__).resolve().parents[2] / "shared" / "PROTOCOL.md"
    if not protocol.exists():
        pytest.skip("../shared/PROTOCOL.md is not beside this checkout")
    text = protocol.read_text()
    section = text.split("## Error codes", 1)[1].split("## Files", 1)[0]
    more = text.split("More error codes:", 1)[1].split("\n\n", 1)[0]
    import re

    listed = set(re.findall(r"`([a-z_]+)`", section + more))
    assert listed | CHATD_CODES == {code.value for code in ErrorCode}


def test_chatds_own_error_codes_are_documented():
    from pathlib import Path

    notes = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    for code in CHATD_CODES:
        assert f"`{code}`" in notes, code


def test_a_consumer_that_stops_early_loses_no_frame():
    decoder = FrameDecoder()
    frames = decoder.feed(b"{}\n[]\n")
    assert next(frames) == b"{}"
    frames.close()
    assert list(decoder.feed(b"1\n")) == [b"[]", b"1"]


def test_message_frames_equal_the_plain_encoding():
    from chatd.protocol import message_body, message_frames

    message = {"id": 3, "room": None, "to": "bob", "user": "alice", "text": "é\n", "ts": "x"}
    for rid in (None, 7, 'a"b'):
        event, reply = message_frames(message_body(message), "dm", rid)
        assert json.loads(event) == {"event": "dm", **message}
        assert json.loads(reply) == ok_reply(rid, {"message": message})
        assert event.endswith(b"\n") and reply.endswith(b"\n")


@settings(max_examples=300, deadline=None)
@given(
    message_id=st.integers(min_value=1, max_value=2**63 - 1),
    room=st.text(max_size=8),
    user=st.text(max_size=8),
    text=st.text(max_size=40) | st.sampled_from(['say "hi"\\', "é\n\t\u2028\x7f", "🙂" * 3]),
    ts_ms=st.integers(min_value=0, max_value=4102444800000),
)
def test_room_message_body_is_message_body_of_the_record(message_id, room, user, text, ts_ms):
    from chatd.names import format_ts
    from chatd.protocol import message_body, room_message_body
    from chatd.records import MessageRecord

    record = MessageRecord(message_id, room, user, text, ts_ms)
    fast = room_message_body(message_id, room, user, text, format_ts(ts_ms))
    assert fast == message_body(record.wire())


def test_encoded_lists_are_spliced_in_as_they_are():
    from chatd.protocol import EncodedList, message_body

    messages = [{"id": n, "text": f"é {n}"} for n in range(3)]
    history = EncodedList(message_body(m) for m in messages)
    frame = {"id": 1, "ok": True, "history": history, "members": ["a"]}
    encoded = encode(frame)
    assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
    assert json.loads(encoded) == {"id": 1, "ok": True, "history": messages, "members": ["a"]}
    assert json.loads(encode({"history": EncodedList()})) == {"history": []}
    assert json.loads(encode({"a": EncodedList([b"1"]), "b": EncodedList([b"2"])})) == {
        "a": [1],
        "b": [2],
    }
