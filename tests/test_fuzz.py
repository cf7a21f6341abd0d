"""Property-based: random and mutated frames against a live server never get `internal`,
every complete frame gets exactly one well-formed reply, and others keep being served."""

from __future__ import annotations

import json
import string
import uuid

import pytest
from conftest import PASSWORD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire import WireClient

from chatd.errors import ErrorCode
from chatd.requests import BY_NAME

KNOWN_CODES = {code.value for code in ErrorCode}
OPS_TO_FUZZ = sorted(set(BY_NAME) - {"quit"})
ARG_NAMES = ["room", "text", "to", "with", "topic", "before", "limit", "username", "password"]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
    st.sampled_from(["general", "#General", "alice", "", " ", "x" * 4001, "\x1b[2J", "\u202e"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
requests = st.fixed_dictionaries(
    # why: Hypothesis also draws strings found in chatd's source, "quit" among them.
    {"op": st.one_of(st.sampled_from(OPS_TO_FUZZ), json_scalars.filter(lambda v: v != "quit"))},
    optional={
        "id": st.one_of(json_scalars, st.lists(st.integers(), max_size=2)),
        **{name: json_values for name in ARG_NAMES},
    },
)


def mutate(frame: bytes, data: st.DataObject) -> bytes:
    raw = bytearray(frame)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        if not raw:
            break
        at = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[at] = data.draw(st.integers(min_value=0, max_value=255))
    return bytes(raw).replace(b"\n", b" ")


def is_blank(frame: bytes) -> bool:
    return not frame.rstrip(b"\r").strip(b" \t\r")


def check_reply(reply: dict) -> None:
    assert "event" not in reply and isinstance(reply.get("ok"), bool), reply
    assert "id" in reply
    if not reply["ok"]:
        assert reply["error"] in KNOWN_CODES and reply["error"] != "internal", reply
        assert isinstance(reply["message"], str)


@pytest.fixture
def fuzz_target(start_server):
    server = start_server(max_bad_frames=0)
    bystander = WireClient(server.address)
    bystander.ok("register", username="bystander", password=PASSWORD)
    fuzzer = WireClient(server.address)
    fuzzer.ok("register", username="fuzzer", password=PASSWORD)
    fuzzer.ok("login", username="fuzzer", password=PASSWORD)
    fuzzer.ok("join", room="general")
    return fuzzer, bystander


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_frame_gets_one_protocol_reply_and_never_internal(fuzz_target, data):
    fuzzer, bystander = fuzz_target
    kind = data.draw(st.sampled_from(["request", "mutated", "bytes", "printable"]))
    if kind == "bytes":
        frame = data.draw(st.binary(max_size=200)).replace(b"\n", b"")
    elif kind == "printable":
        frame = data.draw(st.text(string.printable, max_size=200)).encode().replace(b"\n", b"")
    else:
        frame = json.dumps(data.draw(requests)).encode()
        if kind == "mutated":
            frame = mutate(frame, data)
    sync = f"sync-{uuid.uuid4()}"
    fuzzer.send_raw(frame + b"\n" + json.dumps({"op": "ping", "id": sync}).encode() + b"\n")
    replies = []
    while True:
        reply = fuzzer.next_reply()
        if reply.get("id") == sync:
            break
        replies.append(reply)
    assert len(replies) == (0 if is_blank(frame) else 1), (frame, replies)
    for reply in replies:
        check_reply(reply)
    fuzzer.events.clear()
    assert bystander.ok("ping")["ok"]
