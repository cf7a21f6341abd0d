"""The IRC gateway end to end: real sockets to a real server, IRC and JSON clients side by side."""

from __future__ import annotations

import base64
import os
import random
import re
import ssl
import string
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PASSWORD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from irc_fixtures import SERVER_NAME
from irc_wire import IrcWire

from chatd.cli import _build_parser, server_config
from chatd.config import UsageError

pytestmark = pytest.mark.sqlite_only(
    "the dialect is the same on every database; test_irc_history runs its reads on both"
)

MODERN = ("server-time", "message-tags", "echo-message", "batch", "labeled-response")


def verbs(lines):
    return [line.verb for line in lines]


# registration


def test_sasl_login_gives_the_username_as_nick_and_the_isupport_tokens(irc_server):
    irc_server.account("Alice")
    client = irc_server.irc()
    lines = client.register("alice", PASSWORD, how="sasl", account="alice")
    assert {"900", "903", "001", "005", "376"} <= set(verbs(lines))
    welcome = next(line for line in lines if line.verb == "001")
    assert welcome.params[0] == "Alice"  # the account's name as registered
    tokens = {t for line in lines if line.verb == "005" for t in line.params[1:-1]}
    assert {"CASEMAPPING=ascii", "UTF8ONLY", "CHANTYPES=#", "CHANNELLEN=33", "NICKLEN=32"} <= tokens
    assert {"NETWORK=chatd", "CHATHISTORY=500", "MSGREFTYPES=msgid,timestamp"} <= tokens


@pytest.mark.parametrize("how", ["pass", "pass-user"])
def test_pass_logs_in_in_both_forms(irc_server, how):
    client = irc_server.irc("bob", how=how)
    assert client.nick == "bob"
    assert client.sync() == []


def test_a_wrong_password_gets_464_and_the_connection_closes(irc_server):
    irc_server.account("carol")
    client = irc_server.irc()
    client.send("PASS carol:wrong-password", "NICK carol", "USER carol 0 * :C")
    lines = client.closed()
    assert verbs(lines)[-2:] == ["464", "ERROR"]


def test_no_login_is_account_required_and_closed(irc_server):
    client = irc_server.irc()
    client.send("CAP LS 302", "NICK dave", "USER dave 0 * :D", "CAP END")
    lines = client.closed()
    fail = next(line for line in lines if line.verb == "FAIL")
    assert fail.params[:2] == ["*", "ACCOUNT_REQUIRED"]
    assert lines[-1].verb == "ERROR"


def test_a_failed_sasl_attempt_can_be_retried(irc_server):
    irc_server.account("erin")
    client = irc_server.irc()
    client.send("CAP REQ :sasl", "NICK erin", "USER erin 0 * :E")
    client.expect("CAP")
    bad = base64.b64encode(b"\0erin\0not the password").decode()
    good = base64.b64encode(f"\0erin\0{PASSWORD}".encode()).decode()
    client.send("AUTHENTICATE PLAIN")
    client.expect("AUTHENTICATE")
    client.send(f"AUTHENTICATE {bad}")
    assert client.expect("904").params[0] == "erin"
    client.send("AUTHENTICATE PLAIN")
    client.expect("AUTHENTICATE")
    client.send(f"AUTHENTICATE {good}", "CAP END")
    assert "001" in verbs(client.until(lambda line: line.verb == "376"))


def test_ping_is_answered_before_registration(irc_server):
    client = irc_server.irc()
    client.send("PING :early")
    pong = client.expect("PONG")
    assert pong.params == [SERVER_NAME, "early"]
    assert pong.source == SERVER_NAME


def test_the_login_deadline_closes_a_connection_that_never_logs_in(start_irc):
    server = start_irc(login_timeout=0.5)
    client = server.irc()
    client.send("NICK slow")
    assert client.closed()[-1].verb == "ERROR"


