"""chat.py: what the user sees for each event and reply, with a fake session and display."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from client.chat import Chat
from client.display import StreamDisplay
from client.recovery import Missed
from client.render import PLAIN
from client.session import State

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class FakeSession:
    username = "bob"
    state = State.CONNECTED

    def __init__(self) -> None:
        self.rooms = ["general", "random"]
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.callbacks: list[Any] = []

    def joined_rooms(self) -> list[str]:
        return list(self.rooms)

    waiting = 0

    def request(self, op: str, on_reply: Any = None, **args: Any) -> Any:
        self.sent.append((op, args))
        self.callbacks.append(on_reply)
        return type("Req", (), {"queued": False})()

    def answer(self, reply: dict[str, Any]) -> None:
        """The reply to the last request."""
        callback = self.callbacks[-1]
        assert callback is not None
        callback({"ok": True, **reply})


class Lines(StreamDisplay):
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


def test_history_pages_back_from_the_oldest_message_shown() -> None:
    chat, session, display = make()
    chat.show_messages([message(40), message(41)])
    chat.handle_line("/history 5")
    assert session.sent[-1] == ("history", {"room": "general", "limit": 5, "before": 40})
    session.answer({"messages": [message(38), message(39)]})
    assert display.lines[-4:-1] == [
        "-!- older messages of #general:",
        "11:59 <alice> m38",
        "11:59 <alice> m39",
    ]


def test_history_fills_what_a_reconnect_left_out_before_paging_further_back() -> None:
    chat, session, display = make()
    chat.show_messages([message(10)])
    missed = Missed(
        rooms={"general": [message(n) for n in range(30, 33)]}, gaps={"general": (10, 30)}
    )
    chat.reconnected(missed)
    assert any(
        "/history in #general shows the older ones you missed" in line for line in display.lines
    )
    chat.handle_line("/history 3")
    assert session.sent[-1] == ("history", {"room": "general", "limit": 3, "before": 30})
    session.answer({"messages": [message(n) for n in (27, 28, 29)]})
    assert display.lines[-1] == "-!- more missed messages of #general: /history again"
    chat.handle_line("/history 3")
    assert session.sent[-1] == ("history", {"room": "general", "limit": 3, "before": 27})
    session.answer({"messages": [message(n) for n in (9, 10, 26)]})
    assert "11:59 <alice> m26" in display.lines
    assert "11:59 <alice> m9" not in display.lines
    assert display.lines[-1] == "-!- that is all you missed in #general"
    chat.handle_line("/history 3")
    assert session.sent[-1] == ("history", {"room": "general", "limit": 3, "before": 10})


def test_after_the_screen_is_cleared_history_shows_the_newest_page_again() -> None:
    chat, session, display = make()
    chat.show_messages([message(40), message(41)])
    chat.screen_cleared()
    chat.handle_line("/history")
    assert session.sent[-1] == ("history", {"room": "general", "limit": 20})
    session.answer({"messages": [message(40), message(41)]})
    assert display.lines.count("11:59 <alice> m41") == 2


def test_pacing_is_said_once_and_shown_in_the_prompt() -> None:
    chat, session, display = make()
    session.waiting = 4
    chat.pacing(4)
    chat.pacing(3)
    assert chat.prompt_text() == "#general [pacing 4]> "
    session.waiting = 0
    chat.pacing(0)
    assert [line for line in display.lines if "slowly" in line or "waiting" in line] == [
        "-!- sending slowly, as the server allows: 4 messages waiting",
        "-!- every waiting message is sent",
    ]
    assert chat.prompt_text() == "#general> "
