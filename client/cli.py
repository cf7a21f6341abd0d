"""The `chat` command: `chat register` and `chat login`.

`main(argv, env) -> int` is a plain function (the httpie way): tests call it
with their own arguments, environment and `Console`. Exit status
(chatd.exitstatus, shared with `chatd`): OK success, FAILURE refused (wrong
password, name taken, server unreachable, a scripted line failed), USAGE
(bad flags, nothing to ask a missing value with).
"""

from __future__ import annotations

import argparse
import getpass
import os
import shlex
import ssl
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from chatd import __version__
from chatd.errors import ErrorCode
from chatd.exitstatus import ExitStatus
from chatd.names import PASSWORD_MAX_BYTES, PASSWORD_MIN_BYTES, is_valid_username
from client import render
from client.connection import (
    Backoff,
    ConnectionLost,
    UntrustedServer,
    WrongTransport,
    network_error_text,
    show_address,
)
from client.errors import error_code
from client.recovery import Frame, message_id, messages_in
from client.session import LoginFailed, Session
from client.settings import Settings, SettingsError, load_settings
from client.state import SeenMarkers

DEFAULT_SERVER = "127.0.0.1:7700"
DEFAULT_PORT = 7700
PASSWORD_TRIES = 3
TLS_YES = frozenset({"1", "yes", "true", "on"})
TLS_NO = frozenset({"", "0", "no", "false", "off"})
# why: a script should end, not wait forever for a server that is gone.
SCRIPT_GIVE_UP_AFTER = 30.0
# why: on a machine where this account never ran chat, the latest few stand for "unseen".
RECENT_DIRECT = 20
# why: the direct messages shown at login per conversation; /unread and history say the rest
UNREAD_DIRECT_SHOWN = 100
NOTIFY_YES = TLS_YES
SETTINGS_HELP = """\
settings:
  chat reads ~/.config/chat/config.toml (or $XDG_CONFIG_HOME/chat/config.toml, or
  the file CHAT_CONFIG names) when it exists; options and environment variables win:
    server = "HOST:PORT"    user = "NAME"    tls = true    ca = "FILE"
    line = true             (the line mode instead of the full screen)
    notify = true           highlights = ["word", ...]
    [colours]  sidebar current unread mention topic status marker day loading question
    [keys]     scroll_up scroll_down previous_conversation next_conversation next_active
               newline toggle_sidebar help redraw   (e.g. next_active = ["escape a", "f2"])
  docs/chatting.md describes every setting and key.
"""


class UsageError(Exception):
    """Exit status 2: the command line or environment cannot work."""


class Refused(Exception):
    """Exit status 1, with the line to print."""


def _ask_password(prompt: str) -> str:
    return getpass.getpass(prompt)


def _has_tty() -> bool:
    try:
        with open("/dev/tty"):
            return True
    except OSError:
        return False


@dataclass
class Console:
    """The streams and prompts `chat` uses, replaceable in tests."""

    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    ask: Callable[[str], str] = input
    ask_password: Callable[[str], str] = _ask_password
    terminal: bool | None = None  # None: stdin and stdout are both ttys
    can_prompt: Callable[[], bool] = _has_tty

    @property
    def interactive(self) -> bool:
        if self.terminal is not None:
            return self.terminal
        return self.stdin.isatty() and self.stdout.isatty()

    @property
    def piped(self) -> bool:
        """Standard input is a pipe or a file: something else feeds it."""
        if self.terminal is not None:
            return not self.terminal
        return not self.stdin.isatty()

    def say(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)

    def complain(self, text: str) -> None:
        print(f"chat: {text}", file=self.stderr, flush=True)


