"""`chat login` full screen: a room list with counts, one timeline per conversation, alerts.

A prompt_toolkit `Application` owns the terminal: on the left the user's
rooms and direct conversations with their unread counts (`#ops 3!`: three
unread, some calling the user), on the right the current conversation's
topic, its timeline (client/timeline.py draws only what is visible) and the
input line with the connection's state. Under 60 columns the list becomes a
one-line bar. `ScreenDisplay` is the `Display` Chat writes to: it files each
line under its conversation, counts what arrives out of view (client/
activity.py) and places the "new since you left" line.

Chat calls it from the connection's reader thread; prompt_toolkit draws on
its own loop. A lock guards the timelines and counts between the two, and
every change asks for a redraw through the loop.

A conversation is in view when it is the current one and the terminal has
focus. Terminals that report focus (xterm's mode 1004: CSI I and CSI O) tell
us; one that never does is taken to be focused.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.data_structures import Point
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.input import ansi_escape_sequences
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent, merge_key_bindings
from prompt_toolkit.key_binding.bindings.completion import generate_completions
from prompt_toolkit.key_binding.defaults import load_key_bindings
from prompt_toolkit.keys import Keys
from prompt_toolkit.layout import (
    ConditionalContainer,
    Dimension,
    Float,
    FloatContainer,
    FormattedTextControl,
    HSplit,
    Layout,
    VSplit,
    Window,
)
from prompt_toolkit.layout.controls import BufferControl, UIContent, UIControl
from prompt_toolkit.layout.menus import CompletionsMenu
from prompt_toolkit.layout.processors import BeforeInput
from prompt_toolkit.mouse_events import MouseEvent, MouseEventType

from chatd.exitstatus import ExitStatus
from client.activity import Activity
from client.chat import Chat
from client.completion import ChatCompleter
from client.conversations import Conversation
from client.display import Shown
from client.settings import Settings
from client.timeline import Entry, Timeline

SIDEBAR_WIDTH = 22
# why: below this the list would leave the text too narrow; it becomes a bar on top
NARROW_COLUMNS = 60
PASTE_ASK_LINES = 5  # a paste of more lines asks first, as irssi's paste_verify_line_count
OLDER_PAGE = 50
SCROLL_WHEEL_ROWS = 3
# why: at 200 messages a second, one redraw per message is wasted work; 30 a second looks live
MIN_REDRAW_INTERVAL = 0.033
# why: prompt_toolkit draws the whole screen each time (~12 ms at 120x40 here); what arrives
# redrawn 30 times a second cost half a core at 200 messages a second, 10 is under a quarter
# (bench/client_screen.py). Keys still redraw at MIN_REDRAW_INTERVAL.
ARRIVAL_REDRAW_INTERVAL = 0.1
# why: a redraw makes many short-lived objects (prompt_toolkit's screen of cells); at
# Python's default (700) enough outlive a young collection to set off a full one every ~5 s
# at 200 messages a second, ~100 ms each with 50,000 lines of scrollback, the longest
# redraws. Collected every 20,000 allocations instead, they die young (bench/client_screen.py)
GC_YOUNG_THRESHOLD = 20_000
# the conversation notices go to before there is any other
STATUS: Conversation = ("status", "chat")
FOCUS_REPORTS_ON, FOCUS_REPORTS_OFF = "\x1b[?1004h", "\x1b[?1004l"
# why: prompt_toolkit knows no focus keys; these two function keys exist on no keyboard
# in use, so the terminal's focus reports are read as them
FOCUS_IN, FOCUS_OUT = Keys.F23, Keys.F24
KEY_HELP = (
    ("PageUp / PageDown", "scroll; older messages are fetched at the top"),
    ("Alt+Up / Alt+Down, Ctrl+P / Ctrl+N", "previous / next conversation"),
    ("Alt+A", "next conversation with activity, mentions first"),
    ("Alt+Enter", "a new line in the message"),
    ("Alt+L", "hide the room list and the mouse (to select text)"),
    ("Tab", "complete a command, room or name"),
    ("F1", "this help"),
    ("Ctrl+L", "redraw the screen"),
)


def _listen_for_focus() -> None:
    ansi_escape_sequences.ANSI_SEQUENCES.setdefault("\x1b[I", FOCUS_IN)
    ansi_escape_sequences.ANSI_SEQUENCES.setdefault("\x1b[O", FOCUS_OUT)


class ScreenDisplay:
    separate = True

    def __init__(self) -> None:
        # guards the timelines, the counts and what is in view, between the reader and the UI
        self._lock = threading.RLock()
        self.timelines: dict[Conversation, Timeline] = {}
        self.activity = Activity()
        self.app: Application[int] | None = None
        self.chat: Chat | None = None
        self.focused = True
        self.bare = False  # the room list and the mouse hidden, to select text
        self._status: str | None = None
        self.question: str | None = None  # a paste waiting for yes or no
        self._in_view: Conversation | None = None
        self._size = (80, 24)  # the timeline's width and height when last drawn
        self._redraw_asked = False  # a redraw is on its way (refresh: at most one at a time)
        self._redraw_at = 0.0  # when refresh last redrew (time.monotonic)

    def attach(self, chat: Chat) -> None:
        """The chat this display shows, as a new Application is built around it."""
        with self._lock:
            self.chat = chat
            self._redraw_asked = False  # one asked of an application before this one never came

    # -- Display ---------------------------------------------------------------------

    def add(self, shown: Shown) -> None:
        with self._lock:
            where = shown.where or self.current() or STATUS
            timeline = self._timeline(where)
            mid = shown.message_id
            if shown.replaces and mid is not None and timeline.replace(mid, shown.draw):
                self.refresh()
                return
            entry = Entry(shown.draw, shown.message_id, shown.day)
            if shown.older:
                timeline.add_older(entry)
            else:
                if where[0] == "with" and shown.message_id is not None:
                    self.activity.touched(where[1])
                if mid is not None and not shown.own and not self._showing(where):
                    first = not self.activity.unread(where)
                    counted = self.activity.arrived(where, mid, calls_me=shown.calls_me)
                    if counted and first and timeline.marker_after is None:
                        timeline.mark_new_after(mid - 1)  # the first unseen: the line goes here
                timeline.add(entry)
        self.refresh()

    def refresh(self) -> None:
        """Redraw soon, from any thread: at once after a quiet spell, else at most
        ARRIVAL_REDRAW_INTERVAL after the last time; a burst is one redraw."""
        app = self.app
        loop = getattr(app, "loop", None) if app is not None else None
        if app is None or not app.is_running or loop is None:
            return
        with self._lock:
            if self._redraw_asked:
                return
            self._redraw_asked = True
        loop.call_soon_threadsafe(self._redraw_soon, app, loop)

    def _redraw_soon(self, app: Application[int], loop: asyncio.AbstractEventLoop) -> None:
        wait = self._redraw_at + ARRIVAL_REDRAW_INTERVAL - time.monotonic()
        if wait > 0:
            loop.call_later(wait, self._redraw, app)
        else:
            self._redraw(app)

    def _redraw(self, app: Application[int]) -> None:
        with self._lock:
            self._redraw_asked = False
        self._redraw_at = time.monotonic()
        app.invalidate()

    def status(self, text: str | None) -> None:
        self._status = text
        self.refresh()

    def page_rows(self) -> int:
        """How far PageUp moves: the timeline's height less one line kept in view."""
        return self._size[1] - 1

    def in_view(self, conversation: Conversation, current: Conversation | None) -> bool:
        return self.focused and conversation == current

    def older_loaded(self, where: Conversation, count: int) -> None:
        with self._lock:
            timeline = self._timeline(where)
            timeline.loading = False
            if count == 0:
                timeline.at_beginning = True
        self.refresh()

    def unread_at_login(self, reply: Mapping[str, Any]) -> None:
        with self._lock:
            for conversation, last_read in self.activity.seed(reply).items():
                if self.activity.unread(conversation):
                    self._timeline(conversation).mark_new_after(last_read)
        self.refresh()

    def read_moved(self, conversation: Conversation, last_read: int) -> None:
        with self._lock:
            self.activity.read_upto(conversation, last_read)
        self.refresh()

    def raw(self, text: str) -> None:
        """The bell or a notification's escape sequence, written between two redraws."""
        app = self.app
        loop = getattr(app, "loop", None) if app is not None else None
        if app is None or loop is None or not app.is_running:
            return

        def write() -> None:
            app.output.write_raw(text)
            app.output.flush()

        loop.call_soon_threadsafe(write)

    # -- what the screen shows ---------------------------------------------------------

    def current(self) -> Conversation | None:
        return self.chat.viewing() if self.chat is not None else None

    def order(self) -> list[Conversation]:
        """The room list: rooms by name, then people, most recently active first."""
        rooms = sorted(self.chat.joined()) if self.chat is not None else []
        with self._lock:
            listed: list[Conversation] = [("room", room) for room in rooms]
            listed += [("with", person) for person in self.activity.people()]
            current = self.current()
            if current is not None and current not in listed:
                listed.append(current)
        return listed

    def visible(self, width: int, height: int) -> list[StyleAndTextTuples]:
        with self._lock:
            self._size = (width, height)
            where = self.current() or STATUS
            return self._timeline(where).visible(width, height)

    def topic(self) -> StyleAndTextTuples:
        where = self.current()
        if where is None:
            return [("class:topic", " chat: /join ROOM to start")]
        kind, name = where
        if kind == "room":
            topic = self.chat.topics.get(name, "") if self.chat is not None else ""
            text = f" #{name}" + (f": {topic}" if topic else "")
        else:
            text = f" {name} (direct messages)"
        timeline = self.timelines.get(where)
        if timeline is not None and timeline.scrolled:
            text += "  [scrolled back: PageDown]"
        return [("class:topic", text)]

    def status_line(self) -> StyleAndTextTuples:
        if self.question is not None:
            return [("class:question", f" {self.question}")]
        return [("class:status", f" {self._status or 'F1: keys   /help: commands'}")]

    def counts(self, conversation: Conversation) -> tuple[str, int]:
        """The room list's label for a conversation (`12`, `3!`), and its mentions."""
        with self._lock:
            return self.activity.label(conversation), self.activity.mentions(conversation)

    def prompt(self) -> str:
        return self.chat.prompt_text() if self.chat is not None else "> "

    # -- in view or not ----------------------------------------------------------------

    def _showing(self, where: Conversation) -> bool:
        return self.focused and where == self.current()

    def follow_view(self, _app: object = None) -> None:
        """Before each redraw: what is in view changed (a switch, a /join, focus)?
        Then counts, markers and marks read follow."""
        with self._lock:
            self._follow_view()

    def _follow_view(self) -> None:
        now = self.current() if self.focused else None
        before = self._in_view
        if now == before:
            return
        self._in_view = now
        if before is not None:
            left = self._timeline(before)
            left.mark_new_after(left.newest_id)
        if now is not None:
            timeline = self._timeline(now)
            timeline.marker_after = None  # nothing new came while away, or it is marked
            self.activity.seen(now)
            if self.chat is not None and timeline.newest_id:
                self.chat.read_through(now, timeline.newest_id)

    def _timeline(self, where: Conversation) -> Timeline:
        timeline = self.timelines.get(where)
        if timeline is None:
            timeline = self.timelines[where] = Timeline()
        return timeline

    # -- actions ---------------------------------------------------------------------

    def switch_by(self, step: int) -> None:
        order = self.order()
        current = self.current()
        if not order:
            return
        index = order.index(current) if current in order else -1
        self.view(order[(index + step) % len(order)])

    def next_active(self) -> None:
        order = self.order()
        with self._lock:
            found = self.activity.next_active(order, self.current())
        if found is not None:
            self.view(found)

    def view(self, conversation: Conversation) -> None:
        if self.chat is not None:
            self.chat.view(conversation)
        self.refresh()

    def scroll(self, pages: float) -> None:
        with self._lock:
            where = self.current() or STATUS
            timeline = self._timeline(where)
            width, height = self._size
            rows = max(1, int(abs(pages) * max(height - 1, 1)))
            if pages > 0:
                timeline.scroll_down(rows, width, height)
                return
            at_top = timeline.scroll_up(rows, width, height)
            fetch = at_top and not timeline.loading and not timeline.at_beginning
            if fetch:
                timeline.loading = True
        if fetch and where[0] == "room" and self.chat is not None:
            self.chat.older(where[1], OLDER_PAGE)
        elif fetch and where[0] == "with" and self.chat is not None:
            self.chat.older_direct(where[1], OLDER_PAGE, timeline.oldest_id())
        elif fetch:
            self.older_loaded(where, 0)

    def focus(self, focused: bool) -> None:
        with self._lock:
            self.focused = focused
        self.refresh()


