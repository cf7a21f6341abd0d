"""Fixtures: a real chatd server on 127.0.0.1:0 over a real SQLite file, and clients for it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from alembic import command
from wire import ConnectionClosed, WireClient

from chatd.config import ServerConfig
from chatd.db import alembic_config, upgrade
from chatd.server import Server
from client.connection import Backoff
from client.session import Session

PASSWORD = "correct horse"
TEST_BCRYPT_ROUNDS = 4


def registered(address: tuple[str, int], name: str, **kwargs: Any) -> WireClient:
    """A new connection, registered and logged in as `name`."""
    client = WireClient(address, **kwargs)
    client.ok("register", username=name, password=PASSWORD)
    client.ok("login", username=name, password=PASSWORD)
    return client


def closed(client: WireClient) -> bool:
    """Read until the server closes the connection."""
    try:
        while True:
            client.next_frame()
    except (ConnectionClosed, ConnectionResetError):
        return True


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A migrated SQLite file under tmp_path, or the emptied CHATD_TEST_DB (PostgreSQL, say)."""
    url = os.environ.get("CHATD_TEST_DB")
    if url:
        command.downgrade(alembic_config(url), "base")
    else:
        url = f"sqlite:///{tmp_path / 'chatd.db'}"
    upgrade(url)
    return url


@pytest.fixture
def make_config(db_url: str, tmp_path: Path) -> Callable[..., ServerConfig]:
    def make(**overrides: Any) -> ServerConfig:
        base = ServerConfig(
            host="127.0.0.1",
            port=0,
            db=db_url,
            files_dir=str(tmp_path / "files"),
            bcrypt_rounds=TEST_BCRYPT_ROUNDS,
            # why: limits are off unless a test is about them, so other tests can go fast.
            send_rate=0,
            login_failures=0,
            registrations_per_hour=0,
            max_connections_per_ip=0,
        )
        return dataclasses.replace(base, **overrides)

    return make


@pytest.fixture
def start_server(make_config: Callable[..., ServerConfig]) -> Iterator[Callable[..., Server]]:
    """Start a server in this process; every one started is stopped at teardown."""
    servers: list[Server] = []

    def start(*, clock: Callable[[], float] | None = None, **overrides: Any) -> Server:
        config = make_config(**overrides)
        server = Server(config) if clock is None else Server(config, clock=clock)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    return start_server()


@pytest.fixture
def connect(server: Server) -> Iterator[Callable[..., WireClient]]:
    """connect() -> a bare client; connect("alice") -> registered and logged in as alice."""
    clients: list[WireClient] = []
    registered: set[str] = set()

    def make(user: str | None = None, *, address: tuple[str, int] | None = None) -> WireClient:
        client = WireClient(address or server.address)
        clients.append(client)
        if user is not None:
            if user.lower() not in registered:
                client.ok("register", username=user, password=PASSWORD)
                registered.add(user.lower())
            client.ok("login", username=user, password=PASSWORD)
            client.username = user
        return client

    yield make
    for client in clients:
        client.close()


class FakeClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# why: tests wait for reconnects; a real client's first retry is half a second away
FAST_BACKOFF = Backoff(first=0.05, factor=2.0, cap=0.5, jitter=0.0)


@pytest.fixture
def sessions() -> Iterator[Callable[..., Session]]:
    """sessions(address, **options) -> a `chat` client session; all closed at teardown."""
    made: list[Session] = []

    def make(address: tuple[str, int], **options: Any) -> Session:
        options.setdefault("backoff", FAST_BACKOFF)
        session = Session(address, **options)
        made.append(session)
        return session

    yield make
    for session in made:
        session.close(timeout=1.0)


@pytest.fixture(scope="session")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(certificate_authority, tmp_path):
    cert = certificate_authority.issue_cert("localhost", "127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return str(cert_file), str(key_file)
