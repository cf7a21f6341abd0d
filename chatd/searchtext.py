"""Search queries as text, never syntax: the words and phrases of a query, and each backend's form.

PROTOCOL.md: every word of a query must occur in a message as a word or a
word's beginning, ignoring case and accents; a `"quoted phrase"` must occur
as those words in that order; words are split at anything that is not a
letter or digit. So the query is taken apart here, in Python, into words of
letters and digits only, and each backend is handed those words quoted, with
no operator of its own: `NEAR`, `AND`, `*`, `-`, parentheses and stray quotes
are separators or plain words, and no query can be a syntax error.

Folding (`fold`) is the same on both backends: Unicode decomposition with the
combining marks dropped, then lower case. SQLite's FTS5 tokenizer
(`unicode61 remove_diacritics 2`) does that to the stored text itself; for
PostgreSQL the stored tsvector is built here (`tsvector_literal`), so the
database's own parser never decides where a word ends.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

QUERY_MAX_CHARS = 200
# why: PostgreSQL refuses a lexeme of 2 KiB or more; no query word can be that long.
LEXEME_MAX_BYTES = 2046
# why: tsvector positions stop at 16383; later words share the last one.
POSITION_MAX = 16383


@dataclass(frozen=True, slots=True)
class Term:
    """One condition of a query: a word matched as a word's beginning, or an exact phrase."""

    words: tuple[str, ...]
    phrase: bool = False


def fold(text: str) -> str:
    """Case and accents folded: `Café` -> `cafe`."""
    decomposed = unicodedata.normalize("NFD", text)
    bare = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return unicodedata.normalize("NFC", bare.lower())


def split_words(text: str) -> list[str]:
    """The words of `text`: runs of letters and digits, folded."""
    words: list[str] = []
    current: list[str] = []
    for ch in fold(text):
        if ch.isalnum():
            current.append(ch)
        elif current:
            words.append("".join(current))
            current = []
    if current:
        words.append("".join(current))
    return words


def parse_query(query: str) -> list[Term]:
    """The terms of a query; [] when it holds no word at all (it then matches nothing).

    Text between a pair of double quotes is a phrase (one of a single word is
    that word); an unpaired quote is a separator like any other.
    """
    pieces = query.split('"')
    if len(pieces) % 2 == 0:  # an odd number of quotes: the last one pairs with nothing
        pieces[-2:] = [pieces[-2] + " " + pieces[-1]]
    terms: list[Term] = []
    seen: set[Term] = set()
    for index, piece in enumerate(pieces):
        words = split_words(piece)
        quoted = index % 2 == 1
        found = [Term(tuple(words), True)] if quoted and len(words) > 1 else []
        if not found:
            found = [Term((word,)) for word in words]
        for term in found:
            if term not in seen:
                seen.add(term)
                terms.append(term)
    return terms


def fts5_query(terms: list[Term]) -> str:
    """An FTS5 MATCH expression: each word a quoted string, a prefix unless in a phrase.

    The words hold letters and digits only, so the quotes need no escaping.
    """
    parts = []
    for term in terms:
        if term.phrase:
            parts.append('"' + " ".join(term.words) + '"')
        else:
            parts.append(f'"{term.words[0]}"*')
    return " AND ".join(parts)


def _lexeme(word: str) -> str | None:
    return None if len(word.encode("utf-8")) > LEXEME_MAX_BYTES else f"'{word}'"


def tsquery_text(terms: list[Term]) -> str | None:
    """A PostgreSQL tsquery in its input syntax (cast, never parsed by a configuration).

    None when a word is too long to be a lexeme: nothing stored can match it.
    """
    parts = []
    for term in terms:
        lexemes = [_lexeme(word) for word in term.words]
        if None in lexemes:
            return None
        if term.phrase:
            parts.append("(" + " <-> ".join(str(lexeme) for lexeme in lexemes) + ")")
        else:
            parts.append(f"{lexemes[0]}:*")
    return " & ".join(parts)


def tsvector_literal(text: str) -> str:
    """The tsvector of a message's text in its input syntax: each word with its positions."""
    positions: dict[str, list[int]] = {}
    for index, word in enumerate(split_words(text), start=1):
        if len(word.encode("utf-8")) <= LEXEME_MAX_BYTES:
            positions.setdefault(word, []).append(min(index, POSITION_MAX))
    return " ".join(
        f"'{word}':{','.join(map(str, sorted(set(spots))))}" for word, spots in positions.items()
    )