class TimelineControl(UIControl):
    """The current conversation's visible lines, bottom-aligned; nothing else is drawn."""

    def __init__(self, display: ScreenDisplay) -> None:
        self._display = display

    def create_content(self, width: int, height: int) -> UIContent:
        lines = self._display.visible(width, height)
        lines = [[] for _ in range(height - len(lines))] + lines

        def line(index: int) -> StyleAndTextTuples:
            return lines[index]

        return UIContent(get_line=line, line_count=len(lines), cursor_position=Point(0, 0))

    def is_focusable(self) -> bool:
        return False

    def mouse_handler(self, mouse_event: MouseEvent) -> object:
        page = max(self._display.page_rows(), 1)
        if mouse_event.event_type == MouseEventType.SCROLL_UP:
            self._display.scroll(-SCROLL_WHEEL_ROWS / page)
        elif mouse_event.event_type == MouseEventType.SCROLL_DOWN:
            self._display.scroll(SCROLL_WHEEL_ROWS / page)
        else:
            return NotImplemented
        return None


def _name_of(conversation: Conversation) -> str:
    kind, name = conversation
    return f"#{name}" if kind == "room" else name


def sidebar_fragments(display: ScreenDisplay, width: int) -> StyleAndTextTuples:
    """One line per conversation: `#general 12`, `#ops 3!`, `bob 1!`; the current marked."""
    current = display.current()
    fragments: StyleAndTextTuples = []
    for conversation in display.order():
        label, mentions = display.counts(conversation)
        name = _name_of(conversation)
        room = max(width - len(label) - 3, 4)
        if len(name) > room:
            name = name[: room - 1] + "…"
        text = f" {name}".ljust(width - len(label) - 1) + label + " "
        if conversation == current:
            style = "class:current"
        elif mentions:
            style = "class:mention"
        elif label:
            style = "class:unread"
        else:
            style = "class:sidebar"
        fragments.append((style, text[:width], _select(display, conversation)))
        fragments.append(("", "\n"))
    return fragments


