"""The full screen in process: timelines, counts, settings, and keys through a pipe input."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from test_client_chat import NOW, FakeSession

from chatd.exitstatus import ExitStatus
from client.activity import Activity
from client.chat import Chat
from client.conversations import ReadMarks
from client.render import PLAIN
from client.screen import ScreenDisplay, build_application
from client.settings import KEYS, Settings, SettingsError, load_settings
from client.timeline import DRAWN_ENTRIES, Entry, Timeline

pytestmark = pytest.mark.timeout(30)


def _text(rows: list[Any]) -> list[str]:
    return ["".join(text for _style, text, *_ in row) for row in rows]


def _line(text: str, message_id: int | None = None, day: date | None = None) -> Entry:
    return Entry(lambda width: [text], message_id, day)


def _timeline(count: int) -> Timeline:
    timeline = Timeline()
    for number in range(count):
        timeline.add(_line(f"m{number}", number + 1))
    return timeline


# -- timeline -------------------------------------------------------------------------


def test_the_view_follows_the_newest_lines_and_shows_only_what_fits() -> None:
    timeline = _timeline(100)
    assert _text(timeline.visible(40, 5)) == ["m95", "m96", "m97", "m98", "m99"]
    timeline.add(_line("m100", 101))
    assert _text(timeline.visible(40, 5))[-1] == "m100"


def test_only_visible_entries_are_drawn() -> None:
    drawn: list[int] = []
    timeline = Timeline()
    for number in range(1000):
        timeline.add(Entry(lambda width, n=number: drawn.append(n) or [f"m{n}"], number + 1))
    timeline.visible(40, 10)
    assert sorted(drawn) == list(range(990, 1000))
    timeline.visible(40, 10)
    assert len(drawn) == 10  # cached at this width
    timeline.visible(30, 10)
    assert len(drawn) == 20  # drawn again at the new width, still only those in view


def test_drawn_lines_are_kept_for_the_latest_entries_only() -> None:
    timeline = _timeline(3 * DRAWN_ENTRIES)
    while not timeline.scroll_up(9, 40, 10):
        timeline.visible(40, 10)
    assert sum(entry.drawn(40) for entry in timeline.entries) <= DRAWN_ENTRIES
    assert all(entry.drawn(40) for entry in list(timeline.entries)[:10])  # what is in view


def test_scrolling_up_and_down_covers_every_line_once_in_order() -> None:
    timeline = _timeline(50)
    pages = [_text(timeline.visible(40, 10))]
    while not timeline.scroll_up(9, 40, 10):
        pages.append(_text(timeline.visible(40, 10)))
    pages.append(_text(timeline.visible(40, 10)))
    assert pages[-1][0].startswith("─")  # the line above them all: PageUp for older
    seen = {line for page in pages for line in page if line.startswith("m")}
    assert seen == {f"m{n}" for n in range(50)}
    for _ in range(10):
        timeline.scroll_down(9, 40, 10)
    assert not timeline.scrolled
    assert _text(timeline.visible(40, 10))[-1] == "m49"


def test_new_lines_do_not_move_a_view_scrolled_back() -> None:
    timeline = _timeline(50)
    timeline.scroll_up(20, 40, 5)
    before = _text(timeline.visible(40, 5))
    for number in range(50, 60):
        timeline.add(_line(f"m{number}", number + 1))
    assert _text(timeline.visible(40, 5)) == before


def test_older_entries_go_above_and_the_view_stays_put() -> None:
    timeline = _timeline(5)
    timeline.scroll_up(100, 40, 4)
    timeline.loading = True
    assert "loading" in _text(timeline.visible(40, 4))[0]
    before = _text(timeline.visible(40, 4))[1:]
    for number in range(-1, -4, -1):  # newest of the page first, as Chat hands them
        timeline.add_older(_line(f"old{number}", 100 + number))
    timeline.loading = False
    assert _text(timeline.visible(40, 4))[:3] == before[:3]
    timeline.scroll_up(3, 40, 4)
    assert _text(timeline.visible(40, 4))[:3] == ["old-3", "old-2", "old-1"]


def test_edits_redraw_in_place_and_day_and_new_lines_are_drawn() -> None:
    timeline = Timeline()
    timeline.add(_line("monday", 1, date(2026, 11, 23)))
    timeline.mark_new_after(1)
    timeline.add(_line("tuesday", 2, date(2026, 11, 24)))
    rows = _text(timeline.visible(60, 10))
    assert rows[-4:-2] == ["monday", rows[-3]] and "Tuesday 24 November 2026" in rows[-3]
    assert "new since you left" in rows[-2] and rows[-1] == "tuesday"
    assert timeline.replace(2, lambda width: ["tuesday (edited)"])
    assert _text(timeline.visible(60, 10))[-1] == "tuesday (edited)"
    assert not timeline.replace(99, lambda width: ["nothing"])


def test_a_full_timeline_drops_its_oldest_entries() -> None:
    timeline = Timeline(limit=10)
    for number in range(25):
        timeline.add(_line(f"m{number}", number + 1))
    assert len(timeline.entries) == 10 and timeline.oldest_id() == 16


# -- counts ---------------------------------------------------------------------------


UNREAD = {
    "rooms": [
        {"room": "general", "last_read": 5, "last_id": 17, "unread": 12, "mentions": 2},
        {"room": "ops", "last_read": 9, "last_id": 9, "unread": 0, "mentions": 0},
    ],
    "dms": [{"with": "carol", "last_read": 3, "last_id": 4, "unread": 1}],
}


def test_counts_seeded_live_seen_and_read_elsewhere() -> None:
    activity = Activity()
    markers = activity.seed(UNREAD)
    assert markers[("room", "general")] == 5
    assert activity.label(("room", "general")) == "12!"
    assert activity.label(("room", "ops")) == ""
    assert activity.label(("with", "carol")) == "1!"
    assert not activity.arrived(("room", "general"), 17, calls_me=False)  # counted already
    assert activity.arrived(("room", "ops"), 20, calls_me=False)
    assert activity.arrived(("room", "ops"), 21, calls_me=True)
    assert activity.label(("room", "ops")) == "2!"
    activity.read_upto(("room", "ops"), 20)
    assert activity.label(("room", "ops")) == "1!"
    activity.read_upto(("room", "general"), 16)
    assert activity.unread(("room", "general")) == 12  # the server's count covers up to 17
    activity.read_upto(("room", "general"), 17)
    assert activity.unread(("room", "general")) == 0
    activity.seen(("room", "ops"))
    assert activity.label(("room", "ops")) == ""
    assert not activity.arrived(("room", "ops"), 21, calls_me=True)  # seen already


def test_the_next_active_conversation_is_a_mention_first() -> None:
    activity = Activity()
    order = [("room", "a"), ("room", "b"), ("room", "c"), ("with", "dan")]
    activity.arrived(("room", "b"), 1, calls_me=False)
    activity.arrived(("with", "dan"), 2, calls_me=True)
    assert activity.next_active(order, ("room", "a")) == ("with", "dan")
    activity.seen(("with", "dan"))
    assert activity.next_active(order, ("room", "a")) == ("room", "b")
    assert activity.label(("room", "x")) == ""
    for number in range(1000):
        activity.arrived(("room", "c"), 100 + number, calls_me=False)
    assert activity.label(("room", "c")) == "1000+"


# -- settings -------------------------------------------------------------------------


def _settings_file(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "chat" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return {"XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path)}


def test_settings_are_read_and_checked(tmp_path: Path) -> None:
    assert load_settings({"HOME": str(tmp_path)}) == Settings()
    env = _settings_file(
        tmp_path,
        'server = "example.org:7700"\nuser = "alice"\ntls = true\nline = true\n'
        'highlights = ["deploy"]\n[colours]\nmention = "bold fg:ansiblue"\n'
        '[keys]\nnext_active = ["escape a", "f2"]\n',
    )
    settings = load_settings(env)
    assert (settings.server, settings.user, settings.tls, settings.line) == (
        "example.org:7700",
        "alice",
        True,
        True,
    )
    assert settings.highlights == ("deploy",)
    assert settings.colours["mention"] == "bold fg:ansiblue"
    assert settings.keys["next_active"] == ("escape a", "f2")
    assert settings.keys["help"] == KEYS["help"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("server = ", "not valid TOML"),
        ("colour = 1", "unknown setting 'colour'"),
        ("tls = 'yes'", "tls must be true or false"),
        ("highlights = 'deploy'", "highlights must be a list"),
        ("[colours]\nmentions = 'red'", "unknown colour 'mentions'"),
        ("[colours]\nmention = 'fg:nosuchcolour'", "colours.mention"),
        ("[keys]\nnext_active = 'hyper-q'", "'hyper-q' is not a key"),
        ("[keys]\nfly = 'f2'", "unknown key action 'fly'"),
    ],
)
def test_a_bad_settings_file_is_a_clear_error(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(SettingsError, match=says) as raised:
        load_settings(_settings_file(tmp_path, text))
    assert "config.toml" in str(raised.value)


def test_chat_refuses_a_bad_settings_file_with_exit_2(tmp_path: Path, capsys) -> None:
    from client.cli import main

    env = _settings_file(tmp_path, "tls = 3")
    assert main(["login", "--user", "alice"], env=env) == ExitStatus.USAGE


# -- keys, in process ---------------------------------------------------------------


class Marks(ReadMarks):
    def __init__(self) -> None:
        super().__init__(lambda conversation, mid: None, delay=3600)
        self.read: list[tuple[Any, int]] = []

    def shown(self, conversation: Any, message_id: int) -> None:
        self.read.append((conversation, message_id))


@pytest.fixture
def screen() -> Iterator[tuple[ScreenDisplay, Chat, FakeSession, Any, Any]]:
    """The Application runs on this (the main) thread, as in `chat`; a test's steps run
    on another, talking to it through the pipe input, and end it."""
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
        session, display = FakeSession(), ScreenDisplay()
        chat = Chat(session, display, style=PLAIN, tz=UTC, now=lambda: NOW, marks=Marks())  # type: ignore[arg-type]
        chat.current = "general"
        app = build_application(chat, display, Settings())

        def run(steps: Callable[[], None]) -> None:
            failures: list[BaseException] = []

            def script() -> None:
                try:
                    _until(lambda: app.is_running)
                    steps()
                except BaseException as exc:
                    failures.append(exc)
                finally:
                    _until(lambda: app.loop is not None)
                    app.loop.call_soon_threadsafe(lambda: app.exit(result=ExitStatus.OK))  # type: ignore[union-attr]

            worker = threading.Thread(target=script, daemon=True)
            worker.start()
            app.run()
            worker.join(5)
            if failures:
                raise failures[0]

        yield display, chat, session, pipe, run


def _until(ready: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.01)


def _message(mid: int, room: str | None, user: str, text: str, to: str | None = None) -> dict:
    message = {"id": mid, "user": user, "text": text, "ts": "2026-11-24T12:00:00.000Z"}
    if room is not None:
        message["room"] = room
    if to is not None:
        message["to"] = to
    return message


def test_keys_switch_conversations_and_count_what_arrives_elsewhere(screen) -> None:
    display, chat, session, pipe, run = screen

    def steps() -> None:
        chat.event({"event": "message", **_message(1, "random", "alice", "hello random")})
        chat.event({"event": "dm", **_message(2, None, "carol", "psst", to="bob")})
        _until(lambda: display.activity.label(("with", "carol")) == "1!")
        assert display.activity.label(("room", "random")) == "1"
        assert display.order() == [("room", "general"), ("room", "random"), ("with", "carol")]
        pipe.send_text("\x1ba")  # Alt+A: the mention (a direct message) first
        _until(lambda: chat.viewing() == ("with", "carol"))
        _until(lambda: display.activity.label(("with", "carol")) == "")
        pipe.send_text("\x10")  # Ctrl+P: back to #random
        _until(lambda: chat.viewing() == ("room", "random"))
        pipe.send_text("hi there\r")
        _until(lambda: ("send", {"room": "random", "text": "hi there"}) in session.sent)

    run(steps)


def test_a_direct_conversation_takes_typed_lines_as_direct_messages(screen) -> None:
    display, chat, session, pipe, run = screen

    def steps() -> None:
        chat.event({"event": "dm", **_message(2, None, "carol", "psst", to="bob")})
        _until(lambda: ("with", "carol") in display.order())
        pipe.send_text("\x10")  # Ctrl+P: from the first, round to the last: carol
        _until(lambda: chat.viewing() == ("with", "carol"))
        pipe.send_text("back at you\r")
        _until(lambda: ("dm", {"to": "carol", "text": "back at you"}) in session.sent)

    run(steps)


def test_alt_enter_makes_a_newline_and_a_paste_of_six_lines_asks(screen) -> None:
    display, _chat, session, pipe, run = screen

    def steps() -> None:
        pipe.send_text("one\x1b\rtwo\r")
        _until(lambda: ("send", {"room": "general", "text": "one\ntwo"}) in session.sent)
        pipe.send_text("\x1b[200~" + "\n".join(f"p{n}" for n in range(6)) + "\x1b[201~")
        _until(lambda: display.question is not None)
        assert not any(args.get("text") == "p0" for _op, args in session.sent)
        pipe.send_text("y")
        _until(lambda: ("send", {"room": "general", "text": "p5"}) in session.sent)
        assert display.question is None

    run(steps)


def test_scrolling_back_at_the_top_asks_the_server_for_older_messages(screen) -> None:
    display, chat, session, pipe, run = screen

    def steps() -> None:
        chat.show_messages([_message(n, "general", "alice", f"m{n}") for n in range(10, 15)])
        pipe.send_text("\x1b[5~")  # PageUp: everything fits, so the top is reached at once
        _until(lambda: any(op == "history" for op, _args in session.sent))
        _op, args = session.sent[-1]
        assert args == {"room": "general", "limit": 50, "before": 10}
        assert display.timelines[("room", "general")].loading
        session.answer({"messages": []})
        _until(lambda: display.timelines[("room", "general")].at_beginning)

    run(steps)


def test_tab_completes_a_command(screen) -> None:
    display, _chat, session, pipe, run = screen

    def steps() -> None:
        pipe.send_text("/unr\t")
        _until(lambda: display.app.current_buffer.text.startswith("/unread"))
        pipe.send_text("\r")
        _until(lambda: any(op == "unread" for op, _args in session.sent))

    run(steps)


def test_alt_l_hides_the_room_list_and_lets_go_of_the_mouse(screen) -> None:
    display, _chat, _session, pipe, run = screen

    def steps() -> None:
        app = display.app
        assert app.mouse_support()
        pipe.send_text("\x1bl")
        _until(lambda: display.bare)
        assert not app.mouse_support()  # the terminal's own selection copies text again
        pipe.send_text("\x1bl")
        _until(lambda: not display.bare)
        assert app.mouse_support()

    run(steps)