def parse_server(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `HOST`, `[::1]:PORT` -> (host, port); UsageError otherwise."""
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    if not host or (port_text and not port_text.isdigit()):
        raise UsageError(f"not a server address: {text!r} (use HOST:PORT)")
    port = int(port_text) if port_text else DEFAULT_PORT
    if not 0 < port < 65536:
        raise UsageError(f"port out of range in {text!r}")
    return host, port


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chat",
        description="chat: the chatd terminal client",
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # why: not argparse's "version" action, which prints to sys.stdout, not the Console
    parser.add_argument("--version", action="store_true", help="print chat's version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (
        ("register", "create an account on the server"),
        ("login", "log in and chat (reads commands from stdin when it is not a terminal)"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--server", help=f"HOST:PORT (env CHAT_SERVER; default {DEFAULT_SERVER})")
        sub.add_argument("--user", help="your username (asked for when missing)")
        sub.add_argument(
            "--tls", action="store_true", help="use TLS, verifying the server (env CHAT_TLS=yes)"
        )
        sub.add_argument(
            "--ca", metavar="FILE", help="trust this CA certificate (PEM) instead of the system's"
        )
        if name == "login":
            sub.add_argument(
                "--notify",
                action="store_true",
                help="desktop notifications for mentions and direct messages (CHAT_NOTIFY=yes)",
            )
            sub.add_argument(
                "--line",
                action="store_true",
                help="the line mode instead of the full screen (CHAT_LINE=yes)",
            )
    return parser


@dataclass(frozen=True, slots=True)
class Target:
    """The server to talk to and how; `tls_switches` says what asked for TLS, for advice."""

    address: tuple[str, int]
    tls: ssl.SSLContext | None = None
    tls_switches: tuple[str, ...] = ()  # of "--tls", "--ca", "CHAT_TLS"
    ca: str | None = None


def _target(args: argparse.Namespace, env: Mapping[str, str]) -> Target:
    """The server (--server, CHAT_SERVER); a verifying TLS context if --tls, --ca or CHAT_TLS."""
    address = parse_server(args.server or env.get("CHAT_SERVER") or DEFAULT_SERVER)
    asked = (("--tls", bool(args.tls)), ("--ca", bool(args.ca)), ("CHAT_TLS", _env_tls(env)))
    switches = tuple(name for name, given in asked if given)
    if not switches:
        return Target(address)
    try:
        context = ssl.create_default_context(cafile=args.ca)
    except ssl.SSLError:
        raise UsageError(f"cannot use --ca {args.ca}: it holds no PEM certificate") from None
    except OSError as exc:
        raise UsageError(f"cannot use --ca {args.ca}: {network_error_text(exc)}") from None
    return Target(address, context, switches, args.ca)


def _env_tls(env: Mapping[str, str]) -> bool:
    """CHAT_TLS as a yes or no; a value that is neither is a usage error, not a silent no."""
    value = env.get("CHAT_TLS", "")
    word = value.strip().lower()
    if word in TLS_YES or word in TLS_NO:
        return word in TLS_YES
    raise UsageError(f"CHAT_TLS={value!r} is neither yes nor no (1/0, true/false, on/off)")


def _username(args: argparse.Namespace, console: Console) -> str:
    if args.user:
        return str(args.user)
    if not console.interactive:
        raise UsageError("no terminal to ask for the username: use --user NAME")
    while True:
        name = console.ask("username: ").strip()
        if is_valid_username(name):
            return name
        console.complain(render.ERROR_TEXT[ErrorCode.INVALID_USERNAME])


def _password_source(env: Mapping[str, str], console: Console) -> str | None:
    """CHAT_PASSWORD when set; None when we may ask; UsageError when we cannot."""
    if env.get("CHAT_PASSWORD"):
        return env["CHAT_PASSWORD"]
    if not console.interactive and not console.can_prompt():
        raise UsageError("no terminal to ask for the password: set CHAT_PASSWORD")
    return None


def _password_without_asking(env: Mapping[str, str], console: Console) -> str | None:
    """CHAT_PASSWORD, else the first line of a piped stdin (as `chatd user add` reads it).

    None when stdin is a terminal: the caller asks, twice.
    """
    if env.get("CHAT_PASSWORD") or not console.piped:
        return _password_source(env, console)
    line = console.stdin.readline().rstrip("\r\n")
    if not line:
        raise UsageError("no password on standard input: pipe one line, or set CHAT_PASSWORD")
    return line


def _login_hint(args: argparse.Namespace, username: str) -> str:
    """The `chat login` command to run next, with the connection flags given, ready to paste."""
    words = ["chat", "login"]
    if args.server:
        words += ["--server", args.server]
    if args.tls:
        words.append("--tls")
    if args.ca:
        words += ["--ca", args.ca]
    return shlex.join([*words, "--user", username])


def _open(target: Target, give_up_after: float | None = None) -> Session:
    session = Session(
        target.address, backoff=Backoff(), give_up_after=give_up_after, tls=target.tls
    )
    where = show_address(target.address)
    try:
        session.open()
    except UntrustedServer as exc:
        raise Refused(f"{exc}{_trust_advice(exc, target)}") from None
    except WrongTransport as exc:
        raise Refused(f"cannot talk to {where}: {exc}{_transport_advice(exc, target)}") from None
    except OSError as exc:
        raise Refused(f"cannot reach {where}: {network_error_text(exc)}") from None
    except ConnectionLost as exc:
        raise Refused(f"cannot reach {where}: {exc}") from None
    return session


def _trust_advice(exc: UntrustedServer, target: Target) -> str:
    """What would get past an untrusted certificate, in the user's own flags."""
    if exc.names and "*" not in exc.names[0]:
        by_name = show_address((exc.names[0], target.address[1]))
        return f": connect by that name (--server {by_name})"
    if not exc.unknown_issuer:
        return ""
    if target.ca:
        return f"; the CA in {target.ca} did not sign it"
    return "; for a private CA use --ca FILE"


def _transport_advice(exc: WrongTransport, target: Target) -> str:
    """TLS on one side only: turn it on, or off the way it was turned on."""
    if exc.server_tls:
        return ": add --tls"
    steps = []
    flags = [switch for switch in target.tls_switches if switch.startswith("--")]
    if flags:
        steps.append("leave out " + " and ".join(flags))
    if "CHAT_TLS" in target.tls_switches:
        steps.append("unset CHAT_TLS")
    return f" ({', and '.join(steps)})"


def register(args: argparse.Namespace, env: Mapping[str, str], console: Console) -> int:
    """chat register: username, then the password (twice, or once from a pipe); 0, or 1 refused."""
    _settings_for(args, env)
    target = _target(args, env)
    username = _username(args, console)
    if not is_valid_username(username):
        raise Refused(render.ERROR_TEXT[ErrorCode.INVALID_USERNAME])
    password = _password_without_asking(env, console)
    tries = 0
    while password is None:
        tries += 1
        first = console.ask_password("password: ")
        size = len(first.encode("utf-8"))
        if not PASSWORD_MIN_BYTES <= size <= PASSWORD_MAX_BYTES:
            console.complain(render.ERROR_TEXT[ErrorCode.INVALID_PASSWORD])
        elif console.ask_password("password again: ") == first:
            password = first
            break
        else:
            console.complain("the passwords do not match")
        if tries >= PASSWORD_TRIES:
            raise Refused("no password chosen")
    session = _open(target)
    try:
        reply = session.call("register", username=username, password=password)
    except ConnectionLost as exc:
        raise Refused(f"the connection was lost: {exc}") from None
    finally:
        session.close()
    if not reply.get("ok"):
        raise Refused(render.error_text(reply))
    name = render.sanitize(reply.get("username", username))
    console.say(f"registered {name}; now: {_login_hint(args, name)}")
    return ExitStatus.OK


def login(args: argparse.Namespace, env: Mapping[str, str], console: Console) -> int:
    """chat login: log in, then the interactive chat or the scripted mode."""
    settings = _settings_for(args, env)
    from client.chat import Chat
    from client.ui import PlainDisplay, run_script

    target = _target(args, env)
    username = _username(args, console)
    fixed = _password_source(env, console)
    interactive = console.interactive
    give_up_after = None if interactive else SCRIPT_GIVE_UP_AFTER
    session: Session | None = None
    for attempt in range(1, PASSWORD_TRIES + 1):
        password = fixed if fixed is not None else console.ask_password("password: ")
        if session is None:
            session = _open(target, give_up_after)
        try:
            reply = session.login(username, password)
            break
        except LoginFailed as exc:
            text = render.error_text(exc.reply)
            if (
                fixed is not None
                or attempt == PASSWORD_TRIES
                or error_code(exc.reply) is not ErrorCode.INVALID_CREDENTIALS
            ):
                session.close()
                raise Refused(text) from None
            console.complain(text)
        except ConnectionLost:
            session.close()
            session = None  # the server hung up (a login timeout, say): connect again
    else:  # pragma: no cover - the loop always breaks or raises
        raise Refused("not logged in")
    assert session is not None
    if interactive:
        return _chat_in_terminal(session, reply, target, args, env, settings)
    plain = PlainDisplay(console.stdout, console.stderr)
    chat = Chat(session, plain, style=render.PLAIN)
    session.start(chat)
    chat.enter(reply, backlog=False)
    return run_script(chat, console.stdin)


def _chat_in_terminal(
    session: Session,
    reply: Frame,
    target: Target,
    args: argparse.Namespace,
    env: Mapping[str, str],
    settings: Settings,
) -> int:
    """The interactive chat: what is unread, the direct messages that came while away, then
    the prompt. A server with conversation state says what is unread for this account on
    any device; an older one is asked for what came after the newest shown on this machine."""
    from client.chat import Chat
    from client.conversations import Notifier, ReadMarks
    from client.screen import ScreenDisplay, run_screen
    from client.ui import TerminalDisplay, run_terminal

    seen = SeenMarkers.for_account(env, target.address, session.username)
    unread: Frame | None = None
    try:
        if "conversations" in (session.welcome.get("features") or []):
            unread = session.call("unread")
            direct, gap, recent = _unread_direct(session, unread), None, False
        else:
            direct, gap = session.direct_since(seen.get(), RECENT_DIRECT)
            recent = seen.get() is None
    except ConnectionLost as exc:
        raise Refused(f"the connection was lost: {exc}") from None
    line_mode = bool(args.line) or _yes(env, "CHAT_LINE", settings.line)
    display: TerminalDisplay | ScreenDisplay = TerminalDisplay() if line_mode else ScreenDisplay()
    # why: OSC 8 links are written by the line mode only; the full screen draws through
    # prompt_toolkit, which would show them as text
    links = line_mode and env.get("TERM", "") != "dumb"
    style = render.Style(colour=_colour(env), links=links)
    desktop = bool(args.notify) or _yes(env, "CHAT_NOTIFY", settings.notify)
    chat = Chat(
        session,
        display,
        style=style,
        seen=seen,
        notifier=Notifier(display.raw, env, desktop=desktop),
        marks=ReadMarks(lambda conversation, mid: chat.mark_read(conversation, mid)),
        highlights=settings.highlights,
    )
    session.start(chat)
    if unread is not None and unread.get("ok"):
        chat.show_unread(unread, at_login=True)
    chat.enter(reply, backlog=True, direct=direct, recent=recent, more_direct=gap is not None)
    if isinstance(display, ScreenDisplay):
        return run_screen(chat, display, settings)
    return run_terminal(chat, display)


def _yes(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A yes/no environment variable; the setting's value when it is unset or empty."""
    value = env.get(name, "").strip().lower()
    return value in NOTIFY_YES if value else default


def _settings_for(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """The settings file, under what the command line and the environment say."""
    try:
        settings = load_settings(env)
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    if not args.server and not env.get("CHAT_SERVER"):
        args.server = settings.server
    args.user = args.user or settings.user
    args.ca = args.ca or settings.ca
    args.tls = args.tls or (settings.tls and not env.get("CHAT_TLS"))
    return settings


def _unread_direct(session: Session, unread: Frame) -> list[Frame]:
    """The unread direct messages of every conversation, oldest first."""
    found: list[Frame] = []
    for entry in unread.get("dms") or []:
        if not isinstance(entry, dict) or not entry.get("unread"):
            continue
        args: dict[str, Any] = {"with": entry.get("with"), "after": entry.get("last_read", 0)}
        page = session.call("dm_history", limit=UNREAD_DIRECT_SHOWN, **args)
        found += messages_in(page.get("messages"))
    return sorted(found, key=lambda message: message_id(message) or 0)


def _colour(env: Mapping[str, str]) -> bool:
    """Colour unless NO_COLOR is set (no-color.org) or the terminal is dumb."""
    return not env.get("NO_COLOR") and env.get("TERM", "") != "dumb"


COMMANDS = {"register": register, "login": login}


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    console: Console | None = None,
) -> int:
    env = os.environ if env is None else env
    console = console or Console()
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return ExitStatus.USAGE if exc.code not in (0, None) else ExitStatus.OK
    if args.version:
        console.say(f"chat {__version__}")
        return ExitStatus.OK
    if args.command is None:
        parser.print_usage(console.stderr)
        console.complain("a command is needed: register or login (chat --help says more)")
        return ExitStatus.USAGE
    try:
        return COMMANDS[args.command](args, env, console)
    except UsageError as exc:
        console.complain(str(exc))
        return ExitStatus.USAGE
    except Refused as exc:
        console.complain(str(exc))
        return ExitStatus.FAILURE
    except (EOFError, KeyboardInterrupt):
        console.complain("cancelled")
        return ExitStatus.FAILURE