def test_memberships_are_joined_on_registration(irc_server):
    json = irc_server.json("frank")
    json.ok("join", room="general")
    json.ok("join", room="random")
    json.ok("topic", room="random", topic="anything goes")
    lines = irc_server.irc("frank").welcome
    assert verbs(lines).index("376") < verbs(lines).index("JOIN")  # registered, then joined
    joins = [line.params[0] for line in lines if line.verb == "JOIN"]
    assert joins == ["#general", "#random"]
    assert any(line.verb == "332" and line.params[2] == "anything goes" for line in lines)
    assert any(line.verb == "333" and line.params[2] == "frank" for line in lines)
    assert verbs(lines).count("366") == 2


def test_a_later_nick_change_is_refused(irc_server):
    client = irc_server.irc("gina")
    client.send("NICK other")
    assert client.expect("432").params[1] == "other"


# rooms and direct messages


def test_room_messages_go_both_ways_between_irc_and_json(irc_server):
    json = irc_server.json("hal")
    json.ok("join", room="general")
    client = irc_server.irc("ivy")
    client.send("JOIN #General")
    lines = client.sync()
    assert lines[0].verb == "JOIN" and lines[0].params == ["#general"]
    names = next(line for line in lines if line.verb == "353")
    assert set(names.params[-1].split()) == {"hal", "ivy"}
    assert json.next_event("join")["user"] == "ivy"
    client.send("PRIVMSG #general :hello from irc")
    event = json.next_event("message")
    assert (event["user"], event["text"]) == ("ivy", "hello from irc")
    json.ok("send", room="general", text="hello from json")
    line = client.expect("PRIVMSG")
    assert line.source == "hal!hal@chatd"
    assert line.params == ["#general", "hello from json"]


def test_direct_messages_go_both_ways_and_dots_become_bars(irc_server):
    json = irc_server.json("jo.smith")
    client = irc_server.irc("kim")
    client.send("PRIVMSG jo|smith :hi jo")
    event = json.next_event("dm")
    assert (event["user"], event["to"], event["text"]) == ("kim", "jo.smith", "hi jo")
    json.ok("dm", to="kim", text="hi kim")
    line = client.expect("PRIVMSG")
    assert line.source == "jo|smith!jo|smith@chatd" and line.params == ["kim", "hi kim"]
    client.send("PRIVMSG nobody-here :hello?")
    assert client.expect("401").params[1] == "nobody-here"


def test_part_leaves_for_good_and_others_see_it(irc_server):
    json = irc_server.json("lee")
    json.ok("join", room="general")
    client = irc_server.irc("max")
    client.send("JOIN #general")
    client.sync()
    client.send("PART #general :bye")
    assert client.expect("PART").params[0] == "#general"
    assert json.next_event("part")["user"] == "max"
    client.send("PRIVMSG #general :still here?")
    assert client.expect("404").params[1] == "#general"
    client.send("PART #general")
    assert client.expect("442").params[1] == "#general"


# capabilities and order


def test_echo_and_delivery_share_msgid_and_time_and_labels_stay_with_the_sender(irc_server):
    sender = irc_server.irc("nia", caps=MODERN)
    other = irc_server.irc("oz", caps=MODERN)
    for client in (sender, other):
        client.send("JOIN #general")
        client.sync()
    sender.until(lambda line: line.verb == "JOIN" and line.source.startswith("oz!"))
    sender.send("@label=L1 PRIVMSG #general :same everywhere", "PING :after")
    echo, pong = sender.next(), sender.next()
    assert echo.verb == "PRIVMSG" and pong.verb == "PONG"  # the echo waits for the commit
    assert echo.tags["label"] == "L1"
    delivered = other.expect("PRIVMSG")
    assert "label" not in delivered.tags
    assert delivered.tags["msgid"] == echo.tags["msgid"]
    assert delivered.tags["time"] == echo.tags["time"]


def test_labeled_commands_are_acked_or_batched(irc_server):
    client = irc_server.irc("pat", caps=("batch", "labeled-response"))
    client.send("@label=a PRIVMSG pat :note to self")
    ack = client.next()
    assert (ack.verb, ack.tags["label"]) == ("ACK", "a")
    client.send("@label=b FROBNICATE")
    unknown = client.next()
    assert (unknown.verb, unknown.tags["label"]) == ("421", "b")
    client.send("@label=c JOIN #x,#y")
    lines = client.sync()
    assert lines[0].verb == "BATCH" and lines[0].tags["label"] == "c"
    batch = lines[0].params[0][1:]
    assert all(line.tags.get("batch") == batch for line in lines[1:-1])
    assert [line.params[0] for line in lines if line.verb == "JOIN"] == ["#x", "#y"]
    assert lines[-1].params == [f"-{batch}"]


