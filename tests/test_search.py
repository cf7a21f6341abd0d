"""search: the same behaviour on SQLite (FTS5) and PostgreSQL (tsvector), queries as text only."""

from __future__ import annotations

import pytest

from chatd.searchtext import (
    Term,
    fts5_query,
    parse_query,
    split_words,
    tsquery_text,
    tsvector_literal,
)

TEXTS = [
    "Café au lait at noon",
    "the deployment went fine",
    "deploy-prod is green; see https://example.com/runbook",
    "NEAR AND OR NOT are just words",
    "quoted phrase here, a quoted phrase",
    "phrase quoted backwards",
    "mail bob@example.com about 3.14",
    "naïve résumé for Zoë",
    "日本語 テキスト too",
]


@pytest.fixture
def searcher(connect):
    alice = connect("alice")
    alice.ok("join", room="general")
    ids = {text: alice.ok("send", room="general", text=text)["message"]["id"] for text in TEXTS}
    return alice, ids


def found(client, query: str, **args) -> list[str]:
    return [m["text"] for m in client.ok("search", query=query, **args)["messages"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("cafe", ["Café au lait at noon"]),
        ("CAFÉ LAIT", ["Café au lait at noon"]),
        (
            "deploy",
            ["deploy-prod is green; see https://example.com/runbook", "the deployment went fine"],
        ),
        ("prod green", ["deploy-prod is green; see https://example.com/runbook"]),
        ("runbook", ["deploy-prod is green; see https://example.com/runbook"]),
        (
            "example",
            [
                "mail bob@example.com about 3.14",
                "deploy-prod is green; see https://example.com/runbook",
            ],
        ),
        ("14", ["mail bob@example.com about 3.14"]),
        ('"quoted phrase"', ["quoted phrase here, a quoted phrase"]),
        ("phrase quoted", ["phrase quoted backwards", "quoted phrase here, a quoted phrase"]),
        ('"phrase quoted"', ["phrase quoted backwards"]),
        ("near and", ["NEAR AND OR NOT are just words"]),
        ("naive resume zoe", ["naïve résumé for Zoë"]),
        ("日本語", ["日本語 テキスト too"]),
        ("nothing matches this", []),
    ],
)
def test_words_match_as_words_or_beginnings(searcher, query, expected) -> None:
    alice, _ids = searcher
    assert found(alice, query) == expected


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '"unbalanced',
        "deploy*",
        "-deploy",
        "(deploy",
        "deploy)",
        "NEAR(a b)",
        "a AND OR NOT",
        "col:deploy",
        "^deploy",
        "'; DROP TABLE messages; --",
        "\\",
        "*",
        "''''",
        "x" * 200,
        "\u0000\u0001",
        "🙂🙂",
    ],
)
def test_hostile_queries_are_text_never_internal(searcher, query) -> None:
    alice, _ids = searcher
    reply = alice.request("search", query=query)
    assert reply["ok"] is True, reply


def test_punctuation_in_a_query_is_a_separator(searcher) -> None:
    alice, _ids = searcher
    assert found(alice, "deploy*") == found(alice, "deploy")
    assert found(alice, '"unbalanced deploy') == found(alice, "unbalanced deploy")


def test_search_arguments(searcher, connect) -> None:
    alice, ids = searcher
    assert alice.error("search", query="") == "bad_request"
    assert alice.error("search", query="x" * 201) == "bad_request"
    assert alice.error("search", query="x", limit=0) == "bad_request"
    assert alice.error("search", query="x", limit=101) == "bad_request"
    assert alice.error("search", query="x", room="general", **{"with": "alice"}) == "bad_request"
    assert alice.error("search", query="x", room="#bad room") == "invalid_room"
    assert alice.error("search", query="x", room="other") == "not_in_room"
    assert alice.error("search", query="x", **{"with": "nobody"}) == "no_such_user"
    newest_first = alice.ok("search", query="phrase")["messages"]
    assert [m["id"] for m in newest_first] == sorted((m["id"] for m in newest_first), reverse=True)
    page = alice.ok("search", query="phrase", limit=1)["messages"]
    assert len(page) == 1
    older = alice.ok("search", query="phrase", before=page[0]["id"])["messages"]
    assert [m["id"] for m in older] == [ids["quoted phrase here, a quoted phrase"]]


def test_search_covers_my_rooms_and_my_direct_messages_only(connect) -> None:
    alice = connect("alice")
    bob = connect("bob")
    carol = connect("carol")
    alice.ok("join", room="general")
    carol.ok("join", room="secret")
    alice.ok("send", room="general", text="banana in general")
    carol.ok("send", room="secret", text="banana in secret")
    carol.ok("dm", to="bob", text="banana for bob")
    alice.ok("dm", to="bob", text="banana from alice")
    bob.ok("dm", to="alice", text="banana back to alice")
    assert found(alice, "banana") == [
        "banana back to alice",
        "banana from alice",
        "banana in general",
    ]
    assert found(bob, "banana") == ["banana back to alice", "banana from alice", "banana for bob"]
    assert found(bob, "banana", **{"with": "carol"}) == ["banana for bob"]
    assert found(alice, "banana", room="general") == ["banana in general"]
    bob.ok("join", room="general")
    assert "banana in general" in found(bob, "banana")
    bob.ok("part", room="general")
    assert "banana in general" not in found(bob, "banana")


def test_edited_messages_are_found_by_their_new_text_and_deleted_ones_never(searcher) -> None:
    alice, ids = searcher
    cafe = ids["Café au lait at noon"]
    alice.ok("edit", message_id=cafe, text="Tea at four")
    assert found(alice, "cafe") == []
    hits = alice.ok("search", query="tea")["messages"]
    assert [(m["id"], m["text"]) for m in hits] == [(cafe, "Tea at four")]
    assert "edited" in hits[0]
    alice.ok("delete", message_id=cafe)
    assert found(alice, "tea") == []


def test_query_words_and_forms() -> None:
    assert split_words("Deploy-PROD, naïve 3.14!") == ["deploy", "prod", "naive", "3", "14"]
    assert parse_query('"a b" c "d') == [Term(("a", "b"), True), Term(("c",)), Term(("d",))]
    assert parse_query('"one" two') == [Term(("one",)), Term(("two",))]
    assert parse_query('*** "" ()') == []
    terms = parse_query('deploy "quoted phrase"')
    assert fts5_query(terms) == '"deploy"* AND "quoted phrase"'
    assert tsquery_text(terms) == "'deploy':* & ('quoted' <-> 'phrase')"
    assert tsvector_literal("a b a") == "'a':1,3 'b':2"
