"""Every request of the wire protocol as a typed value: one msgspec Struct per op.

The op table of PROTOCOL.md, written once: the field names and JSON types of
each op's arguments, which are required, which op needs a login. Decoding a
frame into one of these (protocol.decode_request) checks the JSON, the
argument presence and the types in one C call; handlers then receive the
Struct, never a dict.

Fields are all keyword-only and unknown fields are refused here (the codec
falls back to a slower path that ignores them, as PROTOCOL.md wants), so
that the fast path needs no other check: every value it accepts is a string
or an integer of a declared field.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_ID_CHARS = 64

# why: PROTOCOL.md: integers outside signed 64 bits are bad_request, whatever the field.
Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
RequestId = Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)] | Int64 | None


class Op(msgspec.Struct, tag_field="op", kw_only=True, forbid_unknown_fields=True, gc=False):
    """A request: one op (the subclass, by its `tag`) with its arguments."""

    id: RequestId = None
    login_required: ClassVar[bool] = True


class Register(Op, tag="register", kw_only=True, forbid_unknown_fields=True):
    login_required: ClassVar[bool] = False
    username: str
    password: str


class Login(Op, tag="login", kw_only=True, forbid_unknown_fields=True):
    login_required: ClassVar[bool] = False
    username: str
    password: str


class Join(Op, tag="join", kw_only=True, forbid_unknown_fields=True):
    room: str


class Part(Op, tag="part", kw_only=True, forbid_unknown_fields=True):
    room: str


class Send(Op, tag="send", kw_only=True, forbid_unknown_fields=True):
    room: str
    text: str
    reply_to: Int64 | None = None


class History(Op, tag="history", kw_only=True, forbid_unknown_fields=True):
    room: str
    before: Int64 | None = None
    after: Int64 | None = None
    limit: Int64 | None = None


class Rooms(Op, tag="rooms", kw_only=True, forbid_unknown_fields=True):
    pass


class Who(Op, tag="who", kw_only=True, forbid_unknown_fields=True):
    room: str


class Dm(Op, tag="dm", kw_only=True, forbid_unknown_fields=True):
    to: str
    text: str
    reply_to: Int64 | None = None


class DmHistory(Op, tag="dm_history", kw_only=True, forbid_unknown_fields=True):
    with_: str | None = msgspec.field(default=None, name="with")
    before: Int64 | None = None
    after: Int64 | None = None
    limit: Int64 | None = None


class Topic(Op, tag="topic", kw_only=True, forbid_unknown_fields=True):
    room: str
    topic: str


class Ping(Op, tag="ping", kw_only=True, forbid_unknown_fields=True):
    login_required: ClassVar[bool] = False


class Quit(Op, tag="quit", kw_only=True, forbid_unknown_fields=True):
    login_required: ClassVar[bool] = False


class Upload(Op, tag="upload", kw_only=True, forbid_unknown_fields=True):
    name: str
    size: Int64
    sha256: str
    room: str | None = None
    to: str | None = None
    mime: str | None = None
    text: str | None = None


class Chunk(Op, tag="chunk", kw_only=True, forbid_unknown_fields=True):
    upload: str
    offset: Int64
    data: str


class Finish(Op, tag="finish", kw_only=True, forbid_unknown_fields=True):
    upload: str


class Fetch(Op, tag="fetch", kw_only=True, forbid_unknown_fields=True):
    file: Int64
    offset: Int64 | None = None


class MarkRead(Op, tag="mark_read", kw_only=True, forbid_unknown_fields=True):
    message_id: Int64
    room: str | None = None
    with_: str | None = msgspec.field(default=None, name="with")


class Unread(Op, tag="unread", kw_only=True, forbid_unknown_fields=True):
    pass


class Edit(Op, tag="edit", kw_only=True, forbid_unknown_fields=True):
    message_id: Int64
    text: str


class Delete(Op, tag="delete", kw_only=True, forbid_unknown_fields=True):
    message_id: Int64


class Search(Op, tag="search", kw_only=True, forbid_unknown_fields=True):
    query: str
    room: str | None = None
    with_: str | None = msgspec.field(default=None, name="with")
    before: Int64 | None = None
    limit: Int64 | None = None


OPS: tuple[type[Op], ...] = (
    Register,
    Login,
    Join,
    Part,
    Send,
    History,
    Rooms,
    Who,
    Dm,
    DmHistory,
    Topic,
    Ping,
    Quit,
    Upload,
    Chunk,
    Finish,
    Fetch,
    MarkRead,
    Unread,
    Edit,
    Delete,
    Search,
)


def op_name(kind: type[Op]) -> str:
    tag = kind.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


BY_NAME: dict[str, type[Op]] = {op_name(kind): kind for kind in OPS}