def test_commands_are_answered_in_the_order_sent(irc_server):
    client = irc_server.irc("quinn", caps=("echo-message",))
    pipeline = ["JOIN #order"] + [f"PRIVMSG #order :m{i}" for i in range(20)] + ["PING :end"]
    client.send(*pipeline)
    lines = client.until(lambda line: line.verb == "PONG")
    texts = [line.params[1] for line in lines if line.verb == "PRIVMSG"]
    assert texts == [f"m{i}" for i in range(20)]
    assert lines[0].verb == "JOIN"


def test_away_is_told_to_away_notify_clients_and_to_senders(irc_server):
    away = irc_server.irc("rae")
    watcher = irc_server.irc("sam", caps=("away-notify",))
    for client in (away, watcher):
        client.send("JOIN #general")
        client.sync()
    away.send("AWAY :lunch")
    assert away.expect("306")
    line = watcher.expect("AWAY")
    assert line.source.startswith("rae!") and line.params == ["lunch"]
    watcher.send("PRIVMSG rae :you there?")
    assert watcher.expect("301").params[1:] == ["rae", "lunch"]
    away.send("AWAY")
    assert away.expect("305")
    assert watcher.expect("AWAY").params == []


# history replay


def test_history_is_replayed_on_join_to_clients_without_chathistory(irc_server):
    json = irc_server.json("tom")
    json.ok("join", room="general")
    for i in range(3):
        json.ok("send", room="general", text=f"earlier {i}")
    plain = irc_server.irc("uma", caps=("server-time", "batch"))
    plain.send("JOIN #general")
    lines = plain.sync()
    replay = [line for line in lines if line.verb == "PRIVMSG"]
    assert [line.params[1] for line in replay] == ["earlier 0", "earlier 1", "earlier 2"]
    assert all("time" in line.tags and "batch" in line.tags for line in replay)
    modern = irc_server.irc("vic", caps=("draft/chathistory", "batch"))
    modern.send("JOIN #general")
    assert "PRIVMSG" not in verbs(modern.sync())


def test_replay_lines_can_be_turned_off(start_irc):
    server = start_irc(irc_replay_lines=0)
    json = server.json("wes")
    json.ok("join", room="general")
    json.ok("send", room="general", text="not replayed")
    client = server.irc("xia")
    client.send("JOIN #general")
    assert "PRIVMSG" not in verbs(client.sync())


# text


def test_long_and_multi_line_messages_are_split_with_the_msgid_on_the_first(irc_server):
    json = irc_server.json("yan")
    json.ok("join", room="general")
    client = irc_server.irc("zed", caps=("message-tags",))
    client.send("JOIN #general")
    client.sync()
    text = " ".join(f"word{i}" for i in range(300)) + "\nsecond line"
    json.ok("send", room="general", text=text)
    received = client.until(lambda line: line.params[-1:] == ["second line"])
    lines = [line for line in received if line.verb == "PRIVMSG"]
    assert len(lines) >= 4
    assert "msgid" in lines[0].tags and all("msgid" not in line.tags for line in lines[1:])
    assert all(len(raw) <= 510 for raw in client.raw if b"PRIVMSG" in raw and b"msgid" not in raw)
    assert " ".join(line.params[1] for line in lines[:-1]) == text.split("\n")[0]
    assert lines[-1].params[1] == "second line"


def test_actions_map_both_ways_and_formatting_is_stripped(irc_server):
    json = irc_server.json("abe")
    json.ok("join", room="general")
    client = irc_server.irc("bea")
    client.send("JOIN #general")
    client.sync()
    client.send(
        "PRIVMSG #general :\x01ACTION waves\x01", "PRIVMSG #general :\x02bold\x02 \x0304red"
    )
    assert json.next_event("message")["text"] == "/me waves"
    assert json.next_event("message")["text"] == "bold red"
    json.ok("send", room="general", text="/me nods")
    assert client.expect("PRIVMSG").params[1] == "\x01ACTION nods\x01"


