"""IRCv3 capabilities and the ISUPPORT tokens the gateway announces, as pure values.

Offered capabilities are what chatd can keep its word on; a client enables
them with `CAP REQ`, all of a request or none of it (IRCv3 capability
negotiation). Each rendered line depends only on the few of them that
change its bytes (`render_flags`), so clients that enabled the same ones
share one encoding of every event.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatd.irc.names import CHANNELLEN, NICKLEN

SASL = "sasl"
SERVER_TIME = "server-time"
MESSAGE_TAGS = "message-tags"
ECHO_MESSAGE = "echo-message"
BATCH = "batch"
LABELED_RESPONSE = "labeled-response"
CHATHISTORY = "draft/chathistory"
MULTI_PREFIX = "multi-prefix"
AWAY_NOTIFY = "away-notify"
ACCOUNT_TAG = "account-tag"
SELF_MESSAGE = "znc.in/self-message"

# the capabilities offered, with their CAP LS 302 values
OFFERED: dict[str, str] = {
    SASL: "PLAIN",
    SERVER_TIME: "",
    MESSAGE_TAGS: "",
    ECHO_MESSAGE: "",
    BATCH: "",
    LABELED_RESPONSE: "",
    CHATHISTORY: "",
    MULTI_PREFIX: "",
    AWAY_NOTIFY: "",
    ACCOUNT_TAG: "",
    SELF_MESSAGE: "",
}

# why: IRCv3 chathistory: a client may ask for at most this many messages at once.
CHATHISTORY_LIMIT = 500


def advertised(version_302: bool) -> list[str]:
    """The CAP LS list: with values (`sasl=PLAIN`) for CAP LS 302 clients."""
    return [f"{name}={value}" if value and version_302 else name for name, value in OFFERED.items()]


def requested(enabled: frozenset[str], request: str) -> frozenset[str] | None:
    """The capabilities after a CAP REQ; None (NAK) if any of it cannot be granted."""
    result = set(enabled)
    words = request.split()
    if not words:
        return None
    for word in words:
        name = word[1:] if word.startswith("-") else word
        if name not in OFFERED:
            return None
        if word.startswith("-"):
            result.discard(name)
        else:
            result.add(name)
    return frozenset(result)


@dataclass(frozen=True, slots=True)
class Flags:
    """What changes the bytes of a rendered event: part of Outgoing's cache key."""

    time: bool = False  # server-time: @time=
    msgid: bool = False  # message-tags: @msgid=
    account: bool = False  # account-tag: @account=

    @property
    def tagged(self) -> bool:
        return self.time or self.msgid or self.account


def render_flags(enabled: frozenset[str]) -> Flags:
    return Flags(SERVER_TIME in enabled, MESSAGE_TAGS in enabled, ACCOUNT_TAG in enabled)


def isupport(network: str) -> list[str]:
    """The RPL_ISUPPORT (005) tokens: rooms, names and history as chatd has them."""
    return [
        "CASEMAPPING=ascii",
        "UTF8ONLY",
        "CHANTYPES=#",
        f"CHANNELLEN={CHANNELLEN}",
        f"NICKLEN={NICKLEN}",
        f"NETWORK={network}",
        "PREFIX=(ov)@+",
        "CHANMODES=b,,,",
        "TOPICLEN=300",
        "TARGMAX=PRIVMSG:4,NOTICE:4,JOIN:",
        f"CHATHISTORY={CHATHISTORY_LIMIT}",
        "MSGREFTYPES=msgid,timestamp",
    ]
