"""The IRC commands the gateway answers, one function each, and the table that declares them.

Each function is headed by its syntax. The table says how many parameters
a command needs (fewer: 461) and whether it may come before registration
(else 451); the dialect enforces both in one place. Commands that mean a
chatd op build its typed request and dispatch it through chatd's handlers
(`conv.request`); the rest answer from what the hub already knows.
"""

from __future__ import annotations

from chatd.fanout import to_peers
from chatd.irc import history, registration
from chatd.irc import numerics as n
from chatd.irc.away import AWAYLEN, AwayChanged
from chatd.irc.codec import Line
from chatd.irc.conversation import Command, Conversation
from chatd.irc.names import channel_of, nick_of, room_of, username_of
from chatd.irc.replies import topic_lines
from chatd.irc.state import Pending
from chatd.irc.text import from_irc, strip_formatting
from chatd.requests import Dm, Join, Part, Ping, Quit, Rooms, Send, Topic, Who

MAX_TARGETS = 4  # TARGMAX for PRIVMSG and NOTICE


def ping(conv: Conversation, line: Line) -> None:
    """PING token -> PONG server token (also before registration)."""
    token = line.params[0]
    conv.request(Ping, Pending("PING", target=token))


def pong(conv: Conversation, line: Line) -> None:
    """PONG token: an answer to nothing we asked; ignored."""


def quit_(conv: Conversation, line: Line) -> None:
    """QUIT [reason] -> ERROR, then the connection closes. Membership stays (it is stored)."""
    reason = line.params[0] if line.params else "Quit"
    conv.request(Quit, Pending("QUIT", target=strip_formatting(reason)))


def _targets(conv: Conversation, text: str, most: int = 0) -> list[str]:
    """The comma-separated targets of a command; several ones answer in a labeled batch."""
    targets = [name for name in text.split(",") if name]
    if most:
        targets = targets[:most]
    if len(targets) > 1:
        conv.several()
    return targets


def join(conv: Conversation, line: Line) -> None:
    """JOIN #a,#b [keys] -> JOIN, topic, names (and recent history) for each new one."""
    for channel in _targets(conv, line.params[0]):
        room = room_of(channel)
        if room is None:
            conv.numeric(n.ERR_NOSUCHCHANNEL, channel, "No such channel: a room is #a-z0-9_-")
        elif room not in conv.state.channels:  # joining a channel one is in changes nothing
            conv.request(Join, Pending("JOIN", channel), room=room)


def part(conv: Conversation, line: Line) -> None:
    """PART #a,#b [reason] -> PART: leaves the room for good (chatd membership is stored)."""
    reason = strip_formatting(line.params[1]) if len(line.params) > 1 else ""
    for channel in _targets(conv, line.params[0]):
        room = room_of(channel)
        if room is None:
            conv.numeric(n.ERR_NOSUCHCHANNEL, channel, "No such channel")
            continue
        pending = Pending("PART", channel, extra={"reason": reason})
        conv.request(Part, pending, room=room)


def privmsg(conv: Conversation, line: Line) -> None:
    """PRIVMSG target[,target] :text -> a room message (#room) or a direct message (nick)."""
    _message(conv, line, "PRIVMSG")


def notice(conv: Conversation, line: Line) -> None:
    """NOTICE target :text: stored as PRIVMSG is (chatd has no notices); never an error back."""
    _message(conv, line, "NOTICE")


def _message(conv: Conversation, line: Line, verb: str) -> None:
    quiet = verb == "NOTICE"
    if not line.params or not line.params[0]:
        if not quiet:
            conv.numeric(n.ERR_NORECIPIENT, f"No recipient given ({verb})")
        return
    if len(line.params) < 2 or not line.params[1]:
        if not quiet:
            conv.numeric(n.ERR_NOTEXTTOSEND, "No text to send")
        return
    if not line.valid_utf8:
        conv.fail(verb, "INVALID_UTF8", "Message rejected: it is not valid UTF-8")
        return
    text = from_irc(line.params[1])
    if text is None:
        return  # a CTCP request other than ACTION: chatd has nobody to answer it
    if not text.strip():
        if not quiet:
            conv.numeric(n.ERR_NOTEXTTOSEND, "No text to send")
        return
    for target in _targets(conv, line.params[0], MAX_TARGETS):
        if not conv.paced():
            return
        if target.startswith("#"):
            room = room_of(target)
            if room is None:
                if not quiet:
                    conv.numeric(n.ERR_NOSUCHCHANNEL, target, "No such channel")
                continue
            conv.request(Send, Pending(verb, target), room=room, text=text)
            continue
        username = username_of(target)
        if username is None:
            if not quiet:
                conv.numeric(n.ERR_NOSUCHNICK, target, "No such nick/channel")
            continue
        refused = conv.request(Dm, Pending(verb, target), to=username, text=text)
        away = conv.away.message(username)
        if refused is None and away and not quiet:
            conv.numeric(n.RPL_AWAY, target, away)