def bar_fragments(display: ScreenDisplay, width: int) -> StyleAndTextTuples:
    """The room list on one line, for a narrow terminal: from the current one on."""
    order = display.order()
    current = display.current()
    if current in order:
        start = order.index(current)
        order = order[start:] + order[:start]
    fragments: StyleAndTextTuples = []
    used = 0
    for conversation in order:
        label, mentions = display.counts(conversation)
        text = f" {_name_of(conversation)}" + (f" {label}" if label else "") + " "
        if used + len(text) > width:
            break
        used += len(text)
        if conversation == current:
            style = "class:current"
        elif mentions:
            style = "class:mention"
        else:
            style = "class:unread" if label else "class:sidebar"
        fragments.append((style, text, _select(display, conversation)))
    return fragments


def _select(display: ScreenDisplay, conversation: Conversation) -> Callable[[MouseEvent], None]:
    def clicked(mouse_event: MouseEvent) -> None:
        if mouse_event.event_type == MouseEventType.MOUSE_UP:
            display.view(conversation)

    return clicked


def build_application(chat: Chat, display: ScreenDisplay, settings: Settings) -> Application[int]:
    """The full-screen Application: its layout, its keys, its style."""
    _listen_for_focus()
    _tune_collector()
    display.attach(chat)
    chat.key_rows = list(KEY_HELP)
    pending_paste: list[str] = []

    def submit(buffer: Buffer) -> bool:
        text = buffer.text
        if text.strip():
            chat.handle_line(text)
        if chat.done and display.app is not None:
            display.app.exit(result=ExitStatus.OK)
        return False  # the buffer is emptied

    buffer = Buffer(
        multiline=True,
        completer=ChatCompleter(chat.names),
        complete_while_typing=False,
        accept_handler=submit,
    )
    asking = Condition(lambda: display.question is not None)
    wide = Condition(lambda: _columns(display) >= NARROW_COLUMNS)
    bare = Condition(lambda: display.bare)
    bindings = KeyBindings()
    keys = settings.keys

    def bind(action: str, handler: Callable[[KeyPressEvent], None], **kwargs: Any) -> None:
        for key in keys[action]:
            bindings.add(*key.split(), **kwargs)(handler)

    bind("scroll_up", lambda event: display.scroll(-1))
    bind("scroll_down", lambda event: display.scroll(1))
    bind("previous_conversation", lambda event: display.switch_by(-1))
    bind("next_conversation", lambda event: display.switch_by(1))
    bind("next_active", lambda event: display.next_active())
    bind("newline", lambda event: event.current_buffer.insert_text("\n"))
    bind("help", lambda event: chat.show_table([*KEY_HELP, ("/help", "the commands")]))
    bind("redraw", lambda event: event.app.renderer.clear())

    def toggle_bare(event: KeyPressEvent) -> None:
        display.bare = not display.bare
        display.refresh()

    bind("toggle_sidebar", toggle_bare)

    @bindings.add("enter", filter=~asking)
    def _enter(event: KeyPressEvent) -> None:
        event.current_buffer.validate_and_handle()

    @bindings.add("tab", filter=~asking)
    def _tab(event: KeyPressEvent) -> None:
        generate_completions(event)

    @bindings.add("c-c")
    def _clear(event: KeyPressEvent) -> None:
        event.current_buffer.reset()

    @bindings.add("c-d")
    def _eof(event: KeyPressEvent) -> None:
        if not event.current_buffer.text:
            event.app.exit(result=ExitStatus.OK)

    @bindings.add(Keys.BracketedPaste, filter=~asking)
    def _paste(event: KeyPressEvent) -> None:
        text = event.data.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.rstrip("\n").split("\n")
        if len(lines) <= PASTE_ASK_LINES:
            event.current_buffer.insert_text(text.rstrip("\n"))
            return
        pending_paste[:] = lines
        display.question = f"send these {len(lines)} pasted lines? y: yes, n: no"

    @bindings.add("y", filter=asking)
    def _paste_yes(event: KeyPressEvent) -> None:
        lines, display.question = list(pending_paste), None
        pending_paste.clear()
        for line in lines:
            if line.strip():
                chat.handle_line(line)

    @bindings.add("n", filter=asking)
    @bindings.add("escape", filter=asking)
    def _paste_no(event: KeyPressEvent) -> None:
        pending_paste.clear()
        display.question = None
        chat.notice("paste cancelled")

    @bindings.add(FOCUS_IN)
    def _focus_in(event: KeyPressEvent) -> None:
        display.focus(True)

    @bindings.add(FOCUS_OUT)
    def _focus_out(event: KeyPressEvent) -> None:
        display.focus(False)

    sidebar = ConditionalContainer(
        VSplit(
            [
                Window(
                    FormattedTextControl(lambda: sidebar_fragments(display, SIDEBAR_WIDTH)),
                    width=SIDEBAR_WIDTH,
                    style="class:sidebar",
                ),
                Window(width=1, char="│", style="class:sidebar"),
            ]
        ),
        filter=wide & ~bare,
    )
    bar = ConditionalContainer(
        Window(
            FormattedTextControl(lambda: bar_fragments(display, _columns(display))),
            height=1,
            style="class:sidebar",
        ),
        filter=~wide & ~bare,
    )
    input_line = Window(
        BufferControl(buffer, input_processors=[BeforeInput(display.prompt)]),
        height=Dimension(min=1, max=6),
        wrap_lines=True,
        dont_extend_height=True,
    )
    main = HSplit(
        [
            bar,
            ConditionalContainer(
                Window(FormattedTextControl(display.topic), height=1, style="class:topic"),
                filter=~bare,
            ),
            Window(TimelineControl(display), wrap_lines=False),
            ConditionalContainer(
                Window(FormattedTextControl(display.status_line), height=1, style="class:status"),
                filter=~bare | asking,
            ),
            input_line,
        ]
    )
    app: Application[int] = Application(
        layout=Layout(
            FloatContainer(
                VSplit([sidebar, main]),
                floats=[Float(xcursor=True, ycursor=True, content=CompletionsMenu(max_height=8))],
            ),
            focused_element=input_line,
        ),
        key_bindings=merge_key_bindings([load_key_bindings(), bindings]),
        style=settings.style(),
        full_screen=True,
        mouse_support=~bare,
        min_redraw_interval=MIN_REDRAW_INTERVAL,
        erase_when_done=True,
    )
    app.before_render += display.follow_view
    display.app = app
    return app


def _tune_collector() -> None:
    young, *older = gc.get_threshold()
    if 0 < young < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, *older)


def _columns(display: ScreenDisplay) -> int:
    app = display.app
    if app is None:
        return 80
    try:
        return app.output.get_size().columns
    except (OSError, ValueError):
        return 80


def run_screen(chat: Chat, display: ScreenDisplay, settings: Settings) -> int:
    """The full-screen chat until /quit or Ctrl-D (exit 0)."""
    app = build_application(chat, display, settings)

    def report_focus() -> None:
        app.output.write_raw(FOCUS_REPORTS_ON)
        app.output.flush()

    try:
        result = app.run(pre_run=report_focus)
    finally:
        app.output.write_raw(FOCUS_REPORTS_OFF)
        app.output.flush()
        if chat.transfers.active():
            chat.notice("cancelling the file transfers under way")
        chat.transfers.cancel()
        chat.close()
        chat.session.close()
    return result if isinstance(result, int) else ExitStatus.OK
