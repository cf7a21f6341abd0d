"""The client's conversation state, without a server: marking read, alerts, how lines look."""

from __future__ import annotations

from client import render
from client.conversations import Notifier, ReadMarks, conversation_of

MESSAGE = {
    "id": 7,
    "room": "general",
    "user": "alice",
    "text": "hi",
    "ts": "2026-01-01T10:00:00.000Z",
}


def test_read_marks_send_one_request_per_conversation_never_less() -> None:
    sent: list[tuple[tuple[str, str], int]] = []
    marks = ReadMarks(lambda conversation, mid: sent.append((conversation, mid)), delay=3600)
    marks.shown(("room", "general"), 5)
    marks.shown(("room", "general"), 9)
    marks.shown(("room", "general"), 7)
    marks.shown(("with", "bob"), 3)
    marks.elsewhere(("with", "bob"), 4)  # another device read further: nothing to send
    marks.flush()
    assert sent == [(("room", "general"), 9)]
    marks.shown(("room", "general"), 8)
    marks.close()
    assert sent == [(("room", "general"), 9)]
    marks.shown(("room", "general"), 20)  # closed: nothing more
    marks.flush()
    assert len(sent) == 1


def test_conversation_of_a_message_as_the_user_sees_it() -> None:
    assert conversation_of(MESSAGE, "bob") == ("room", "general")
    direct = {"id": 1, "room": None, "user": "alice", "to": "bob", "text": "x", "ts": ""}
    assert conversation_of(direct, "bob") == ("with", "alice")
    assert conversation_of(direct, "ALICE") == ("with", "bob")


def test_notifier_rings_and_picks_the_way_to_notify() -> None:
    written: list[str] = []
    spawned: list[list[str]] = []

    def notifier(env: dict[str, str], desktop: bool, found: str | None) -> Notifier:
        written.clear()
        return Notifier(
            written.append,
            env,
            desktop=desktop,
            which=lambda _name: found,
            spawn=spawned.append,
        )

    notifier({}, False, "/usr/bin/notify-send").alert("alice (#general)", "hi")
    assert written == ["\a"] and spawned == []
    notifier({"DISPLAY": ":0"}, True, "/usr/bin/notify-send").alert("alice", "hi")
    assert spawned == [["/usr/bin/notify-send", "--app-name=chat", "alice", "hi"]]
    notifier({"TERM_PROGRAM": "iTerm.app"}, True, None).alert("alice", "hi")
    assert written == ["\a", "\x1b]9;alice: hi\x07"]
    notifier({}, True, "/usr/bin/notify-send").alert("a;b", "hi")  # no display: the terminal
    assert written == ["\a", "\x1b]777;notify;a,b;hi\x07"]


def test_message_lines_for_ids_quotes_edits_deletes_and_mentions() -> None:
    def line(message: dict, **options) -> list[str]:
        return render.message_lines(
            message, me="bob", current_room="general", style=render.PLAIN, **options
        )

    assert line({**MESSAGE, "edited": "2026-01-01T10:05:00.000Z"})[0].endswith(
        "<alice> hi (edited)"
    )
    assert line({**MESSAGE, "text": "", "deleted": True})[0].endswith("<alice> (message deleted)")
    assert line(MESSAGE, show_id=True)[0].startswith("[7] ")
    quoted = line(MESSAGE, quote=render.quote_text({"user": "carol", "text": "x" * 80}, 3))
    assert quoted[0].endswith("<alice> ↳ carol: " + "x" * 49 + "…")
    assert quoted[1].strip() == "hi"
    assert render.quote_text(None, 3) == "in reply to 3"
    painted = render.message_lines(
        {**MESSAGE, "mentions": ["Bob"]}, me="bob", current_room="general", style=render.Style()
    )
    assert f"\x1b[{render.HIGHLIGHT}mhi" in painted[0]


def test_unread_lines() -> None:
    reply = {
        "rooms": [
            {"room": "general", "last_read": 1, "last_id": 9, "unread": 12, "mentions": 2},
            {"room": "quiet", "last_read": 9, "last_id": 9, "unread": 0, "mentions": 0},
            {"room": "busy", "last_read": 0, "last_id": 9, "unread": 1000, "mentions": 0},
        ],
        "dms": [{"with": "alice", "last_read": 0, "last_id": 4, "unread": 2, "mentions": 2}],
    }
    assert render.unread_lines(reply, render.PLAIN) == [
        "-!- #general 12 new, 2 mentions",
        "-!- #busy 1000+ new",
        "-!- alice 2 new",
    ]
