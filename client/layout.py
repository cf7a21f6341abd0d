"""Lines on a terminal: how wide text is, where to break it, how it is painted,
and where a terminal that rewraps it on a resize moves things. Pure: no
terminal, no clock.

A line is built from `Run`s, pieces of text that each have one look (a
colour, a hyperlink). Runs become escape sequences (`paint`) only after they
are wrapped, so escape sequences never count toward a width. Widths are
terminal cells as wcwidth counts them: an east-asian wide character takes 2,
a combining mark 0. render.py decides what the lines say.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby

from wcwidth import wcwidth

ZERO_WIDTH_JOINER = "\u200d"
RESET = "\x1b[0m"
UNDERLINE, UNDERLINE_OFF = "\x1b[4m", "\x1b[24m"
# why: OSC 8 is how terminals mark a hyperlink; terminals without it ignore it.
OSC8_OPEN, OSC8_CLOSE = "\x1b]8;;{url}\x1b\\", "\x1b]8;;\x1b\\"
# why: beside a very long head, a text narrower than this is harder to read than one the
# terminal wraps
MIN_TEXT_COLUMNS = 12
_WORD = re.compile(r"[^ ]+")
# what `paint` writes around runs: SGR colours and OSC 8 hyperlinks
_OWN_ESCAPES = re.compile(r"\x1b\[[0-9;]*m|\x1b\]8;[^\x1b]*\x1b\\")


@dataclass(frozen=True, slots=True)
class Run:
    """A piece of a line with one look: SGR parameters, and the OSC 8 target of a link."""

    text: str
    sgr: str = ""
    link: str | None = None


@dataclass(frozen=True, slots=True)
class Style:
    """Whether lines carry colour and hyperlinks (a terminal) or are plain (scripts, pipes)."""

    colour: bool = True
    links: bool = False

    def paint(self, sgr: str, text: str) -> str:
        return f"\x1b[{sgr}m{text}{RESET}" if self.colour and text else text


PLAIN = Style(colour=False)


def hang(head: list[Run], bodies: list[list[Run]], width: int | None, style: Style) -> list[str]:
    """`head`, then the body lines; continuation lines start under the first body's column.

    Without a width (a script) each body line stays whole. With one, each is
    wrapped at word boundaries into what the head leaves of the width (at
    least MIN_TEXT_COLUMNS, so that a very long head still leaves room).
    """
    column = text_width("".join(run.text for run in head))
    room = None if width is None else max(width - column, MIN_TEXT_COLUMNS)
    rows: list[list[Run]] = []
    for body in bodies:
        rows.extend([body] if room is None else wrap_runs(body, room))
    first, *rest = rows or [[]]
    pad = " " * column
    return [paint([*head, *first], style), *(pad + paint(row, style) for row in rest)]


def paint(runs: Iterable[Run], style: Style) -> str:
    """Runs as terminal text: each with its colour, a link with OSC 8 and an underline."""
    painted = []
    for (sgr, link), group in groupby(runs, key=lambda run: (run.sgr, run.link)):
        text = "".join(run.text for run in group)
        if not text:
            continue
        if link is not None and style.links:
            text = OSC8_OPEN.format(url=link) + UNDERLINE + text + UNDERLINE_OFF + OSC8_CLOSE
        painted.append(style.paint(sgr, text) if sgr else text)
    return "".join(painted)


def _clusters(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """(end, cells) of each character of text[start:end] with the marks that join it.

    Breaking inside a cluster would strand an accent or split an emoji
    sequence, so a line is only ever cut between clusters.
    """
    index = start
    while index < end:
        cells = max(wcwidth(text[index]), 0)
        index += 1
        while index < end:
            joined = text[index - 1] == ZERO_WIDTH_JOINER
            if not joined and wcwidth(text[index]) != 0:
                break
            index += 1
        yield index, cells


def text_width(text: str) -> int:
    """Cells that plain text (no escape sequences) takes on a terminal."""
    if text.isascii() and text.isprintable():
        return len(text)
    return sum(cells for _, cells in _clusters(text, 0, len(text)))


def display_width(line: str) -> int:
    """Cells a line painted by render.py takes: its colours and links take none."""
    return text_width(_OWN_ESCAPES.sub("", line))


def wrap_spans(text: str, width: int) -> list[tuple[int, int]]:
    """Where to cut one line of plain text into pieces of at most `width` cells.

    Cuts fall between words, and the spaces at a cut are dropped; spaces at
    the very start (an indented line) are kept. A word longer than a whole
    line is cut between characters, starting on the current line when there
    is room. Returns (start, end) offsets into `text`, so that callers can
    cut styled runs at the same places.
    """
    if width < 1 or text_width(text) <= width:
        return [(0, len(text))]
    spans: list[tuple[int, int]] = []
    start = end = used = 0  # the piece being filled is text[start:end], `used` cells
    for word in _WORD.finditer(text):
        gap = text_width(text[end : word.start()])
        size = text_width(word.group())
        if used + gap + size <= width:
            end, used = word.end(), used + gap + size
            continue
        if size <= width:
            if end > start:
                spans.append((start, end))
            start, end, used = word.start(), word.end(), size
            continue
        if end > start and used + gap < width:
            used += gap
        else:
            if end > start:
                spans.append((start, end))
            start, used = word.start(), 0
        cut = word.start()
        for stop, cells in _clusters(text, word.start(), word.end()):
            if used + cells > width and used > 0:
                spans.append((start, cut))
                start, used = cut, 0
            used += cells
            cut = stop
        end = word.end()
    if end > start:
        spans.append((start, end))
    # why: a line of nothing but spaces has no word to keep; as many spaces as fit
    return spans or [(0, _fitting(text, width))]


def _fitting(text: str, width: int) -> int:
    """How many characters from the start of `text` fit in `width` cells."""
    used = fit = 0
    for stop, cells in _clusters(text, 0, len(text)):
        if used + cells > width:
            break
        used, fit = used + cells, stop
    return fit


def wrap_runs(runs: Sequence[Run], width: int) -> list[list[Run]]:
    """Runs cut into lines of at most `width` cells, each piece keeping its run's look.

    A link cut in two stays a link to the whole target on both lines.
    """
    text = "".join(run.text for run in runs)
    return [_slice(runs, start, end) for start, end in wrap_spans(text, width)]


def _slice(runs: Sequence[Run], start: int, end: int) -> list[Run]:
    pieces = []
    offset = 0
    for run in runs:
        run_end = offset + len(run.text)
        low, high = max(start, offset), min(end, run_end)
        if low < high:
            pieces.append(dataclasses.replace(run, text=run.text[low - offset : high - offset]))
        offset = run_end
    return pieces


def cursor_after_reflow(
    row_widths: Sequence[int], cursor: tuple[int, int], width: int
) -> tuple[int, int]:
    """The cursor (x, y from the first row drawn) once a narrower terminal rewrapped the rows.

    Terminals that reflow (most now do) cut every line wider than a new,
    narrower width into several rows, and keep the cursor on its cell. Each
    row here is a line of its own (prompt_toolkit ends its rows explicitly),
    so a row `w` cells wide becomes ceil(w / width) rows.
    """
    x, y = cursor
    above = sum(max(1, -(-row // width)) for row in row_widths[:y])
    return x % width, above + x // width
