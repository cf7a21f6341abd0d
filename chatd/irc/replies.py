"""The answers to IRC commands that went through chatd's handlers, rendered from their results.

Each reply type (chatd/replies.py) and each refusal is rendered for the IRC
command that asked (its `Pending`): a join's result is JOIN, topic and
names (and recent history for clients without draft/chathistory); a `who`
is NAMES or WHO; an error code becomes the numeric IRC has for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatd.errors import ChatError, ErrorCode
from chatd.irc import caps
from chatd.irc import numerics as n
from chatd.irc.codec import MAX_LINE_BYTES, encode_line
from chatd.irc.names import channel_of, nick_of
from chatd.irc.render import Renderer, wrap_batch
from chatd.irc.state import Pending, State
from chatd.outgoing import Outgoing
from chatd.records import Message
from chatd.replies import (
    JoinReply,
    LoggedIn,
    Messages,
    PartReply,
    Reply,
    RoomList,
    TopicReply,
    WhoReply,
)
from chatd.services import Services


def names_lines(renderer: Renderer, nick: str, channel: str, members: list[str]) -> bytes:
    """353 lines (as many as the names need) and 366."""
    head = len(f":{renderer.server} {n.RPL_NAMREPLY} {nick} = {channel} :") + 2
    lines: list[bytes] = []
    batch: list[str] = []
    size = head
    for member in members:
        name = nick_of(member)
        if batch and size + len(name) + 1 > MAX_LINE_BYTES:
            lines.append(renderer.numeric(n.RPL_NAMREPLY, nick, "=", channel, " ".join(batch)))
            batch, size = [], head
        batch.append(name)
        size += len(name) + 1
    if batch:
        lines.append(renderer.numeric(n.RPL_NAMREPLY, nick, "=", channel, " ".join(batch)))
    lines.append(renderer.numeric(n.RPL_ENDOFNAMES, nick, channel, "End of /NAMES list"))
    return b"".join(lines)


def topic_lines(state: State, services: Services, room: str, topic: str) -> bytes:
    """332 and 333 (who set it, and when, from the log), or 331 when there is none."""
    renderer, nick, channel = state.renderer, state.nick, channel_of(room)
    if not topic:
        return renderer.numeric(n.RPL_NOTOPIC, nick, channel, "No topic is set")
    lines = renderer.numeric(n.RPL_TOPIC, nick, channel, topic)
    setter = services.store.topic_setter(room)
    if setter is not None:
        user, ms = setter
        lines += renderer.numeric(n.RPL_TOPICWHOTIME, nick, channel, nick_of(user), str(ms // 1000))
    return lines


def join_burst(
    state: State,
    services: Services,
    room: str,
    topic: str,
    members: list[str],
    history: list[Any],
) -> bytes:
    """What a client is shown for a room it is in: JOIN, topic, names, and recent history.

    History is replayed to clients that cannot ask for it (no
    draft/chathistory): the last --irc-replay-lines messages, in a
    `chathistory` batch when the client has batches.
    """
    renderer = state.renderer
    channel = channel_of(room)
    assert state.username is not None
    data = encode_line("JOIN", [channel], renderer.source(state.username))
    if topic:
        data += topic_lines(state, services, room, topic)
    data += names_lines(renderer, state.nick, channel, members)
    state.channels.add(room)
    replay = services.config.replay_lines
    if replay and history and not state.has(caps.CHATHISTORY):
        items: list[Outgoing] = history[-replay:]
        lines = b"".join(state.encode_event(item) for item in items)
        if state.has(caps.BATCH):
            lines = wrap_batch(renderer, state.batch_id(), "chathistory", lines, channel)
        data += lines
    return data


def history_lines(state: State, pending: Pending, messages: list[Message]) -> bytes:
    """A CHATHISTORY answer: the messages in a `chathistory` batch for the target."""
    renderer, flags = state.renderer, state.flags
    keep = pending.keep
    lines = b"".join(
        renderer.message(message, flags) for message in messages if keep is None or keep(message)
    )
    if not state.has(caps.BATCH):
        return lines
    return wrap_batch(renderer, state.batch_id(), "chathistory", lines, pending.target)


def _logged_in(state: State, services: Services, pending: Pending, result: LoggedIn) -> bytes:
    state.rooms_at_login = list(result.rooms)
    if pending.verb != "AUTHENTICATE":
        return b""
    renderer = state.renderer
    return renderer.numeric(
        n.RPL_LOGGEDIN,
        state.nick,
        renderer.source(result.username),
        result.username,
        f"You are now logged in as {result.username}",
    ) + renderer.numeric(n.RPL_SASLSUCCESS, state.nick, "SASL authentication successful")


def _joined(state: State, services: Services, pending: Pending, result: JoinReply) -> bytes:
    return join_burst(state, services, result.room, result.topic, result.members, result.history)


def _parted(state: State, services: Services, pending: Pending, result: PartReply) -> bytes:
    assert state.username is not None
    state.channels.discard(result.room)
    params = [channel_of(result.room)]
    if pending.extra.get("reason"):
        params.append(pending.extra["reason"])
    return encode_line("PART", params, state.renderer.source(state.username))


def _topic(state: State, services: Services, pending: Pending, result: TopicReply) -> bytes:
    assert state.username is not None
    source = state.renderer.source(state.username)
    return encode_line("TOPIC", [channel_of(result.room), result.topic], source)


def _who(state: State, services: Services, pending: Pending, result: WhoReply) -> bytes:
    renderer, nick, channel = state.renderer, state.nick, channel_of(result.room)
    if pending.verb == "NAMES":
        return names_lines(renderer, nick, channel, result.members)
    online = set(result.online)
    away = services_away(services, pending)
    lines = []
    for member in result.members:
        here = "G" if member not in online or away(member) else "H"
        member_nick = nick_of(member)
        user = renderer.source(member).split("!", 1)[1].split("@", 1)
        lines.append(
            renderer.numeric(
                n.RPL_WHOREPLY, nick, channel, user[0], user[1], renderer.server,
                member_nick, here, f"0 {member}",
            )
        )  # fmt: skip
    lines.append(renderer.numeric(n.RPL_ENDOFWHO, nick, pending.target, "End of WHO list"))
    return b"".join(lines)


def services_away(services: Services, pending: Pending) -> Callable[[str], bool]:
    """Whether a member is away, from the book the command handed over (none: nobody)."""
    book = pending.extra.get("away")
    return (lambda name: bool(book.message(name))) if book is not None else (lambda name: False)


def _rooms(state: State, services: Services, pending: Pending, result: RoomList) -> bytes:
    renderer, nick = state.renderer, state.nick
    lines = [renderer.numeric(n.RPL_LISTSTART, nick, "Channel", "Users  Name")]
    wanted = pending.extra.get("rooms")
    for summary in result.rooms:
        if wanted is None or summary.room in wanted:
            lines.append(
                renderer.numeric(
                    n.RPL_LIST, nick, channel_of(summary.room), str(summary.members), summary.topic
                )
            )
    lines.append(renderer.numeric(n.RPL_LISTEND, nick, "End of /LIST"))
    return b"".join(lines)


def _messages(state: State, services: Services, pending: Pending, result: Messages) -> bytes:
    messages = [*pending.extra.get("before", ()), *result.messages]
    if pending.extra.get("silent"):
        keep = pending.keep
        for message in messages:
            if keep is not None:
                keep(message)
        return b""
    return history_lines(state, pending, messages)


def _plain(state: State, services: Services, pending: Pending, result: Reply) -> bytes:
    renderer = state.renderer
    if pending.verb == "PING":
        return renderer.line("PONG", renderer.server, pending.target)
    if pending.verb == "QUIT":
        return encode_line("ERROR", [f"Closing link: {pending.target or 'quit'}"])
    return b""


Renderers = dict[type[Reply], Callable[[State, Services, Pending, Any], bytes]]
RENDERERS: Renderers = {
    LoggedIn: _logged_in,
    JoinReply: _joined,
    PartReply: _parted,
    TopicReply: _topic,
    WhoReply: _who,
    RoomList: _rooms,
    Messages: _messages,
    Reply: _plain,
}


def render_reply(state: State, services: Services, pending: Pending, result: Reply) -> bytes:
    render = RENDERERS.get(type(result))
    return b"" if render is None else render(state, services, pending, result)


# refusals

_ROOM_ERRORS = {ErrorCode.INVALID_ROOM, ErrorCode.NO_SUCH_ROOM}
_LOGIN_VERBS = {"AUTHENTICATE", "PASS"}
_TEXT_VERBS = {"PRIVMSG", "NOTICE"}


def render_refusal(state: State, pending: Pending, error: ChatError) -> bytes:
    """The numeric (or FAIL) IRC has for a refused request."""
    renderer, nick, verb, target = state.renderer, state.nick, pending.verb, pending.target
    code = error.code
    if verb == "PASS-TRY" or (verb == "NOTICE" and code is not ErrorCode.STORAGE_FULL):
        return b""  # why: RFC 1459: a NOTICE never causes an automatic reply
    if verb == "AUTHENTICATE":
        if code is ErrorCode.ALREADY_LOGGED_IN:
            return renderer.numeric(n.ERR_SASLALREADY, nick, "You have already authenticated")
        return renderer.numeric(n.ERR_SASLFAIL, nick, f"SASL authentication failed: {error}")
    if verb in _LOGIN_VERBS:
        return renderer.numeric(n.ERR_PASSWDMISMATCH, nick, f"Password incorrect: {error}")
    if verb == "NAMES" and code is ErrorCode.NO_SUCH_ROOM:
        return renderer.numeric(n.RPL_ENDOFNAMES, nick, target, "End of /NAMES list")
    if code in _ROOM_ERRORS:
        return renderer.numeric(n.ERR_NOSUCHCHANNEL, nick, target, str(error))
    if code is ErrorCode.NOT_IN_ROOM:
        if verb in _TEXT_VERBS:
            return renderer.numeric(n.ERR_CANNOTSENDTOCHAN, nick, target, "Cannot send to channel")
        if verb == "CHATHISTORY":
            return renderer.line("FAIL", verb, "INVALID_TARGET", *pending.extra["args"], str(error))
        return renderer.numeric(n.ERR_NOTONCHANNEL, nick, target, "You're not on that channel")
    if code is ErrorCode.NO_SUCH_USER:
        if verb == "CHATHISTORY":
            return renderer.line("FAIL", verb, "INVALID_TARGET", *pending.extra["args"], str(error))
        return renderer.numeric(n.ERR_NOSUCHNICK, nick, target, "No such nick/channel")
    if code is ErrorCode.AUTH_REQUIRED:
        return renderer.numeric(n.ERR_NOTREGISTERED, nick, "You have not registered")
    if code is ErrorCode.BAD_REQUEST and verb == "CHATHISTORY":
        return renderer.line("FAIL", verb, "INVALID_PARAMS", *pending.extra["args"], str(error))
    if code is ErrorCode.INTERNAL:
        return renderer.numeric(n.ERR_UNKNOWNERROR, nick, verb or "*", str(error))
    return renderer.line("FAIL", verb or "*", code.value.upper(), str(error))