def topic(conv: Conversation, line: Line) -> None:
    """TOPIC #room [:topic] -> 332/333 (or 331) when asked; TOPIC to members when set."""
    channel = line.params[0]
    room = room_of(channel)
    if room is None:
        conv.numeric(n.ERR_NOSUCHCHANNEL, channel, "No such channel")
        return
    if len(line.params) < 2:
        hub = conv.services.hub
        record = hub.room_of_member(room, conv.state.username or "")
        if record is None:
            conv.numeric(n.ERR_NOTONCHANNEL, channel, "You're not on that channel")
        else:
            conv.reply(topic_lines(conv.state, conv.services, room, record.topic))
        return
    if not line.valid_utf8:
        conv.fail("TOPIC", "INVALID_UTF8", "Topic rejected: it is not valid UTF-8")
        return
    text = strip_formatting(line.params[1])
    conv.request(Topic, Pending("TOPIC", channel), room=room, topic=text)


def names(conv: Conversation, line: Line) -> None:
    """NAMES [#a,#b] -> 353 and 366 for each room (every member, connected or not)."""
    if not line.params:
        conv.numeric(n.RPL_ENDOFNAMES, "*", "End of /NAMES list")
        return
    for channel in _targets(conv, line.params[0]):
        room = room_of(channel)
        if room is None:
            conv.numeric(n.RPL_ENDOFNAMES, channel, "End of /NAMES list")
            continue
        conv.request(Who, Pending("NAMES", channel), room=room)


def who(conv: Conversation, line: Line) -> None:
    """WHO #room | nick -> 352 for each (H: connected, G: not, or away), then 315."""
    mask = line.params[0]
    room = room_of(mask)
    if room is not None:
        pending = Pending("WHO", mask, extra={"away": conv.away})
        conv.request(Who, pending, room=room)
        return
    user = _user(conv, mask)
    if user is not None:
        renderer = conv.renderer
        here = "H" if conv.services.hub.peers_of(user) and not conv.away.message(user) else "G"
        _nick, ident_host = renderer.source(user).split("!", 1)
        ident, host = ident_host.split("@", 1)
        conv.numeric(
            n.RPL_WHOREPLY, "*", ident, host, renderer.server, nick_of(user), here, f"0 {user}"
        )
    conv.numeric(n.RPL_ENDOFWHO, mask, "End of WHO list")


def _user(conv: Conversation, nick: str) -> str | None:
    """The username of the account a nick names, as registered; None when there is none."""
    username = username_of(nick)
    if username is None:
        return None
    record = conv.services.store.user_by_name(username)
    return None if record is None else record.username


def whois(conv: Conversation, line: Line) -> None:
    """WHOIS [server] nick -> 311, 312, 319, 330, 301; 401 for nobody; then 318."""
    target = line.params[-1]
    user = _user(conv, target)
    if user is None:
        conv.numeric(n.ERR_NOSUCHNICK, target, "No such nick/channel")
        conv.numeric(n.RPL_ENDOFWHOIS, target, "End of /WHOIS list")
        return
    renderer, services = conv.renderer, conv.services
    nick = nick_of(user)
    _nick, ident_host = renderer.source(user).split("!", 1)
    ident, host = ident_host.split("@", 1)
    conv.numeric(n.RPL_WHOISUSER, nick, ident, host, "*", user)
    conv.numeric(n.RPL_WHOISSERVER, nick, renderer.server, "chatd")
    record = services.store.user_by_name(user)
    if record is not None:
        rooms = services.store.memberships_of(record.id)
        if rooms:
            conv.numeric(n.RPL_WHOISCHANNELS, nick, " ".join(map(channel_of, rooms)))
        conv.numeric(n.RPL_WHOISACCOUNT, nick, user, "is logged in as")
    away = conv.away.message(user)
    if away:
        conv.numeric(n.RPL_AWAY, nick, away)
    conv.numeric(n.RPL_ENDOFWHOIS, nick, "End of /WHOIS list")


