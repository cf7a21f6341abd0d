"""Registration: CAP, PASS, NICK, USER and AUTHENTICATE, then the welcome and the joins.

A client is registered (001) once it gave NICK and USER, finished any
capability negotiation, and logged in to a chatd account: by SASL PLAIN,
by `PASS username:password`, or by `PASS password` with the username in
USER. Its nick is its username (001 says so). Without a login it gets
`FAIL * ACCOUNT_REQUIRED` (or 464) and is closed, unless --irc-guests lets
it chat as `guest-NICK`. Logins go through chatd's `login` handler: the
same throttles, the same bcrypt, the same log lines as the JSON protocol.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re

from chatd import __version__
from chatd.errors import ErrorCode
from chatd.irc import caps
from chatd.irc import numerics as n
from chatd.irc.codec import Line, encode_line
from chatd.irc.conversation import Conversation
from chatd.irc.names import guest_username, username_of
from chatd.irc.state import Pending
from chatd.names import PASSWORD_MAX_BYTES, is_valid_username
from chatd.passwords import LOCKED
from chatd.requests import Join, Login

# why: IRCv3 SASL: a payload comes in chunks of 400 base64 characters; PLAIN needs few.
SASL_CHUNK = 400
SASL_MAX_BYTES = 1024
GUEST_HASH = LOCKED + "guest"  # a guest account's password hash: it matches no password
# why: what IRC clients send as a nick (RFC 2812's characters, a digit first allowed as Ergo
# does, since usernames may start with one); the login decides what the nick really is.
NICK_RE = re.compile(r"[A-Za-z0-9\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]{0,31}")
STARTED = datetime.datetime.now(datetime.UTC)

MOTD = (
    "This is chatd's IRC gateway: rooms are #channels, other users are nicks,",
    "and everything you say is stored. Your nick is your account's name.",
    "Rooms you joined stay joined until you /part them.",
)


def cap(conv: Conversation, line: Line) -> None:
    """CAP LS [302] | LIST | REQ :caps | END."""
    sub = line.params[0].upper()
    nick = conv.state.nick
    renderer = conv.renderer
    if sub == "LS":
        if not conv.state.registered:
            conv.negotiating = True
        if line.params[1:2] and line.params[1].isdigit() and int(line.params[1]) >= 302:
            conv.cap_302 = True
        offered = " ".join(caps.advertised(conv.cap_302))
        conv.reply(renderer.line("CAP", nick, "LS", offered))
    elif sub == "LIST":
        conv.reply(renderer.line("CAP", nick, "LIST", " ".join(sorted(conv.state.caps))))
    elif sub == "REQ":
        if not conv.state.registered:
            conv.negotiating = True
        wanted = line.params[1] if len(line.params) > 1 else ""
        granted = caps.requested(conv.state.caps, wanted)
        if granted is None:
            conv.reply(renderer.line("CAP", nick, "NAK", wanted))
        else:
            conv.state.set_caps(granted)
            conv.reply(renderer.line("CAP", nick, "ACK", wanted))
    elif sub == "END":
        conv.negotiating = False
        try_register(conv)
    else:
        conv.numeric(n.ERR_INVALIDCAPCMD, line.params[0], "Unknown CAP subcommand")


def pass_(conv: Conversation, line: Line) -> None:
    """PASS username:password | PASS password (with the username in USER)."""
    if conv.state.registered:
        conv.numeric(n.ERR_ALREADYREGISTERED, "You may not reregister")
        return
    conv.password = line.params[0]


def nick(conv: Conversation, line: Line) -> None:
    """NICK name: before registration, the nick wanted; after, only one's own."""
    wanted = line.params[0] if line.params else ""
    if not wanted:
        conv.numeric(n.ERR_NONICKNAMEGIVEN, "No nickname given")
        return
    state = conv.state
    if state.registered:
        if wanted.lower() != state.nick.lower():
            conv.numeric(
                n.ERR_ERRONEUSNICKNAME,
                wanted,
                "Your nick is your account's name on this server; it cannot change",
            )
        return
    if not NICK_RE.fullmatch(wanted):
        conv.numeric(n.ERR_ERRONEUSNICKNAME, wanted, "Erroneous nickname")
        return
    conv.requested_nick = wanted
    if state.username is None:
        state.nick = wanted
    try_register(conv)


def user(conv: Conversation, line: Line) -> None:
    """USER username mode unused :realname."""
    if conv.state.registered:
        conv.numeric(n.ERR_ALREADYREGISTERED, "You may not reregister")
        return
    conv.user_name = line.params[0].lstrip("~")
    try_register(conv)


def authenticate(conv: Conversation, line: Line) -> None:
    """AUTHENTICATE PLAIN, then the base64 payload in 400-character chunks; `*` aborts."""
    argument = line.params[0]
    state = conv.state
    if not state.has(caps.SASL):
        conv.numeric(n.ERR_SASLFAIL, "SASL authentication failed: request the sasl capability")
        return
    if state.username is not None:
        conv.numeric(n.ERR_SASLALREADY, "You have already authenticated")
        return
    if argument == "*":
        conv.sasl = None
        conv.numeric(n.ERR_SASLABORTED, "SASL authentication aborted")
        return
    if conv.sasl is None:
        if argument.upper() != "PLAIN":
            conv.numeric(n.RPL_SASLMECHS, "PLAIN", "are available SASL mechanisms")
            conv.numeric(n.ERR_SASLFAIL, "SASL authentication failed")
            return
        conv.sasl = []
        conv.reply(encode_line("AUTHENTICATE", ["+"]))
        return
    if argument != "+":
        conv.sasl.append(argument)
    if sum(map(len, conv.sasl)) > SASL_MAX_BYTES * 4 // 3 + 4:
        conv.sasl = None
        conv.numeric(n.ERR_SASLTOOLONG, "SASL message too long")
        return
    if len(argument) == SASL_CHUNK:
        return  # more to come
    payload, conv.sasl = "".join(conv.sasl), None
    credentials = _plain(payload)
    if credentials is None:
        conv.numeric(n.ERR_SASLFAIL, "SASL authentication failed: malformed PLAIN payload")
        return
    _login(conv, *credentials, verb="AUTHENTICATE")


