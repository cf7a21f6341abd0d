"""The msgspec codec against the stdlib one it replaced: same outcome, error and values.

tests/legacy_codec.py is the old decoder, frozen. Every frame, random or
adversarial, must get the same outcome from both, logged in or not: the
same request id, op and argument values, or the same error code. (Error
texts may differ: they are for humans.)
"""

from __future__ import annotations

import json
from typing import Any

import legacy_codec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatd.protocol import Refusal, decode_request
from chatd.requests import BY_NAME, INT64_MAX, INT64_MIN, op_name

ARG_NAMES = sorted(
    {name for kind in BY_NAME.values() for name in kind.__struct_encode_fields__} - {"op"}
)
EXAMPLES = 400


def new_outcome(line: bytes, logged_in: bool) -> tuple[Any, str | None, Any]:
    """The msgspec codec and the dispatcher's login check, in legacy_codec.decode's shape."""
    try:
        request = decode_request(line)
    except Refusal as refusal:
        if refusal.op is not None and refusal.op.login_required and not logged_in:
            return refusal.rid, op_name(refusal.op), "auth_required"
        name = None if refusal.op is None else op_name(refusal.op)
        return refusal.rid, name, str(refusal.error.code)
    name = op_name(type(request))
    if request.login_required and not logged_in:
        return request.id, name, "auth_required"
    values = {
        wire: getattr(request, field)
        for field, wire in zip(
            request.__struct_fields__, request.__struct_encode_fields__, strict=True
        )
        if wire != "id" and getattr(request, field) is not None
    }
    return request.id, name, values


def old_outcome(line: bytes, logged_in: bool) -> tuple[Any, str | None, Any]:
    rid, name, result = legacy_codec.decode(line, logged_in)
    if isinstance(result, dict):
        return rid, name, result
    return rid, name, str(result.code)


def same(line: bytes) -> None:
    for logged_in in (False, True):
        old, new = old_outcome(line, logged_in), new_outcome(line, logged_in)
        assert repr(new) == repr(old), (line, logged_in)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=INT64_MIN - 3, max_value=INT64_MIN + 3),
    st.integers(min_value=INT64_MAX - 3, max_value=INT64_MAX + 3),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=70),
    st.sampled_from(["general", "x" * 64, "x" * 65, "é" * 64, "\ud800", "\x00", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
frames = st.fixed_dictionaries(
    {"op": st.one_of(st.sampled_from(sorted(BY_NAME)), scalars)},
    optional={"id": values, **{name: values for name in ARG_NAMES}, "extra": values},
)


def dumps(frame: dict[str, Any], ascii_only: bool) -> bytes:
    return json.dumps(frame, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(frame=frames, ascii_only=st.booleans())
def test_random_frames(frame, ascii_only):
    same(dumps(frame, ascii_only))


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(frame=frames, data=st.data())
def test_mutated_frames(frame, data):
    raw = bytearray(dumps(frame, data.draw(st.booleans())))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        at = data.draw(st.integers(min_value=0, max_value=len(raw)))
        action = data.draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        byte = data.draw(st.sampled_from(list(b'{}[]",:\\0123456789eE.-+ntfu\x00\xff\xed')))
        if action == "set" and at < len(raw):
            raw[at] = byte
        elif action == "insert":
            raw.insert(at, byte)
        elif action == "delete" and at < len(raw):
            del raw[at]
        else:
            del raw[at:]
    same(bytes(raw))


ADVERSARIAL = [
    b'{"op":"send","room":"a","text":"b","room":"c"}',
    b'{"op":"ping","op":"send","room":"a","text":"b"}',
    b'{"op":"send","room":"a","text":"b","op":"ping"}',
    b'{"op":"ping","x":NaN}',
    b'{"op":"ping","x":Infinity}',
    b'{"op":"ping","x":-Infinity}',
    b'{"op":"ping","x":1e309}',
    b'{"op":"ping","x":1e-400}',
    b'{"op":"ping","x":9223372036854775807}',
    b'{"op":"ping","x":9223372036854775808}',
    b'{"op":"ping","x":-9223372036854775808}',
    b'{"op":"ping","x":-9223372036854775809}',
    b'{"op":"fetch","file":9223372036854775808}',
    b'{"op":"fetch","file":-0}',
    b'{"op":"fetch","file":1.0}',
    b'{"op":"fetch","file":true}',
    b'{"op":"history","room":"a","limit":null}',
    b'{"op":"history","room":null}',
    b'{"op":"ping","id":false}',
    b'{"op":"ping","id":1.5}',
    b'{"op":"ping","id":[1]}',
    b'{"op":"ping","id":"\\ud800"}',
    b'{"op":"ping","x":"\\udc00\\ud800"}',
    b'{"op":"ping","x":"\\ud83d\\ude00"}',
    b'{"op":"ping","x":"\xed\xa0\x80"}',
    b'{"op":"ping","x":"\xff"}',
    b'\xef\xbb\xbf{"op":"ping"}',
    b'  {"op":"ping"}  ',
    b'{"op":"ping"} {}',
    b'{"op":"ping"}x',
    b'{"op":"ping",}',
    b'{"op":"ping","x":"\t"}',
    b'{"op":"ping","x":' + b"[" * 31 + b"]" * 31 + b"}",
    b'{"op":"ping","x":' + b"[" * 32 + b"]" * 32 + b"}",
    b'{"op":"ping","x":' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"op":"ping","x":"' + b"[" * 40 + b'"}',
    b'{"op":"send"}',
    b'{"op":"SEND","room":"a","text":"b"}',
    b'{"op":"send","room":"a","text":"b","id":"' + b"x" * 64 + b'"}',
    b'{"op":"send","room":"a","text":"b","id":"' + b"x" * 65 + b'"}',
    b'{"op":"dm_history","with":"bob"}',
    b'{"op":"dm_history","with":7}',
    b"[]",
    b'"op"',
    b"null",
    b"{}",
    b'{"op":null}',
    b"1e999",
    b"123456789012345678901234567890",
]


@pytest.mark.parametrize("line", ADVERSARIAL)
def test_adversarial_frames(line):
    same(line)
