"""CHATHISTORY through the IRC gateway, on both databases: msgid and timestamp references."""

from __future__ import annotations

import datetime

CAPS = ("draft/chathistory", "batch", "server-time", "message-tags", "echo-message")


def _sent(client, target, count):
    """Send `count` messages; their echoes (msgid, time, text), in order."""
    client.send(*[f"PRIVMSG {target} :m{i}" for i in range(count)])
    lines = client.sync()
    return [
        (line.tags["msgid"], line.tags["time"], line.params[1])
        for line in lines
        if line.verb == "PRIVMSG"
    ]


def _history(client, command):
    client.send(command)
    lines = client.sync()
    assert lines[0].verb == "BATCH" and lines[0].params[1] == "chathistory", lines
    return [line.params[1] for line in lines if line.verb == "PRIVMSG"]


def _later(stamp, ms):
    when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return (when + datetime.timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_chathistory_pages_a_room_by_msgid_and_timestamp(irc_server):
    client = irc_server.irc("ann", caps=CAPS)
    client.send("JOIN #hist")
    client.sync()
    sent = _sent(client, "#hist", 10)
    texts = [text for _id, _ts, text in sent]
    ids = [msgid for msgid, _ts, _t in sent]
    assert _history(client, "CHATHISTORY LATEST #hist * 3") == texts[-3:]
    assert _history(client, f"CHATHISTORY LATEST #hist msgid={ids[6]} 10") == texts[7:]
    assert _history(client, f"CHATHISTORY BEFORE #hist msgid={ids[4]} 2") == texts[2:4]
    assert _history(client, f"CHATHISTORY AFTER #hist msgid={ids[4]} 2") == texts[5:7]
    assert (
        _history(client, f"CHATHISTORY BETWEEN #hist msgid={ids[1]} msgid={ids[5]} 10")
        == texts[2:5]
    )
    assert (
        _history(client, f"CHATHISTORY BETWEEN #hist msgid={ids[8]} msgid={ids[1]} 3") == texts[5:8]
    )
    assert _history(client, f"CHATHISTORY AROUND #hist msgid={ids[5]} 4") == texts[4:8]
    first_time = sent[0][1]
    assert (
        _history(client, f"CHATHISTORY AFTER #hist timestamp={_later(first_time, -1)} 3")
        == texts[:3]
    )
    assert (
        _history(client, f"CHATHISTORY BEFORE #hist timestamp={_later(sent[-1][1], 1)} 2")
        == texts[-2:]
    )
    messages = [line for line in client.sync()]
    assert messages == []


def test_chathistory_of_a_direct_conversation_and_targets(irc_server):
    ben = irc_server.irc("ben", caps=CAPS)
    irc_server.account("cat")
    sent = _sent(ben, "cat", 3)
    assert _history(ben, "CHATHISTORY LATEST cat * 10") == [text for _i, _t, text in sent]
    ben.send("JOIN #room")
    ben.sync()
    _sent(ben, "#room", 1)
    early, late = "timestamp=2000-01-01T00:00:00.000Z", "timestamp=2100-01-01T00:00:00.000Z"
    ben.send(f"CHATHISTORY TARGETS {early} {late} 10")
    lines = ben.sync()
    targets = {line.params[1] for line in lines if line.verb == "CHATHISTORY"}
    assert targets == {"cat", "#room"}


def test_chathistory_of_a_room_one_is_not_in_fails(irc_server):
    client = irc_server.irc("dot", caps=CAPS)
    client.send(
        "CHATHISTORY LATEST #elsewhere * 10",
        "CHATHISTORY LATEST #bad! * 1",
        "CHATHISTORY SIDEWAYS #x * 1",
    )
    fails = [line.params[1] for line in client.sync() if line.verb == "FAIL"]
    assert fails == ["INVALID_TARGET", "INVALID_TARGET", "INVALID_PARAMS"]


def test_edits_and_deletes_show_in_history_but_are_not_sent_live(irc_server):
    client = irc_server.irc("eve", caps=CAPS)
    client.send("JOIN #changes")
    client.sync()
    _sent(client, "#changes", 3)
    other = irc_server.json("eve")
    other.ok("join", room="changes")
    ids = [message["id"] for message in other.ok("history", room="changes")["messages"]]
    other.ok("edit", message_id=ids[1], text="m1, corrected")
    other.ok("delete", message_id=ids[2])
    assert [line for line in client.sync() if line.verb == "PRIVMSG"] == []
    assert _history(client, "CHATHISTORY LATEST #changes * 10") == [
        "m0",
        "m1, corrected",
        "[message deleted]",
    ]
