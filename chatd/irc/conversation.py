"""One IRC connection's commands as they are handled: what every command may use.

A command either answers on its own (`reply`, `numeric`, `fail`) or becomes
chatd requests (`request`), dispatched through the same handlers as the JSON
protocol; either way its answer takes its place in command order (requests
through their reply slots, the rest behind them). A command's label is
applied once, to its whole answer: by the renderer of its one request, or
here to what it said itself, or through a labeled-response batch opened
for a command that makes several requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chatd.commands import dispatch
from chatd.dialects import Kick
from chatd.errors import ErrorCode
from chatd.handlers import HANDLERS
from chatd.irc import numerics as n
from chatd.irc.away import AwayBook
from chatd.irc.client import ClientDialect
from chatd.irc.codec import Line, LineDecoder, TooLong, escape_value, parse
from chatd.irc.render import Renderer, add_tag, in_batch, labeled
from chatd.irc.state import Pending, State
from chatd.ratelimit import Clock, TokenBucket
from chatd.requests import Op
from chatd.services import Services
from chatd.session import Session

log = logging.getLogger(__name__)

# why: a paced sender waits this long at most at a time, so a stop is noticed soon.
PACE_SLICE = 0.25
# why: as the JSON dialect: an occasional bad line is forgiven, one per this many seconds.
BAD_LINE_REFILL_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Command:
    """An IRC command: its function, the parameters it needs, whether it may come before 001."""

    run: Callable[[Conversation, Line], None]
    min_params: int = 0
    before_registration: bool = False


class Conversation:
    """One IRC connection's lines, each run as a command of `commands`, and what commands share."""

    def __init__(
        self,
        session: Session,
        state: State,
        dialect: ClientDialect,
        away: AwayBook,
        kick: Kick,
        stopping: Callable[[], bool],
        clock: Clock,
        commands: Mapping[str, Command],
    ) -> None:
        self.session = session
        self._commands = commands
        self._decoder = LineDecoder()
        limit = session.services.config.max_bad_frames
        self._bad_lines = TokenBucket(1 / BAD_LINE_REFILL_SECONDS if limit else 0, limit, clock)
        self.state = state
        self.dialect = dialect
        self.away = away
        self._kick = kick
        self._stopping = stopping
        self.services: Services = session.services
        self.config = session.services.config
        self.renderer: Renderer = state.renderer
        self.closing = False
        # registration: what the client said before 001
        self.requested_nick: str | None = None
        self.user_name: str | None = None
        self.password: str | None = None
        self.negotiating = False  # CAP LS or REQ seen and no CAP END yet
        self.cap_302 = False
        self.sasl: list[str] | None = None  # AUTHENTICATE payload chunks, once PLAIN began
        # why: flood control paces an IRC sender instead of refusing: its lines wait
        # (Ergo's fakelag); the handlers' own bucket is then never empty.
        self.pace = session.send_bucket
        session.send_bucket = TokenBucket(0, 1)
        # the command being handled
        self._label: str | None = None
        self._batch: str | None = None
        self._said: list[bytes] = []
        self._label_used = False  # a request's answer carries the label

    # reading

    def received(self, data: bytes) -> bool:
        for item in self._decoder.feed(data):
            if self._stopping() or not self._handle(item):
                return False
        return True

    def _handle(self, item: bytes | TooLong) -> bool:
        """Answer one line; False when the connection should stop reading."""
        if isinstance(item, TooLong):
            self.session.say(
                self.renderer.numeric(
                    n.ERR_INPUTTOOLONG, self.state.nick, "Input line was too long"
                )
            )
            return self._bad_line()
        line = parse(item)
        if line is None:
            return self._bad_line()
        verb = line.verb.upper()
        command = self._commands.get(verb)
        self.begin(line)
        bad = False
        try:
            if command is None:
                self.numeric(n.ERR_UNKNOWNCOMMAND, line.verb[:32], "Unknown command")
                bad = True
            elif not command.before_registration and not self.state.registered:
                self.numeric(n.ERR_NOTREGISTERED, "You have not registered")
            elif len(line.params) < command.min_params:
                self.numeric(n.ERR_NEEDMOREPARAMS, verb, "Not enough parameters")
            else:
                command.run(self, line)
        except Exception:
            log.exception("%s: internal error in IRC command %s", self.session.peer, verb)
            self.numeric(n.ERR_UNKNOWNERROR, verb, "internal server error")
        self.end()
        if self.closing or self.session.quitting:
            return False
        return not bad or self._bad_line()

    def _bad_line(self) -> bool:
        if self._bad_lines.take():
            self.close(ErrorCode.TOO_MANY_ERRORS, "too many bad lines")
            return False
        return True

    # a command's answer

    def begin(self, line: Line) -> None:
        label = line.tags.get("label")
        self._label = label if label and self.state.labels else None
        self._batch = None
        self._said = []
        self._label_used = False

    def several(self) -> None:
        """This command's answer may come in several parts: label it as a batch."""
        if self._label is not None and self._batch is None:
            self._batch = self.state.batch_id()
            start = self.renderer.line("BATCH", f"+{self._batch}", "labeled-response")
            self.session.say(add_tag(start, f"label={escape_value(self._label)}"))

    def end(self) -> None:
        said = b"".join(self._said)
        self._said = []
        if self._batch is not None:
            self.session.say(said + self.renderer.line("BATCH", f"-{self._batch}"))
        elif self._label is not None and not self._label_used:
            self.session.say(labeled(self.renderer, said, self._label, self.state.batch_id()))
        elif said:
            self.session.say(said)
        self._label = self._batch = None

    def reply(self, data: bytes) -> None:
        """Lines this command answers with itself (in command order, after its requests)."""
        if self._batch is not None:
            self.session.say(in_batch(data, self._batch))
        else:
            self._said.append(data)

    def numeric(self, code: str, *params: str) -> None:
        self.reply(self.renderer.numeric(code, self.state.nick, *params))

    def fail(self, verb: str, code: str, *context: str) -> None:
        """An IRCv3 standard reply: FAIL verb CODE [context...] :description."""
        self.reply(self.renderer.line("FAIL", verb, code, *context))

    def request(self, kind: type[Op], pending: Pending, **args: Any) -> ErrorCode | None:
        """Dispatch the chatd request `kind(**args)`; its answer is rendered from `pending`."""
        if self._batch is not None:
            pending.batch = self._batch
        elif self._said:  # what the command said so far goes first (001 before the joins)
            self.session.say(b"".join(self._said))
            self._said = []
            self._label_used = True  # why: unlabeled now; a command that says and asks opens
            # a batch first (several) when its label matters
        elif self._label is not None and not self._label_used:
            pending.label = self._label
            self._label_used = True
        rid = self.state.expect(pending)
        return dispatch(self.session, kind(id=rid, **args), HANDLERS)

    # the connection

    def close(self, code: ErrorCode, message: str) -> None:
        """Say ERROR and close, after everything already answered."""
        self.end()
        self.closing = True
        self._kick(code, message)

    def paced(self) -> bool:
        """Wait for a send token (flood control); False when the connection is stopping."""
        if self.pace.rate <= 0:  # flood control off (--send-rate 0)
            return True
        while (wait := self.pace.take()) > 0:
            if self._stopping():
                return False
            time.sleep(min(wait, PACE_SLICE))
        return True
