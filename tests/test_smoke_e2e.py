def test_message_reaches_room_members_and_never_other_rooms(connect):
    a, b, c, d = (connect(name) for name in ("alice", "bob", "carol", "dave"))
    for member in (a, b, c):
        member.ok("join", room="general")
    d.ok("join", room="random")
    for member in (a, b, c, d):
        member.drain()
    sent = a.ok("send", room="general", text="hello")["message"]
    for member in (b, c):
        event = member.next_event("message")
        assert {k: event[k] for k in ("id", "room", "user", "text")} == {
            "id": sent["id"], "room": "general", "user": "alice", "text": "hello"
        }
    assert [e for e in d.drain() if e["event"] == "message"] == []
    assert [e for e in a.drain() if e["event"] == "message"] == []
