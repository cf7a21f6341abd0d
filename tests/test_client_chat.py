"""chat.py: what the user sees for each event and reply, with a fake session and display."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from client.chat import Chat
from client.render import PLAIN
from client.session import State

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class FakeSession:
    username = "bob"
    state = State.CONNECTED

    def __init__(self) -> None:
        self.rooms = ["general", "random"]
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def joined_rooms(self) -> list[str]:
        return list(self.rooms)

    def request(self, op: str, on_reply: Any = None, **args: Any) -> Any:
        self.sent.append((op, args))
        return type("Req", (), {"queued": False})()


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.errors: list[str] = []

    def show(self, line: str, *, error: bool = False) -> None:
        (self.errors if error else self.lines).append(line)

    def refresh(self) -> None:
        pass

    def width(self) -> int | None:
        return None


def make() -> tuple[Chat, FakeSession, Lines]:
    session, display = FakeSession(), Lines()
    chat = Chat(session, display, style=PLAIN, tz=UTC, now=lambda: NOW)  # type: ignore[arg-type]
    chat.current = "general"
    return chat, session, display


def message(mid: int, room: str | None = "general", ts: str = "2026-11-24T11:59:00.000Z"):
    return {
        "event": "message",
        "id": mid,
        "room": room,
        "user": "alice",
        "text": f"m{mid}",
        "ts": ts,
    }


def test_a_message_seen_live_and_again_in_a_history_is_shown_once() -> None:
    chat, _, display = make()
    chat.event(message(5))
    chat.entered(
        {
            "room": "general",
            "topic": "",
            "members": [],
            "online": [],
            "history": [message(4), message(5)],
        }
    )
    assert [line for line in display.lines if "<alice>" in line] == [
        "11:59 <alice> m5",
        "11:59 <alice> m4",
    ]


def test_day_line_when_the_date_changes() -> None:
    chat, _, display = make()
    chat.event(message(1, ts="2026-11-23T08:00:00.000Z"))
    chat.event(message(2, ts="2026-11-24T08:00:00.000Z"))
    assert display.lines == [
        "-- Monday 23 November 2026 --",
        "08:00 <alice> m1",
        "-- Tuesday 24 November 2026 --",
        "08:00 <alice> m2",
    ]


def test_other_rooms_carry_their_name_and_plain_lines_go_to_the_current_room() -> None:
    chat, session, display = make()
    chat.event(message(3, room="random"))
    assert display.lines == ["11:59 #random <alice> m3"]
    chat.handle_line("hello")
    assert session.sent[-1] == ("send", {"room": "general", "text": "hello"})
    assert chat.prompt_text() == "#general> "


def test_parting_the_current_room_elsewhere_moves_to_another() -> None:
    chat, session, display = make()
    session.rooms = ["random"]  # the session already saw our part event
    chat.event({"event": "part", "room": "general", "user": "bob"})
    assert chat.current == "random"
    assert display.lines == ["12:00 -- bob left #general"]


def test_hostile_server_error_event_is_sanitised() -> None:
    chat, _, display = make()
    chat.event({"event": "error", "error": "x", "message": "bad\x1b[2J thing"})
    assert display.errors == ["-!- server: bad thing"]
