"""Fixtures for the IRC gateway's tests: a server with an IRC listener, and IRC and JSON clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import PASSWORD
from irc_wire import IrcWire
from wire import WireClient

from chatd.config import ServerConfig
from chatd.listeners import open_listeners
from chatd.server import Server

SERVER_NAME = "irc.test"


@dataclass
class IrcServer:
    server: Server
    json_address: tuple[str, int]
    irc_address: tuple[str, int]
    tls_address: tuple[str, int] | None = None
    clients: list[Any] = field(default_factory=list)
    accounts: set[str] = field(default_factory=set)

    def account(self, name: str) -> None:
        """Make sure the account exists (registered over chatd's own protocol)."""
        if name.lower() in self.accounts:
            return
        client = WireClient(self.json_address)
        client.ok("register", username=name, password=PASSWORD)
        client.close()
        self.accounts.add(name.lower())

    def irc(
        self, nick: str | None = None, *, how: str = "sasl", caps: tuple[str, ...] = ()
    ) -> IrcWire:
        """An IRC connection; registered and logged in as `nick` when given."""
        client = IrcWire(self.irc_address)
        self.clients.append(client)
        if nick is not None:
            self.account(nick)
            client.register(nick, PASSWORD, how=how, caps=caps)
        return client

    def json(self, name: str) -> WireClient:
        self.account(name)
        client = WireClient(self.json_address)
        self.clients.append(client)
        client.ok("login", username=name, password=PASSWORD)
        return client


@pytest.fixture
def start_irc(make_config: Callable[..., ServerConfig]) -> Iterator[Callable[..., IrcServer]]:
    made: list[IrcServer] = []

    def start(**overrides: Any) -> IrcServer:
        config = make_config(irc_port=0, irc_server_name=SERVER_NAME, **overrides)
        listeners = open_listeners(config)
        server = Server(config, listeners=listeners)
        server.start()
        tls = listeners[2].address if len(listeners) > 2 else None
        irc = IrcServer(server, listeners[0].address, listeners[1].address, tls)
        made.append(irc)
        return irc

    yield start
    for irc in made:
        for client in irc.clients:
            client.close()
        irc.server.stop()


@pytest.fixture
def irc_server(start_irc: Callable[..., IrcServer]) -> IrcServer:
    return start_irc()
