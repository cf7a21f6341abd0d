"""What the user sees and does in a chat, whatever draws it (terminal or script).

`Chat` holds the conversation state (current room, topics, names for
completion, how far back each room is shown), turns each event and reply into
lines through render.py, and is the session's listener. It never touches the
terminal: it writes lines to a `Display`, which ui.py provides. File transfers
run in transfers.py and report back here.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from chatd.events import EventName
from client import render
from client.commands import COMMANDS, run_line
from client.completion import Names
from client.connection import Frame
from client.conversations import Conversation, Notifier, ReadMarks, conversation_of
from client.display import Display, Draw, Shown
from client.errors import ClientErrorCode, error_code
from client.recovery import Missed, message_id
from client.session import RECONNECT_ASKED, Session, State
from client.state import SeenMarkers
from client.transfers import Transfers

# What a request queued while disconnected (session.QUEUEABLE) will do.
WHEN_RECONNECTED = {
    "send": "the message will be sent after reconnecting",
    "dm": "the message will be sent after reconnecting",
    "join": "will join #{room} after reconnecting",
    "part": "will leave #{room} after reconnecting",
    "topic": "will set the topic of #{room} after reconnecting",
}
# why: enough messages remembered to quote what a reply answers and to find what
# /reply, /edit and /delete name, without growing for ever.
REMEMBERED_MESSAGES = 5000


class Chat:
    def __init__(
        self,
        session: Session,
        display: Display,
        *,
        style: render.Style,
        tz: tzinfo | None = None,
        now: Callable[[], datetime] | None = None,
        seen: SeenMarkers | None = None,
        notifier: Notifier | None = None,
        marks: ReadMarks | None = None,
        highlights: tuple[str, ...] = (),
    ) -> None:
        """`notifier` and `marks` only in an interactive terminal: a script rings no
        bell and reads nothing."""
        self.session = session
        self.display = display
        self.style = style
        self.tz = tz
        # where direct messages shown are remembered (None: a script, which marks nothing)
        self._seen = seen
        self._now = now or (lambda: datetime.now(self.tz).astimezone(self.tz))
        # guards the state below; the reader thread and the input thread both change it
        self._lock = threading.RLock()
        self.current: str | None = None  # the room typed lines go to
        self.current_dm: str | None = None  # or, on a full screen, the person they go to
        self.highlights = highlights  # words that call the user, besides their name
        self.topics: dict[str, str] = {}
        self._oldest: dict[str, int] = {}
        # missed messages not fetched after a reconnect, per room: (last seen id, oldest shown)
        self._gaps: dict[str, tuple[int, int]] = {}
        self._backlog: dict[str, list[Frame]] = {}
        # message ids shown per room (None: direct messages), so that a message
        # that came live and then again in a join history is shown once
        self._shown: dict[str | None, set[int]] = {}
        self._users: set[str] = set()
        self._rooms: set[str] = set()
        self._files: set[str] = set()  # ids of shared files seen, for Tab after /download
        # the date of the lines shown last, per timeline (one key, None, for a stream)
        self._last_day: dict[Conversation | None, date] = {}
        self.failures = 0
        self.done = False
        self._pacing = False  # messages are waiting for the server's rate limit
        self.transfers = Transfers(session, self)
        self._notifier = notifier
        self._marks = marks
        self.show_ids = False
        self.key_rows: list[tuple[str, str]] = []  # the keys /help lists (the full screen's)
        # the messages shown lately, by id: quotes of replies, /reply, /edit and /delete
        self._messages: OrderedDict[int, Frame] = OrderedDict()

    @property
    def me(self) -> str:
        return self.session.username

    # -- starting ------------------------------------------------------------------

    def enter(
        self,
        login_reply: Frame,
        *,
        backlog: bool = True,
        direct: list[Frame] | None = None,
        recent: bool = False,
        more_direct: bool = False,
    ) -> None:
        """Rejoin the rooms the login reply lists; the first becomes current.

        With `backlog`, the current room's history is shown now and the other
        rooms' when the user first switches to them. `direct` are the direct
        messages that came in since this account was last here (`recent`: the
        latest ones, when it never was; `more_direct`: yet more came in before
        them), shown first.
        """
        rooms = [room for room in login_reply.get("rooms") or [] if isinstance(room, str)]
        self._users.add(self.me)
        if direct:
            count = render.counted(len(direct), "direct message")
            self.notice(f"{'recent' if recent else 'while you were away'}: {count}")
            if more_direct:
                self.notice("(and more before them, not shown)")
            self.show_messages(direct)
        for index, room in enumerate(rooms):
            if index == 0 and backlog:
                self.request("join", self.entered, room=room)
            else:
                self.request("join", lambda reply: self._stash(reply, backlog), room=room)
        if not rooms and backlog:
            self.notice("you are in no room yet: /join ROOM (try /rooms); /help lists commands")
        self.request("rooms", self._learn_rooms)

    def _stash(self, reply: Frame, backlog: bool) -> None:
        room = str(reply.get("room"))
        with self._lock:
            self.topics[room] = render.sanitize(reply.get("topic"))
            self._learn(reply)
            if backlog and self.display.separate:
                self._show_header(reply)
                self.show_messages(reply.get("history") or [])
            elif backlog:
                self._backlog[room] = list(reply.get("history") or [])
                self.notice(f"also in #{room}: /switch {room}")
            if self.current is None:
                self.current = room
                self.display.refresh()

    def _learn_rooms(self, reply: Frame) -> None:
        with self._lock:
            for entry in reply.get("rooms") or []:
                if isinstance(entry, dict) and isinstance(entry.get("room"), str):
                    self._rooms.add(render.sanitize(entry["room"]))

    def _learn(self, reply: Frame) -> None:
        for key in ("members", "online"):
            for name in reply.get(key) or []:
                if isinstance(name, str):
                    self._users.add(render.sanitize(name))

    # -- what commands use (client.commands.ChatApi) --------------------------------

    def joined(self) -> list[str]:
        return self.session.joined_rooms()

    def names(self) -> Names:
        with self._lock:
            joined = self.joined()
            return Names(
                rooms=self._rooms | set(joined),
                joined=joined,
                users=set(self._users),
                files=set(self._files),
            )

    def handle_line(self, line: str) -> None:
        run_line(self, line, COMMANDS)

    def request(self, op: str, on_ok: Callable[[Frame], None] | None = None, **args: Any) -> None:
        """Send a request; an error reply becomes an error line, an ok one goes to on_ok."""

        def on_reply(reply: Frame) -> None:
            if reply.get("ok"):
                if on_ok is not None:
                    on_ok(reply)
                return
            self.error(self._describe_failure(op, args, reply))

        req = self.session.request(op, on_reply, **args)
        if req.queued:
            later = WHEN_RECONNECTED.get(op, "it will be done after reconnecting")
            self.notice("not connected: " + later.format(**args))

    def _describe_failure(self, op: str, args: dict[str, Any], reply: Frame) -> str:
        why = render.error_text(reply)
        if op in ("send", "dm") and "text" in args:
            shown = render.sanitize(args["text"])
            if len(shown) > 60:
                shown = shown[:57] + "..."
            where = f"#{args['room']}" if op == "send" else f"*{render.sanitize(args['to'])}*"
            return f"not sent to {where} ({why}): {shown}"
        if error_code(reply) is ClientErrorCode.NOT_SENT:
            return f"/{op} failed: {why}"
        return why

    def say(self, text: str) -> None:
        """A plain line: a message to the current room (or person, on a full screen)."""
        if self.current_dm is not None:
            self.request("dm", self.show_own, to=self.current_dm, text=text)
            return
        if self.current is None:
            self.error("you are in no room: /join ROOM first, or /msg USER TEXT")
            return
        self.request("send", self.show_own, room=self.current, text=text)

    def notice(self, text: str, where: Conversation | None = None) -> None:
        style = self.style
        self._add(lambda width: render.notice_lines(text, style, width=width), where)

    def error(self, text: str) -> None:
        """An error line; a script that saw one exits 1."""
        self.failures += 1
        style = self.style
        self.display.add(
            Shown(
                lambda width: render.notice_lines(text, style, width=width, error=True),
                error=True,
            )
        )

    def show_table(self, rows: list[tuple[str, str]]) -> None:
        """Two columns of notices, such as /help."""
        style = self.style
        self._add(lambda width: render.table_lines(rows, style, width=width))

    def _add(self, draw: Draw, where: Conversation | None = None) -> None:
        self.display.add(Shown(draw, where))

    def viewing(self) -> Conversation | None:
        """The conversation typed lines go to."""
        if self.current_dm is not None:
            return ("with", self.current_dm)
        return None if self.current is None else ("room", self.current)

    def view(self, conversation: Conversation) -> None:
        """Show a conversation (the full screen's room list): typed lines go there."""
        with self._lock:
            kind, name = conversation
            if kind == "room":
                self.current, self.current_dm = name, None
            else:
                self.current_dm = name
        self.display.refresh()

    def entered(self, reply: Frame) -> None:
        """A join reply: the room becomes current; header, then history, then live."""
        room = render.sanitize(reply.get("room"))
        with self._lock:
            self.topics[room] = render.sanitize(reply.get("topic"))
            self._rooms.add(room)
            self._learn(reply)
            self.current, self.current_dm = room, None
            self._show_header(reply)
            history = reply.get("history") or []
            self.show_messages(history)
        self.display.refresh()

    def _show_header(self, reply: Frame) -> None:
        style, room = self.style, render.sanitize(reply.get("room"))
        entered = not self.display.separate
        self._add(
            lambda width: render.room_header(reply, style, width=width, entered=entered),
            ("room", room),
        )

    def left(self, room: str) -> None:
        with self._lock:
            self._backlog.pop(room, None)
            self._shown.pop(room, None)
            self._oldest.pop(room, None)
            self.notice(f"you left #{room}", ("room", room))
            if self.current == room:
                rest = self.joined()
                self.current = rest[0] if rest else None
                if self.current is not None and not self.display.separate:
                    self.notice(f"now in #{self.current}")
        self.display.refresh()

    def switch(self, room: str) -> None:
        with self._lock:
            self.current, self.current_dm = room, None
            topic = self.topics.get(room, "")
            if not self.display.separate:
                self.notice(f"now in #{room}" + (f": {topic}" if topic else ""))
            backlog = self._backlog.pop(room, None)
            if backlog is not None:
                self.show_messages(backlog)
        self.display.refresh()

    def show_own(self, reply: Frame) -> None:
        message = reply.get("message")
        if isinstance(message, dict):
            self.show_messages([message])

    def show_rooms(self, reply: Frame) -> None:
        self._learn_rooms(reply)
        joined, style = set(self.joined()), self.style
        self._add(lambda width: render.rooms_lines(reply, joined, style, width=width))

    def show_who(self, reply: Frame) -> None:
        with self._lock:
            self._learn(reply)
        style = self.style
        self._add(lambda width: render.who_lines(reply, style, width=width))

    def older(self, room: str, count: int) -> None:
        """/history: fill what a reconnect left out first, then page back from the oldest shown."""
        with self._lock:
            gap = self._gaps.get(room)
            before = self._oldest.get(room) if gap is None else gap[1]

        def show(reply: Frame) -> None:
            if gap is None:
                self._show_older(room, reply)
            else:
                self._fill_gap(room, gap[0], count, reply)

        extra = {} if before is None else {"before": before}
        self.request("history", show, room=room, limit=count, **extra)

    def older_direct(self, person: str, count: int, before: int | None) -> None:
        """A page of older direct messages with `person`, above those shown (full screen)."""

        def show(reply: Frame) -> None:
            messages = reply.get("messages") or []
            with self._lock:
                self.show_messages(messages, older=True)
            self.display.older_loaded(("with", person), len(messages))

        extra = {} if before is None else {"before": before}
        self.request("dm_history", show, limit=count, **{"with": person}, **extra)

    def read_through(self, conversation: Conversation, message_id: int) -> None:
        """The conversation was shown, up to this message, in the focused terminal."""
        if self._marks is not None:
            self._marks.shown(conversation, message_id)

    def _show_older(self, room: str, reply: Frame) -> None:
        messages = reply.get("messages") or []
        with self._lock:
            if self.display.separate:
                self.show_messages(messages, older=True)
                self.display.older_loaded(("room", room), len(messages))
                return
            if not messages:
                self.notice(f"no older messages in #{room}")
                return
            self.notice(f"older messages of #{room}:")
            self.show_messages(messages)
            self.notice(f"end of older messages of #{room}")

    def _fill_gap(self, room: str, since: int, count: int, reply: Frame) -> None:
        page = [m for m in reply.get("messages") or [] if isinstance(m, dict)]
        missed = [m for m in page if (message_id(m) or 0) > since]
        with self._lock:
            self.notice(f"missed messages of #{room}, older part:")
            self.show_messages(missed)
            if len(missed) == len(page) == count and missed:
                self._gaps[room] = (since, message_id(missed[0]) or 0)
                self.notice(f"more missed messages of #{room}: /history again")
            else:
                self._gaps.pop(room, None)
                self.notice(f"that is all you missed in #{room}")

    def screen_cleared(self) -> None:
        """Ctrl-L: nothing is on screen any more, so /history starts from the newest again."""
        with self._lock:
            self._oldest.clear()
            self._gaps.clear()
            self._shown.clear()

    def _mark_oldest(self, room: str, messages: Iterable[Any]) -> None:
        ids = [m["id"] for m in messages if isinstance(m, dict) and isinstance(m.get("id"), int)]
        if ids:
            self._oldest[room] = min([*ids, self._oldest.get(room, ids[0])])

    def quit(self) -> None:
        self.done = True

    def upload(self, path: str, *, room: str | None, to: str | None, caption: str | None) -> None:
        self.transfers.upload(path, room=room, to=to, caption=caption)

    def download(self, file_id: int, dest: str | None) -> None:
        self.transfers.download(file_id, dest)

    def open_file(self, file_id: int) -> None:
        self.transfers.open(file_id)

    def status(self, text: str | None) -> None:
        """The transfers' progress line (None: no transfer worth a bar is running)."""
        self.display.status(text)

    def prompt_text(self) -> str:
        if self.current_dm is not None:
            where = f"*{self.current_dm}*"
        else:
            where = f"#{self.current}" if self.current else "(no room)"
        offline = "" if self.session.state is State.CONNECTED else " [offline]"
        waiting = self.session.waiting
        pacing = f" [pacing {waiting}]" if waiting else ""
        return f"{where}{offline}{pacing}> "

    # -- showing messages ------------------------------------------------------------

    def show_messages(self, messages: Iterable[Any], *, older: bool = False) -> None:
        """Messages as lines, with a day line whenever the date changes.

        `older` ones (a page back, on a full screen) go above what is shown.
        """
        with self._lock:
            page = [message for message in messages if isinstance(message, dict)]
            for message in reversed(page) if older else page:
                user = message.get("user")
                if isinstance(user, str):
                    self._users.add(render.sanitize(user))
                room = message.get("room")
                room = room if isinstance(room, str) else None
                mid = message.get("id")
                if isinstance(mid, int):
                    shown = self._shown.setdefault(room, set())
                    if mid in shown:
                        continue
                    shown.add(mid)
                    if room is None and self._seen is not None:
                        self._seen.advance(mid)
                if room is not None:
                    self._mark_oldest(room, [message])
                file = message.get("file")
                if isinstance(file, dict):
                    file_id = file.get("id")
                    if isinstance(file_id, int) and not isinstance(file_id, bool):
                        self._files.add(str(file_id))
                self._show_message(message, older=older)

    def _show_message(self, message: Frame, *, older: bool = False, replaces: bool = False) -> None:
        """One message's lines, remembered for quotes, marked read when it is in view."""
        _share_names(message)
        mid = message.get("id")
        mid = mid if isinstance(mid, int) and not isinstance(mid, bool) else None
        reply_to = message.get("reply_to")
        quote = None
        if isinstance(reply_to, int) and not isinstance(reply_to, bool):
            quote = render.quote_text(self._messages.get(reply_to), reply_to)
        if mid is not None:
            self._remember(mid, message)
        conversation = conversation_of(message, self.me)
        when = render.local_time(message.get("ts"), self.tz)
        if not self.display.separate and not replaces:
            self._day(when, None)
        current = conversation[1] if self.display.separate and conversation else self.current
        me, highlights = self.me, self.highlights
        draw = _MessageDraw(
            message, me, current, self.style, self.tz, self.show_ids, quote, highlights
        )
        own = render.sanitize(message.get("user")).lower() == me.lower()
        calls_me = not own and (
            message.get("room") is None or render.calls_me(message, me, highlights)
        )
        self.display.add(
            Shown(
                draw,
                conversation,
                mid,
                own=own,
                calls_me=calls_me,
                older=older,
                replaces=replaces,
                day=None if when is None else when.date(),
            )
        )
        in_view = conversation is not None and self.display.in_view(conversation, self.viewing())
        if self._marks is not None and mid is not None and in_view and not older:
            assert conversation is not None
            self._marks.shown(conversation, mid)

    def _remember(self, message_id: int, message: Frame) -> None:
        self._messages[message_id] = message
        self._messages.move_to_end(message_id)
        while len(self._messages) > REMEMBERED_MESSAGES:
            self._messages.popitem(last=False)

    def remembered(self, message_id: int) -> Frame | None:
        with self._lock:
            return self._messages.get(message_id)

    def _day(self, when: datetime | None, where: Conversation | None) -> None:
        """A day line in a stream when the date changes (a full screen draws its own)."""
        if when is None or self.display.separate:
            return
        day = when.date()
        if day != self._last_day.setdefault(where, self._now().date()):
            self._last_day[where] = day
            style = self.style
            self._add(lambda _width: [render.day_line(day, style)], where)

    # -- the session's listener -----------------------------------------------------

    def event(self, frame: Frame) -> None:
        kind = frame.get("event")
        if kind in (EventName.MESSAGE, EventName.DM):
            self.show_messages([frame])
            self._alert(frame)
        elif kind == EventName.EDIT:
            self.show_change(frame)
        elif kind == EventName.DELETE:
            self._deleted(frame)
        elif kind == EventName.READ:
            self._read_elsewhere(frame)
        elif kind in (EventName.JOIN, EventName.PART, EventName.TOPIC):
            self._membership(frame)
        elif kind == EventName.ERROR:
            self.error(f"server: {render.error_text(frame)}")
        elif kind == EventName.SHUTDOWN:
            self.notice(render.shutdown_text(frame.get("reason")))

    # -- conversation state ------------------------------------------------------------

    def _alert(self, message: Frame) -> None:
        """A mention of us, or a direct message to us: the bell (and a notification).

        A full screen rings only for a conversation not in view: the one shown
        in a focused terminal is being read.
        """
        user = render.sanitize(message.get("user"))
        if self._notifier is None or user.lower() == self.me.lower():
            return
        direct = message.get("room") is None
        if not direct and not render.calls_me(message, self.me, self.highlights):
            return
        conversation = conversation_of(message, self.me)
        if (
            self.display.separate
            and conversation is not None
            and self.display.in_view(conversation, self.viewing())
        ):
            return
        where = "direct message" if direct else f"#{render.sanitize(message.get('room'))}"
        text = render.sanitize(message.get("text"))
        self._notifier.alert(f"{user} ({where})", text[:200])

    def show_change(self, message: Frame) -> None:
        """An edited message (an event, or the reply to our /edit): shown again as it is now."""
        with self._lock:
            self._show_message(message, replaces=True)

    def show_edit_reply(self, reply: Frame) -> None:
        message = reply.get("message")
        if isinstance(message, dict):
            self.show_change(message)

    def _deleted(self, frame: Frame) -> None:
        mid = frame.get("id")
        with self._lock:
            known = self._messages.get(mid) if isinstance(mid, int) else None
            if known is None:
                where = frame.get("room")
                place = f"#{render.sanitize(where)}" if isinstance(where, str) else "a conversation"
                self.notice(f"a message was deleted in {place}")
                return
            gone = {key: known.get(key) for key in ("id", "room", "to", "user", "ts")}
            self._show_message({**gone, "text": "", "deleted": True}, replaces=True)

    def deleted_by_me(self, message_id: int) -> None:
        """The reply to our /delete."""
        self._deleted({"id": message_id})

    def _read_elsewhere(self, frame: Frame) -> None:
        last_read = frame.get("last_read")
        if self._marks is None or not isinstance(last_read, int):
            return
        room, peer = frame.get("room"), frame.get("with")
        if isinstance(room, str):
            conversation: Conversation = ("room", render.sanitize(room))
        elif isinstance(peer, str):
            conversation = ("with", render.sanitize(peer))
        else:
            return
        self._marks.elsewhere(conversation, last_read)
        self.display.read_moved(conversation, last_read)

    def show_unread(self, reply: Frame, *, at_login: bool = False) -> None:
        style = self.style
        if not render.unread_lines(reply, style) and not at_login:
            self.notice("nothing unread")
            return
        if at_login:
            self.display.unread_at_login(reply)
            if self.display.separate or not render.unread_lines(reply, style):
                return  # the room list shows the counts
            self.notice("unread:")
        self._add(lambda width: render.unread_lines(reply, style, width=width))

    def show_search(self, query: str, reply: Frame) -> None:
        found = [m for m in reply.get("messages") or [] if isinstance(m, dict)]
        with self._lock:
            if not found:
                self.notice(f"nothing found for {render.sanitize(query)}")
                return
            self.notice(f"{render.counted(len(found), 'message')} found for {query}, oldest first:")
            me, style, tz = self.me, self.style, self.tz
            for message in reversed(found):
                mid = message.get("id")
                if isinstance(mid, int) and not isinstance(mid, bool):
                    self._remember(mid, message)  # so that /reply can answer it
                # a search result: its id shown, its room named whatever is current
                self._add(_MessageDraw(message, me, None, style, tz, True, None, ()))

    def reply_to(self, message_id: int, text: str) -> None:
        """/reply: a message in the conversation of the one it answers."""
        message = self.remembered(message_id)
        conversation = None if message is None else conversation_of(message, self.me)
        if conversation is None:
            self.error(f"no message {message_id} shown here: /ids on shows their ids")
            return
        kind, name = conversation
        if kind == "room":
            self.request("send", self.show_own, room=name, text=text, reply_to=message_id)
        else:
            self.request("dm", self.show_own, to=name, text=text, reply_to=message_id)

    def set_ids(self, on: bool) -> None:
        self.show_ids = on
        self.notice(
            "message ids are shown: /reply, /edit and /delete take them"
            if on
            else "message ids are hidden"
        )

    def mark_read(self, conversation: Conversation, message_id: int) -> None:
        """What ReadMarks sends; a refusal (we left the room meanwhile) is not worth a line."""
        kind, name = conversation
        self.session.request("mark_read", None, **{kind: name, "message_id": message_id})

    def close(self) -> None:
        """Before the session closes: what waits to be marked read is sent."""
        if self._marks is not None:
            self._marks.close()

    def _membership(self, frame: Frame) -> None:
        kind = frame.get("event")
        room = render.sanitize(frame.get("room"))
        user = render.sanitize(frame.get("user"))
        with self._lock:
            if kind == EventName.TOPIC:
                self.topics[room] = render.sanitize(frame.get("topic"))
            elif user and kind == EventName.JOIN:
                self._users.add(user)
            moment, style, where = self._now(), self.style, ("room", room)
            self._day(moment, None)
            self.display.add(
                Shown(
                    lambda width: render.event_lines(
                        frame, moment=moment, style=style, width=width
                    ),
                    where,
                    day=moment.date(),
                )
            )
            if user.lower() == self.me.lower() and kind == EventName.PART and self.current == room:
                rest = self.joined()
                self.current = rest[0] if rest else None
        self.display.refresh()

    def connection_lost(self, reason: str) -> None:
        if reason == RECONNECT_ASKED:
            self.notice(reason)
        else:
            self.error(f"connection lost: {render.sanitize(reason)}")
        self.display.refresh()

    def reconnect(self) -> None:
        """/reconnect: connect again now, rather than after the backoff."""
        self.notice(self.session.reconnect_now())

    def reconnecting(self, attempt: int, delay: float) -> None:
        self.notice(f"reconnecting in {delay:.1f} s (attempt {attempt})")

    def reconnected(self, missed: Missed) -> None:
        self.notice(f"reconnected; {render.counted(missed.count, 'new message')} while away")
        with self._lock:
            self._gaps.update(missed.gaps)
            for room, messages in missed.rooms.items():
                if room in missed.gaps:
                    self.notice(
                        f"more came in to #{room} than is shown here: /history in #{room} "
                        "shows the older ones you missed"
                    )
                self.show_messages(messages)
            self.show_messages(missed.direct)
        self.display.refresh()

    def pacing(self, waiting: int) -> None:
        """The server refused a message for the rate: it and the rest go out as it allows."""
        with self._lock:
            started = not self._pacing
            self._pacing = waiting > 0
        if started and waiting:
            count = render.counted(waiting, "message")
            self.notice(f"sending slowly, as the server allows: {count} waiting")
        elif not waiting:
            self.notice("every waiting message is sent")
        self.display.refresh()

    def gave_up(self, reason: str) -> None:
        self.error(f"{render.sanitize(reason)}; /quit to leave")
        self.display.refresh()


# why: a message shown keeps its frame (to draw it again at another width); the names in
# it are the same few strings over and over, kept once: 8 MB of 50,000 lines
SHARED_NAMES = ("event", "room", "user", "to")
SHARED_NAME_CHARS = 64


def _share_names(message: Frame) -> None:
    for key in SHARED_NAMES:
        value = message.get(key)
        if type(value) is str and len(value) <= SHARED_NAME_CHARS:
            message[key] = sys.intern(value)


@dataclass(slots=True)
class _MessageDraw:
    """A message's `Draw`. A closure would keep the same in a function and eight cells,
    ~700 bytes a message; this is ~120: 30 MB of 50,000 lines (bench/client_screen.py)."""

    message: Frame
    me: str
    current: str | None
    style: render.Style
    tz: tzinfo | None
    show_id: bool
    quote: str | None
    highlights: tuple[str, ...]

    def __call__(self, width: int | None) -> list[str]:
        return render.message_lines(
            self.message,
            me=self.me,
            current_room=self.current,
            style=self.style,
            tz=self.tz,
            width=width,
            show_id=self.show_id,
            quote=self.quote,
            highlights=self.highlights,
        )
