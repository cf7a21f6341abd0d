"""An event on its way to many connections, encoded once per dialect.

The idea of Ergo's message cache (irc/message_cache.go): the fan-out hands
every connection the same object, and each connection asks it for the bytes
of its own dialect (JSON lines, IRC); the first to ask encodes, the rest
reuse. Two threads asking at once may both encode; they make equal bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from chatd.events import AnyEvent


class Outgoing:
    """One event and its encodings so far."""

    __slots__ = ("_encoded", "event")

    def __init__(self, event: AnyEvent) -> None:
        self.event = event
        self._encoded: dict[Hashable, bytes] = {}

    def encoded(self, key: Hashable, encode: Callable[[AnyEvent], bytes]) -> bytes:
        """The bytes under `key` (a dialect's, or one of its forms), made on first use."""
        data = self._encoded.get(key)
        if data is None:
            data = self._encoded[key] = encode(self.event)
        return data

    def __repr__(self) -> str:
        return f"<Outgoing {self.event!r}>"


class Bundle:
    """Several events for the same connections (a room's share of a batch), joined once."""

    __slots__ = ("_joined", "items")

    def __init__(self, items: Sequence[Outgoing]) -> None:
        self.items = items
        self._joined: dict[Hashable, bytes] = {}

    def joined(self, key: Hashable, encode: Callable[[Outgoing], bytes]) -> bytes:
        data = self._joined.get(key)
        if data is None:
            data = self._joined[key] = b"".join(encode(item) for item in self.items)
        return data