def test_invalid_utf8_fails_and_is_not_relayed(irc_server):
    json = irc_server.json("cid")
    json.ok("join", room="general")
    client = irc_server.irc("dee")
    client.send("JOIN #general")
    client.sync()
    client.send_raw(b"PRIVMSG #general :caf\xe9\r\n")
    fail = client.expect("FAIL")
    assert fail.params[:2] == ["PRIVMSG", "INVALID_UTF8"]
    json.drain()
    assert not json.events


# other commands


def test_mode_who_whois_list_names_and_topic(irc_server):
    client = irc_server.irc("eve")
    client.send("JOIN #general")
    client.sync()
    client.send(
        "MODE #general",
        "MODE #general b",
        "MODE eve",
        "TOPIC #general :the topic",
        "WHO #general",
        "WHOIS eve",
        "LIST",
        "NAMES #general",
    )
    lines = client.sync()
    assert {"324", "329", "368", "221", "TOPIC", "352", "315", "311", "318", "322"} <= set(
        verbs(lines)
    )
    client.send("TOPIC #general")
    assert client.expect("332").params[2] == "the topic"
    assert client.expect("333").params[2] == "eve"
    client.send("KICK #general eve", "JOIN #bad!name", "BOGUS")
    assert verbs(client.sync()) == ["482", "403", "421"]


# guests


def test_guests_chat_as_guest_nick_and_cannot_take_an_account(start_irc):
    server = start_irc(irc_guests=True)
    server.account("fay")
    json = server.json("gus")
    json.ok("join", room="lobby")
    taken = server.irc()
    taken.send("NICK fay", "USER fay 0 * :F")
    assert taken.expect("433").params[1] == "fay"
    taken.send("NICK fay_")
    assert taken.expect("001").params[0] == "guest-fay_"
    taken.send("JOIN #lobby", "PRIVMSG #lobby :hi as a guest")
    event = json.next_event("message")
    assert (event["user"], event["text"]) == ("guest-fay_", "hi as a guest")


# limits and hostile input


def test_an_over_long_line_gets_417_and_the_connection_goes_on(irc_server):
    client = irc_server.irc("hank")
    client.send("PRIVMSG #general :" + "x" * 600)
    assert client.expect("417")
    assert client.sync() == []


def test_a_stream_of_bad_lines_closes_the_connection(start_irc):
    server = start_irc(max_bad_frames=3)
    client = server.irc("ida")
    client.send(*["NOSUCHCOMMAND"] * 10)
    assert client.closed()[-1].verb == "ERROR"


def test_a_paste_is_paced_not_refused(start_irc):
    server = start_irc(send_rate=50, send_burst=5)
    json = server.json("jay")
    json.ok("join", room="general")
    client = server.irc("kay")
    client.send("JOIN #general")
    client.sync()
    client.send(*[f"PRIVMSG #general :line {i}" for i in range(15)])
    assert client.sync() == []
    texts = [json.next_event("message")["text"] for _ in range(15)]
    assert texts == [f"line {i}" for i in range(15)]


_line = st.one_of(
    st.binary(max_size=600),
    st.builds(
        lambda verb, params: (verb + " " + " ".join(params)).encode(),
        st.sampled_from(
            [
                "PRIVMSG",
                "NOTICE",
                "JOIN",
                "PART",
                "TOPIC",
                "MODE",
                "WHO",
                "WHOIS",
                "NAMES",
                "LIST",
                "CHATHISTORY",
                "AWAY",
                "CAP",
                "NICK",
                "USER",
                "PASS",
                "AUTHENTICATE",
                "KICK",
                "ISON",
            ]
        ),
        st.lists(st.text(alphabet=string.printable + "#:*=\x01\x02é", max_size=40), max_size=6),
    ),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(_line, min_size=1, max_size=15))
