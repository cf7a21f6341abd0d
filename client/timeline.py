"""One conversation's lines on a full screen, drawn a screenful at a time.

A timeline keeps what was shown (`Entry`: a way to draw itself at a width)
and where the view is; `visible` wraps only the entries that reach the
screen, each cached at the width it was last drawn at. prompt_toolkit's
stock text widget formats and wraps its whole text on every redraw, which
at 50,000 lines of scrollback is far too slow (bench/client_screen.py).

The view is anchored to an entry, not to a distance from the bottom: lines
arriving below, or older pages arriving above, leave what the user is
reading where it is. `None` means following the newest line.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import date
from itertools import groupby

from prompt_toolkit.formatted_text import ANSI, StyleAndTextTuples, to_formatted_text

from client.display import Draw

# why: a day of a busy room; older lines can be fetched again from the server
SCROLLBACK_ENTRIES = 20_000
# entries of a timeline whose drawn lines are kept: many screens' worth
DRAWN_ENTRIES = 500
DAY_STYLE = "class:day"
MARKER_STYLE = "class:marker"
LOADING_STYLE = "class:loading"
NEW_MARKER = " new since you left "
Fragments = StyleAndTextTuples


@dataclass(slots=True)
class Entry:
    draw: Draw
    message_id: int | None = None
    day: date | None = None
    seq: int = 0  # its place: consecutive along the timeline, so finding it costs nothing
    _width: int = -1
    _lines: list[Fragments] | None = None  # as drawn at _width; None until first drawn

    def drawn(self, width: int) -> bool:
        return self._lines is not None and width == self._width

    def lines(self, width: int) -> list[Fragments]:
        lines = self._lines
        if lines is None or width != self._width:
            lines = [_runs(to_formatted_text(ANSI(line))) for line in self.draw(width)] or [[]]
            self._lines, self._width = lines, width
        return lines

    def forget(self) -> None:
        """Drop the drawn lines (drawn again when next in view)."""
        self._width, self._lines = -1, None

    def redraw(self, draw: Draw) -> None:
        self.draw = draw
        self.forget()


@dataclass(frozen=True, slots=True)
class Anchor:
    """The top of the view: `skip` lines into an entry, or (None) the line above them all."""

    entry: Entry | None
    skip: int = 0


class Timeline:
    def __init__(self, limit: int = SCROLLBACK_ENTRIES) -> None:
        self.entries: deque[Entry] = deque()
        self._by_id: dict[int, Entry] = {}
        self._limit = limit
        self.anchor: Anchor | None = None  # None: following the newest line
        self.marker: Entry | None = None  # "new since you left" goes above this entry
        self.marker_after: int | None = None  # the next message above this id gets the marker
        self.loading = False  # a page of older messages was asked for
        self.at_beginning = False  # the server has nothing older
        self.newest_id = 0
        # why: drawn lines cost ~1 KB a row; a user paging through a whole scrollback would
        # keep all of them (95 MB at 50,000 lines). The entries drawn last keep theirs.
        self._drawn: deque[Entry] = deque()

    # -- what is shown -------------------------------------------------------------

    def add(self, entry: Entry) -> None:
        mid = entry.message_id
        if mid is not None:
            self._by_id[mid] = entry
            self.newest_id = max(self.newest_id, mid)
            if self.marker_after is not None and mid > self.marker_after:
                self.marker, self.marker_after = entry, None
        entry.seq = self.entries[-1].seq + 1 if self.entries else 0
        self.entries.append(entry)
        while len(self.entries) > self._limit:
            self._drop(self.entries.popleft())
            self.at_beginning = False

    def add_older(self, entry: Entry) -> None:
        """An entry from paging back: it goes above everything shown, which stays put."""
        if self.anchor is not None and self.anchor.entry is None and self.entries:
            self.anchor = Anchor(self.entries[0])
        if entry.message_id is not None:
            self._by_id[entry.message_id] = entry
        entry.seq = self.entries[0].seq - 1 if self.entries else 0
        self.entries.appendleft(entry)

    def replace(self, message_id: int, draw: Draw) -> bool:
        """An edited or deleted message drawn again in its place; False if not shown here."""
        entry = self._by_id.get(message_id)
        if entry is None:
            return False
        entry.redraw(draw)
        return True

    def oldest_id(self) -> int | None:
        for entry in self.entries:
            if entry.message_id is not None:
                return entry.message_id
        return None

    def _drop(self, entry: Entry) -> None:
        if entry.message_id is not None:
            self._by_id.pop(entry.message_id, None)
        if self.anchor is not None and self.anchor.entry is entry:
            self.anchor = Anchor(None)
        if self.marker is entry:
            self.marker = None

    def mark_new_after(self, message_id: int) -> None:
        """The next message above `message_id` starts what the user has not seen."""
        self.marker, self.marker_after = None, message_id

    # -- drawing -------------------------------------------------------------------

    def visible(self, width: int, height: int) -> list[Fragments]:
        """The lines of the view, top to bottom; at most `height`, wrapped to `width`."""
        if height <= 0:
            return []
        if self.anchor is not None:
            rows = self._down_from(self.anchor, width, height)
            if len(rows) == height:
                return rows
            self.anchor = None  # what is left below fits: follow the newest line again
        rows = []
        index = len(self.entries) - 1
        while index >= 0 and len(rows) < height:
            rows.extend(reversed(self._lines_of(index, width)))
            index -= 1
        if index < 0 and len(rows) < height:
            rows.append(self._top_line(width))
        rows.reverse()
        return rows[-height:]

    def _down_from(self, anchor: Anchor, width: int, height: int) -> list[Fragments]:
        rows: list[Fragments] = []
        if anchor.entry is None:
            rows.append(self._top_line(width))
            index = 0
        else:
            index = self._index_of(anchor.entry)
            rows.extend(self._lines_of(index, width)[anchor.skip :])
            index += 1
        while index < len(self.entries) and len(rows) < height:
            rows.extend(self._lines_of(index, width))
            index += 1
        return rows[:height]

    def _index_of(self, entry: Entry) -> int:
        return entry.seq - self.entries[0].seq

    def _lines_of(self, index: int, width: int) -> list[Fragments]:
        """An entry's lines, after a day line when its date differs from the entry above,
        and after the "new since you left" line when it is the first one not seen."""
        entry = self.entries[index]
        if not entry.drawn(width):
            self._remember_drawn(entry)
        lines = entry.lines(width)
        above: list[Fragments] = []
        if entry.day is not None:
            previous = self._day_above(index)
            if previous is not None and previous != entry.day:
                above.append([(DAY_STYLE, _centred(f" {entry.day:%A %d %B %Y} ", width))])
        if entry is self.marker:
            above.append([(MARKER_STYLE, _centred(NEW_MARKER, width))])
        return above + lines if above else lines

    def _remember_drawn(self, entry: Entry) -> None:
        self._drawn.append(entry)
        while len(self._drawn) > DRAWN_ENTRIES:
            self._drawn.popleft().forget()

    def _day_above(self, index: int) -> date | None:
        for back in range(index - 1, max(index - 50, -1), -1):
            day = self.entries[back].day
            if day is not None:
                return day
        return None

    def _top_line(self, width: int) -> Fragments:
        if self.loading:
            return [(LOADING_STYLE, _centred(" loading older messages... ", width))]
        if self.at_beginning:
            return [(DAY_STYLE, _centred(" the beginning of this conversation ", width))]
        return [(DAY_STYLE, _centred(" PageUp: older messages ", width))]

    # -- scrolling -----------------------------------------------------------------

    def _top(self, width: int, height: int) -> tuple[int, int]:
        """Where the view starts now: (entry index, lines skipped); index -1 is the top line."""
        if self.anchor is not None:
            if self.anchor.entry is None:
                return -1, 0
            return self._index_of(self.anchor.entry), self.anchor.skip
        remaining, index = height, len(self.entries) - 1
        while index >= 0:
            count = len(self._lines_of(index, width))
            if count >= remaining:
                return index, count - remaining
            remaining -= count
            index -= 1
        return -1, 0

    def scroll_up(self, rows: int, width: int, height: int) -> bool:
        """Move the view up; True when it shows the top of what is held here."""
        index, skip = self._top(width, height)
        while rows > 0 and index >= 0:
            if skip >= rows:
                skip -= rows
                rows = 0
            else:
                rows -= skip + 1
                index -= 1
                skip = len(self._lines_of(index, width)) - 1 if index >= 0 else 0
        if index < 0:
            self.anchor = Anchor(None)
            return True
        self.anchor = Anchor(self.entries[index], skip)
        return False

    def scroll_down(self, rows: int, width: int, height: int) -> None:
        """Move the view down; at the bottom it follows the newest line again."""
        if self.anchor is None:
            return
        index, skip = self._top(width, height)
        while rows > 0 and index < len(self.entries):
            count = len(self._lines_of(index, width)) if index >= 0 else 1
            if skip + rows < count:
                skip += rows
                rows = 0
            else:
                rows -= count - skip
                index, skip = index + 1, 0
        if index >= len(self.entries):
            self.anchor = None
            return
        self.anchor = Anchor(None) if index < 0 else Anchor(self.entries[index], skip)
        self.visible(width, height)  # what fits below the new top follows the newest line

    def follow(self) -> None:
        self.anchor = None

    @property
    def scrolled(self) -> bool:
        return self.anchor is not None


def _runs(fragments: Fragments) -> Fragments:
    """One fragment per run of a style. prompt_toolkit's ANSI parser gives one per
    character, ~13 KB for a message's lines: kept for every line drawn, that was
    680 MB for 50,000 (bench/client_screen.py)."""
    return [(style, "".join(part[1] for part in run)) for style, run in groupby(fragments, _style)]


def _style(fragment: tuple[str, ...] | tuple[str, str, object]) -> str:
    return fragment[0]


def _centred(text: str, width: int) -> str:
    return text.center(max(width, len(text)), "─")[: max(width, 1)]