def _plain(payload: str) -> tuple[str, str] | None:
    """(username, password) of a SASL PLAIN payload; None if it is malformed."""
    try:
        raw = base64.b64decode(payload, validate=True)
        authzid, authcid, password = raw.decode("utf-8").split("\0")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    account = authcid.partition("@")[0]  # why: `account@device`, as Ergo accepts
    if authzid and authzid.lower() != account.lower():
        return None
    return account, password


def _login(conv: Conversation, username: str, password: str, verb: str) -> bool:
    """Log in through chatd's handler; True when this connection is now logged in."""
    conv.request(Login, Pending(verb), username=username, password=password)
    user = conv.session.user
    if user is None:
        return False
    conv.state.logged_in(user.username)
    return True


def _pass_login(conv: Conversation) -> bool:
    """PASS in either form; the `user:` form first when the part before `:` is a username."""
    password = conv.password or ""
    conv.password = None
    name, colon, rest = password.partition(":")
    # why: PASS-TRY: a failure says nothing yet, as the other form may follow
    if colon and is_valid_username(name) and _login(conv, name, rest, "PASS-TRY"):
        return True
    account = conv.user_name if conv.user_name and is_valid_username(conv.user_name) else None
    account = account or username_of(conv.requested_nick or "")
    if account is None or len(password.encode()) > PASSWORD_MAX_BYTES:
        conv.numeric(n.ERR_PASSWDMISMATCH, "Password incorrect")
        return False
    return _login(conv, account, password, "PASS")


def try_register(conv: Conversation) -> None:
    """Finish registration once everything it waits for is there."""
    state = conv.state
    if state.registered or conv.negotiating or conv.requested_nick is None or not conv.user_name:
        return
    if state.username is None and conv.password is not None and not _pass_login(conv):
        conv.close(ErrorCode.INVALID_CREDENTIALS, "Password incorrect")
        return
    if state.username is None and conv.config.irc_guests and not _guest_login(conv):
        return
    if state.username is None:
        if conv.cap_302 or state.caps:
            conv.fail("*", "ACCOUNT_REQUIRED", "Log in with SASL or PASS username:password")
        else:
            conv.numeric(n.ERR_PASSWDMISMATCH, "Log in with PASS username:password")
        conv.close(ErrorCode.AUTH_REQUIRED, "an account is required")
        return
    welcome(conv)
    for room in state.rooms_at_login:
        conv.request(Join, Pending("JOIN"), room=room)


def _guest_login(conv: Conversation) -> bool:
    """--irc-guests: chat as guest-NICK, unless the nick is an account (433: pick another)."""
    wanted = conv.requested_nick or ""
    store, hub = conv.services.store, conv.services.hub
    account = username_of(wanted)
    name = guest_username(wanted)
    found = store.user_by_name(account) if account is not None else None
    if found is not None and found.password_hash != GUEST_HASH:
        conv.numeric(n.ERR_NICKNAMEINUSE, wanted, "That nick is an account: log in to use it")
        return False
    if name is None:
        conv.numeric(n.ERR_ERRONEUSNICKNAME, wanted, "Erroneous nickname")
        return False
    record = store.user_by_name(name)
    if record is None:
        try:
            record = store.create_user(name, GUEST_HASH)
        except Exception:  # taken meanwhile: look again below
            record = store.user_by_name(name)
    if record is None or record.password_hash != GUEST_HASH or record.disabled:
        conv.numeric(n.ERR_NICKNAMEINUSE, wanted, "That guest nick is not available")
        return False
    conv.session.user = record
    hub.connect(record.username, conv.session)
    conv.state.logged_in(record.username)
    conv.state.rooms_at_login = store.memberships_of(record.id)
    return True


def welcome(conv: Conversation) -> None:
    """001-005 and the MOTD: the client is registered from here on."""
    state, renderer, config = conv.state, conv.renderer, conv.config
    early = state.register()
    version = f"chatd-{__version__}"
    nick = state.nick
    conv.numeric(n.RPL_WELCOME, f"Welcome to the {config.irc_network} IRC network, {nick}")
    conv.numeric(n.RPL_YOURHOST, f"Your host is {renderer.server}, running version {version}")
    conv.numeric(n.RPL_CREATED, f"This server was created {STARTED:%Y-%m-%d %H:%M:%S} UTC")
    conv.numeric(n.RPL_MYINFO, renderer.server, version, "i", "b")
    conv.numeric(n.RPL_ISUPPORT, *caps.isupport(config.irc_network), "are supported by this server")
    motd(conv)
    conv.reply(b"".join(conv.dialect.events(item) for item in early))


def motd(conv: Conversation) -> None:
    server = conv.renderer.server
    conv.numeric(n.RPL_MOTDSTART, f"- {server} Message of the day -")
    for text in MOTD:
        conv.numeric(n.RPL_MOTD, f"- {text}")
    conv.numeric(n.RPL_ENDOFMOTD, "End of /MOTD command")
