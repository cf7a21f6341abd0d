"""The pure codec: framing fed byte by byte, strict JSON, typed requests, ids, replies."""

from __future__ import annotations

import json

import pytest

from chatd.errors import CHATD_CODES, ChatError, ErrorCode
from chatd.protocol import (
    FrameDecoder,
    FrameTooLarge,
    Refusal,
    decode_request,
    encode,
    error_frame,
    message_event_frame,
    message_reply_frame,
    ok_frame,
    parse_json_line,
)
from chatd.requests import DmHistory, Ping, Send


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
    with pytest.raises(Refusal) as caught:
        decode_request(raw)
    assert caught.value.error.code is ErrorCode.BAD_REQUEST
    assert caught.value.rid is None


def test_nesting_of_exactly_32_levels_and_int64_bounds_are_accepted():
    nested = b"{" + b'"a":{' * 31 + b"}" * 32
    assert parse_json_line(nested)["a"]
    frame = parse_json_line(b'{"lo": -9223372036854775808, "hi": 9223372036854775807, "f": 1.5}')
    assert frame == {"lo": -(2**63), "hi": 2**63 - 1, "f": 1.5}
    assert parse_json_line(b'{"text": "99999999999999999999"}') == {"text": "9" * 20}


def test_a_request_decodes_into_its_typed_op():
    assert decode_request(b'{"op":"send","id":3,"room":"a","text":"hi"}') == Send(
        id=3, room="a", text="hi"
    )
    assert decode_request(b'{"op":"dm_history","with":"bob","limit":null}') == DmHistory(
        with_="bob"
    )


def test_unknown_fields_are_ignored_and_a_repeated_key_keeps_its_last_value():
    line = b'{"op":"send","room":"a","text":"one","text":"two","user":"mallory","x":[[1]]}'
    assert decode_request(line) == Send(room="a", text="two")


@pytest.mark.parametrize("rid", [None, 0, -5, 2**63 - 1, "", "x" * 64])
def test_valid_ids(rid):
    assert decode_request(json.dumps({"op": "ping", "id": rid}).encode()) == Ping(id=rid)


@pytest.mark.parametrize("rid", [True, False, 1.5, "x" * 65, [], {}])
def test_invalid_ids_are_bad_request_with_a_null_id(rid):
    with pytest.raises(Refusal) as caught:
        decode_request(json.dumps({"op": "ping", "id": rid}).encode())
    assert caught.value.error.code is ErrorCode.BAD_REQUEST
    assert caught.value.rid is None


def test_refusals_say_what_is_wrong_in_the_order_of_checks():
    cases = {
        b'{"id":1}': (1, ErrorCode.BAD_REQUEST, "op must be a string", None),
        b'{"id":1,"op":"fly"}': (1, ErrorCode.UNKNOWN_OP, "unknown op 'fly'", None),
        b'{"id":1,"op":"send","room":"a"}': (1, ErrorCode.BAD_REQUEST, "send needs 'text'", Send),
        b'{"id":1,"op":"send","room":5,"text":"x","y":1}': (
            1,
            ErrorCode.BAD_REQUEST,
            "'room' must be a string",
            Send,
        ),
    }
    for line, (rid, code, text, op) in cases.items():
        with pytest.raises(Refusal) as caught:
            decode_request(line)
        refusal = caught.value
        assert (refusal.rid, refusal.error.code, refusal.error.message, refusal.op) == (
            rid,
            code,
            text,
            op,
        )


def test_encode_is_one_compact_utf8_line():
    data = encode({"text": "héllo\nworld", "n": 1})
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert json.loads(data) == {"text": "héllo\nworld", "n": 1}
    assert "é".encode() in data


def test_replies_carry_id_ok_and_error_fields():
    assert json.loads(ok_frame(7, b'{"room":"a"}')) == {"id": 7, "ok": True, "room": "a"}
    assert json.loads(ok_frame("x", b"{}")) == {"id": "x", "ok": True}
    reply = error_frame("x", ChatError(ErrorCode.RATE_LIMITED, "slow down", retry_after=1.5))
    assert json.loads(reply) == {
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
    more = " ".join(part.split("\n\n", 1)[0] for part in text.split("More error codes:")[1:])
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
    message = {"id": 3, "room": None, "to": "bob", "user": "alice", "text": "é\n", "ts": "x"}
    body = encode(message)[:-1]
    event = message_event_frame("dm", body)
    assert json.loads(event) == {"event": "dm", **message}
    for rid in (None, 7, 'a"b'):
        reply = message_reply_frame(rid, body)
        assert json.loads(reply) == {"id": rid, "ok": True, "message": message}
        assert event.endswith(b"\n") and reply.endswith(b"\n")