def list_(conv: Conversation, line: Line) -> None:
    """LIST [#a,#b] -> 321, 322 for each room (members, topic), 323."""
    wanted = None
    if line.params and line.params[0].startswith("#"):
        wanted = {room for name in line.params[0].split(",") if (room := room_of(name))}
    conv.request(Rooms, Pending("LIST", extra={"rooms": wanted}))


def mode(conv: Conversation, line: Line) -> None:
    """MODE #room [b] | MODE nick [modes]: rooms have no modes, users none but +i."""
    target = line.params[0]
    state = conv.state
    if not target.startswith("#"):
        if target.lower() != state.nick.lower():
            conv.numeric(n.ERR_USERSDONTMATCH, "Cannot change mode for other users")
        elif len(line.params) > 1 and line.params[1].strip("+-i"):
            conv.numeric(n.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")
        else:
            conv.numeric(n.RPL_UMODEIS, "+")
        return
    room = room_of(target)
    if room is None or conv.services.hub.room(room) is None:
        conv.numeric(n.ERR_NOSUCHCHANNEL, target, "No such channel")
        return
    if len(line.params) == 1:
        conv.numeric(n.RPL_CHANNELMODEIS, target, "+")
        created = conv.services.store.room_created_ms(room)
        if created is not None:
            conv.numeric(n.RPL_CREATIONTIME, target, str(created // 1000))
    elif line.params[1].lstrip("+") == "b" and len(line.params) == 2:
        conv.numeric(n.RPL_ENDOFBANLIST, target, "End of channel ban list")
    else:
        conv.numeric(n.ERR_CHANOPRIVSNEEDED, target, "Rooms have no modes or operators here")


def no_operators(conv: Conversation, line: Line) -> None:
    """KICK, INVITE: chatd rooms have no operators."""
    conv.numeric(n.ERR_CHANOPRIVSNEEDED, line.params[0], "Rooms have no operators here")


def away(conv: Conversation, line: Line) -> None:
    """AWAY [:message] -> 306 (away) or 305 (back); away-notify clients in shared rooms see it."""
    message = strip_formatting(line.params[0])[:AWAYLEN] if line.params else ""
    username = conv.state.username
    assert username is not None
    if message:
        conv.numeric(n.RPL_NOWAWAY, "You have been marked as being away")
    else:
        conv.numeric(n.RPL_UNAWAY, "You are no longer marked as being away")
    if conv.away.set(username, message):
        hub = conv.services.hub
        peers = {id(peer): peer for room in conv.state.channels for peer in hub.room_peers(room)}
        peers.update((id(peer), peer) for peer in hub.peers_of(username))
        to_peers(peers.values(), AwayChanged(username, message), exclude=conv.session)


def ison(conv: Conversation, line: Line) -> None:
    """ISON nick... -> 303 with those connected (irssi's notify list asks this)."""
    hub = conv.services.hub
    online = [
        nick
        for nick in " ".join(line.params).split()
        if (name := username_of(nick)) is not None and hub.peers_of(name)
    ]
    conv.numeric(n.RPL_ISON, " ".join(online))


def motd(conv: Conversation, line: Line) -> None:
    """MOTD -> 375, 372..., 376."""
    registration.motd(conv)


COMMANDS: dict[str, Command] = {
    "CAP": Command(registration.cap, 1, True),
    "PASS": Command(registration.pass_, 1, True),
    "NICK": Command(registration.nick, 0, True),
    "USER": Command(registration.user, 4, True),
    "AUTHENTICATE": Command(registration.authenticate, 1, True),
    "PING": Command(ping, 1, True),
    "PONG": Command(pong, 0, True),
    "QUIT": Command(quit_, 0, True),
    "JOIN": Command(join, 1),
    "PART": Command(part, 1),
    "PRIVMSG": Command(privmsg),
    "NOTICE": Command(notice),
    "TOPIC": Command(topic, 1),
    "NAMES": Command(names),
    "WHO": Command(who, 1),
    "WHOIS": Command(whois, 1),
    "LIST": Command(list_),
    "MODE": Command(mode, 1),
    "KICK": Command(no_operators, 2),
    "INVITE": Command(no_operators, 2),
    "AWAY": Command(away),
    "ISON": Command(ison, 1),
    "MOTD": Command(motd),
    "CHATHISTORY": Command(history.chathistory, 1),
}