def test_random_lines_never_crash_or_hang_the_gateway(irc_server, lines):
    client = irc_server.irc("random" + "".join(random.choices(string.ascii_lowercase, k=8)))
    for data in lines:
        client.send_raw(data.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n")
    try:
        answered = client.sync()
    except (ConnectionError, TimeoutError):
        answered = client.closed()
        assert answered == [] or answered[-1].verb == "ERROR"
    assert "400" not in verbs(answered), "an internal error"
    client.close()


# running it


def test_irc_over_tls_on_its_own_port(start_irc, tls_files, certificate_authority):
    cert, key = tls_files
    server = start_irc(tls_cert=cert, tls_key=key, irc_tls_port=0)
    services = server.server.services  # chatd's own port speaks TLS too: make the account here
    services.store.create_user("tia", services.hasher.hash(PASSWORD))
    context = ssl.create_default_context()
    certificate_authority.configure_trust(context)
    assert server.tls_address is not None
    client = IrcWire(server.tls_address, tls=context)
    server.clients.append(client)
    assert client.register("tia", PASSWORD)[0].verb in ("CAP", "900", "001")
    assert client.nick == "tia"


def test_the_irc_flags_are_checked_and_the_guest_switch_reads_the_environment():
    with pytest.raises(UsageError, match="--irc-tls-port needs --tls-cert"):
        server_config(_serve_args("--irc-tls-port", "6697"), {})
    with pytest.raises(UsageError, match="--irc-port must be 0-65535"):
        server_config(_serve_args("--irc-port", "70000"), {})
    assert server_config(_serve_args("--irc-guests"), {}).irc_guests is True
    assert server_config(_serve_args(), {"CHATD_IRC_GUESTS": "yes"}).irc_guests is True
    assert server_config(_serve_args(), {"CHATD_IRC_GUESTS": "0"}).irc_guests is False
    with pytest.raises(UsageError, match="CHATD_IRC_GUESTS"):
        server_config(_serve_args(), {"CHATD_IRC_GUESTS": "maybe"})
    config = server_config(_serve_args("--history-size", "30"), {})
    assert (config.irc_port, config.replay_lines) == (-1, 30)


def _serve_args(*flags):
    return _build_parser().parse_args(["serve", "--db", "sqlite:////tmp/unused.db", *flags])


def test_chatd_serve_logs_where_irc_listens(tmp_path):
    command = [
        str(Path(sys.executable).with_name("chatd")), "serve", "--port", "0", "--irc-port", "0",
        "--db", f"sqlite:///{tmp_path / 'c.db'}", "--bcrypt-rounds", "4",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path)},
    )  # fmt: skip
    try:
        assert process.stderr is not None
        port = None
        for _ in range(200):
            found = re.search(r"irc listening on 127\.0\.0\.1:(\d+)", process.stderr.readline())
            if found:
                port = int(found[1])
                break
        assert port is not None
        client = IrcWire(("127.0.0.1", port))
        client.send("PING :up")
        assert client.expect("PONG").params[-1] == "up"
        client.close()
    finally:
        process.terminate()
        process.wait(20)


def test_a_direct_message_between_login_and_welcome_is_shown_after_it(irc_server):
    irc_server.account("una")
    sender = irc_server.json("vera")
    client = irc_server.irc()
    client.send("CAP LS 302", "NICK una", "USER una 0 * :U", "CAP REQ :sasl")
    client.until(lambda line: line.verb == "CAP" and line.params[1] == "ACK")
    client.send("AUTHENTICATE PLAIN")
    client.expect("AUTHENTICATE")
    client.send("AUTHENTICATE " + base64.b64encode(f"\0una\0{PASSWORD}".encode()).decode())
    client.expect("903")
    sender.ok("dm", to="una", text="are you there yet?")
    client.send("CAP END")
    # why: the reply to `dm` may come before the fan-out reaches una, so wait for the line
    lines = client.until(lambda line: line.verb == "PRIVMSG")
    assert verbs(lines).index("376") < verbs(lines).index("PRIVMSG")
    assert lines[verbs(lines).index("PRIVMSG")].params == ["una", "are you there yet?"]
