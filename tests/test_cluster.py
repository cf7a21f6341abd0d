"""Several nodes on one PostgreSQL and one Redis: to clients, one server (PROTOCOL.md).

Each test runs real `chatd serve` processes (tests/cluster.py) on the
session's private PostgreSQL and Redis, puts members on chosen nodes, and
checks what every member was sent against what PostgreSQL holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import (
    Database,
    Member,
    Node,
    Nodes,
    converge,
    dm_problems,
    room_problems,
    unacknowledged_lost,
    wait_until,
)
from postgres import PostgresCluster
from redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def nodes(
    postgres_cluster: PostgresCluster, clean_redis: RedisServer, tmp_path: Path
) -> Iterator[Nodes]:
    started = Nodes(postgres_cluster.empty_database(0), clean_redis.url, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def db(nodes: Nodes) -> Iterator[Database]:
    database = Database(nodes.db_url)
    try:
        yield database
    finally:
        database.close()


def members_on(pairs: list[tuple[Node, str]], room: str) -> list[Member]:
    members = []
    for node, name in pairs:
        member = Member(node, name)
        member.join(room)
        members.append(member)
    for member in members:
        member.start_recording()
    return members


def test_welcome_names_the_node_and_the_cluster_feature(nodes: Nodes) -> None:
    a = nodes.start("a")
    member = Member(a, "alice")
    assert member.client.welcome["features"] == ["conversations", "cluster"]
    assert member.client.welcome["node"] == "a"


def test_a_room_spans_nodes_in_order(nodes: Nodes, db: Database) -> None:
    a, b = nodes.start("a"), nodes.start("b")
    members = members_on([(a, "alice"), (b, "bob"), (a, "carol"), (b, "dave")], "general")
    rids = []
    for n in range(50):
        for member in members:
            rids.append((member, member.send("general", f"{n} from {member.username}")))
    for member, rid in rids:
        assert member.wait_reply(rid)["ok"]
    converge(lambda: room_problems(members, "general", db), 10)
    assert len(db.room_ids("general")) == 200
    assert unacknowledged_lost(members, db) == []


def test_membership_topic_and_presence_cross_nodes(nodes: Nodes) -> None:
    a, b = nodes.start("a"), nodes.start("b")
    alice = Member(a, "alice")
    alice.join("ops")
    alice.start_recording()
    bob = Member(b, "bob")
    reply = bob.client.ok("join", room="ops")
    assert reply["members"] == ["alice", "bob"]
    assert reply["online"] == ["alice", "bob"]
    wait_until(lambda: alice.events("join") != [], 5, "alice hears bob join")
    assert alice.events("join") == [{"event": "join", "room": "ops", "user": "bob"}]

    bob.client.ok("topic", room="ops", topic="deploys")
    wait_until(lambda: alice.events("topic") != [], 5, "alice hears the topic")
    assert alice.events("topic")[0]["topic"] == "deploys"
    assert Member(a, "carol").client.ok("who", room="ops")["online"] == ["alice", "bob"]

    bob.client.ok("part", room="ops")
    wait_until(lambda: alice.events("part") != [], 5, "alice hears bob part")
    bob.close()
    who = alice  # a request on a recording member would race its reader: ask afresh
    del who
    carol = Member(a, "carol", register=False)
    wait_until(
        lambda: carol.client.ok("who", room="ops")["online"] == ["alice"],
        5,
        "bob shows offline on node a",
    )


def test_a_part_on_one_node_stops_sends_on_another(nodes: Nodes) -> None:
    """Membership that decides whether a message is stored is checked in the database."""
    a, b = nodes.start("a"), nodes.start("b")
    bob_a = Member(a, "bob")
    bob_a.join("ops")
    bob_b = Member(b, "bob", register=False)
    bob_b.client.ok("part", room="ops")
    assert bob_a.client.error("send", room="ops", text="after the part") == "not_in_room"


def test_direct_messages_cross_nodes(nodes: Nodes, db: Database) -> None:
    a, b = nodes.start("a"), nodes.start("b")
    alice, bob = Member(a, "alice"), Member(b, "bob")
    for member in (alice, bob):
        member.start_recording()
    sent = []
    for n in range(40):
        sent.append((alice, alice.dm("bob", f"{n} to bob")))
        sent.append((bob, bob.dm("alice", f"{n} to alice")))
    for member, rid in sent:
        assert member.wait_reply(rid)["ok"]
    converge(lambda: dm_problems(alice, bob, db), 10)
    assert len(db.dm_ids("alice", "bob")) == 80


def test_edits_deletes_and_read_markers_cross_nodes(nodes: Nodes) -> None:
    a, b = nodes.start("a"), nodes.start("b")
    alice = Member(a, "alice")
    alice.join("ops")
    bob = Member(b, "bob")
    bob.join("ops")
    bob_phone = Member(a, "bob", register=False)
    for member in (bob, bob_phone):
        member.start_recording()
    sent = alice.client.ok("send", room="ops", text="helo")["message"]["id"]
    alice.client.ok("edit", message_id=sent, text="hello")
    alice.client.ok("delete", message_id=sent)
    wait_until(lambda: bob.events("delete") != [], 5, "bob hears of the delete on node b")
    assert [f["event"] for f in bob.snapshot() if f.get("id") == sent] == [
        "message",
        "edit",
        "delete",
    ]
    assert bob.events("edit")[0]["text"] == "hello"
    rid = bob.request("mark_read", room="ops", message_id=sent)
    assert bob.wait_reply(rid)["last_read"] == sent
    wait_until(lambda: bob_phone.events("read") != [], 5, "bob's other node hears the marker")
    assert bob_phone.events("read") == [{"event": "read", "room": "ops", "last_read": sent}]


def test_user_disable_closes_sessions_on_every_node(nodes: Nodes) -> None:
    import subprocess
    import sys

    a, b = nodes.start("a"), nodes.start("b")
    on_a, on_b = Member(a, "mallory"), Member(b, "mallory", register=False)
    subprocess.run(
        [sys.executable, "-m", "chatd", "user", "disable", "mallory", f"--db={nodes.db_url}"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    for member in (on_a, on_b):
        event = member.client.next_event("error", timeout=10)
        assert event["error"] == "account_disabled"


def test_node_death_shows_its_users_offline(nodes: Nodes) -> None:
    a, b = nodes.start("a"), nodes.start("b")
    watcher = Member(a, "alice")
    watcher.client.ok("join", room="ops")
    doomed = Member(b, "bob")
    doomed.client.ok("join", room="ops")
    wait_until(
        lambda: watcher.client.ok("who", room="ops")["online"] == ["alice", "bob"],
        5,
        "bob online on node a",
    )
    b.kill()
    killed = time.monotonic()
    wait_until(
        lambda: watcher.client.ok("who", room="ops")["online"] == ["alice"],
        12,
        "bob offline on node a after node b died",
    )
    assert time.monotonic() - killed <= 10.5
