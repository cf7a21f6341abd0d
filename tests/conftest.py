"""Fixtures: a real chatd server on 127.0.0.1:0 over a real database, and clients for it.

Server suites run twice, on SQLite and on PostgreSQL. Every test that uses
a database (`db_url`, directly or through `server`, `connect`,
`start_server` or `make_config`) is parametrized by `pytest_generate_tests`
over `db_backend`, with test ids ending `[sqlite]` and `[postgresql]`. A
test, class or module marked `@pytest.mark.sqlite_only("why")` runs on
SQLite alone and keeps its plain id: the client's suites (the server is
only their fixture there, and one backend is enough) and what is SQLite's
by nature (`chatd backup`, a full database through max_page_count).

The PostgreSQL half uses a private server the session starts (see
tests/postgres.py), never the machine's. Without PostgreSQL's server
binaries or the psycopg driver it is skipped with the reason, unless the
environment variable CI is set: then it fails, so CI never passes by
skipping.

Tests of what the cluster shares through Redis use a private redis-server
the session starts (see tests/redis_server.py), never the machine's: the
`redis_server` fixture, and per test `clean_redis` (the same server, reset:
running, settings as started, no key) and `redis_client` (a client of it).
Without redis-server they skip, or fail when CI is set, as above.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import trustme
from postgres import PostgresCluster, find_binaries, unavailable_reason
from redis_server import MISSING_SERVER, RedisServer, find_server
from wire import ConnectionClosed, WireClient

from chatd.config import ServerConfig
from chatd.db import upgrade
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


DB_BACKENDS = ("sqlite", "postgresql")
SQLITE_ONLY = "sqlite_only"
# why: the client's suites need a server, not a second database under it; the server's
# own suites run on both.
CLIENT_SUITE = pytest.mark.sqlite_only("a client suite: the server is only its fixture")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{SQLITE_ONLY}(reason): run on SQLite only, not also on PostgreSQL"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses a database runs on each backend, unless marked sqlite_only."""
    if "db_backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker(SQLITE_ONLY)
    if marker is None:
        metafunc.parametrize("db_backend", DB_BACKENDS, indirect=True)
    elif not marker.args:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: sqlite_only needs its reason")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """The session's private PostgreSQL; skipped (failed when CI is set) where it cannot run."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the PostgreSQL half must run)", pytrace=False)
        pytest.skip(reason)
    binaries = find_binaries()
    assert binaries is not None
    cluster = PostgresCluster.start(binaries)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's private Redis; skipped (failed when CI is set) without redis-server.

    Tests that stop, freeze or reconfigure it should ask for `clean_redis`,
    which resets it for each test.
    """
    binary = find_server()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"{MISSING_SERVER} (CI is set: the Redis tests must run)", pytrace=False)
        pytest.skip(MISSING_SERVER)
    server = RedisServer.start(binary)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clean_redis(redis_server: RedisServer) -> RedisServer:
    """The private Redis as new: running, settings as started, no key (FLUSHALL)."""
    redis_server.reset()
    return redis_server


@pytest.fixture
def redis_client(clean_redis: RedisServer) -> Iterator[redis.Redis]:
    """A client of the emptied private Redis (fails fast: no retries); closed at teardown."""
    client = clean_redis.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    """The backend of this test: from pytest_generate_tests, else "sqlite"."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def new_db_url(
    db_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[], str]:
    """new_db_url() -> another empty, migrated database on this test's backend.

    SQLite: a new file under tmp_path (the first is chatd.db). PostgreSQL: a
    database of the session's cluster, emptied for this test.
    """
    if db_backend == "sqlite":
        names = itertools.chain(["chatd.db"], (f"chatd{n}.db" for n in itertools.count(2)))

        def make_sqlite() -> str:
            url = f"sqlite:///{tmp_path / next(names)}"
            upgrade(url)
            return url

        return make_sqlite
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    indexes = itertools.count()
    return lambda: cluster.empty_database(next(indexes))


@pytest.fixture
def db_url(new_db_url: Callable[[], str]) -> str:
    """A migrated database of this test's own: see the module's docstring."""
    return new_db_url()


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


# why: the IRC gateway's fixtures live beside its test client; imported last, since
# irc_fixtures reads this module's PASSWORD.
from irc_fixtures import irc_server, start_irc  # noqa: E402, F401
