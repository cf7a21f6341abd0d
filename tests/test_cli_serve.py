"""`chatd` as a user runs it: a real process, signals, kill -9, the default database."""

from __future__ import annotations

import io
import os
import re
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from conftest import PASSWORD
from wire import WireClient

from chatd.cli import main
from chatd.db import alembic_config
from chatd.transcript import Transcript, TranscriptMessage, dumps_transcript

# why: the installed command, as a user runs it; `python -m chatd` from the checkout
# would import the source tree instead of the installed package.
CHATD = str(Path(sys.executable).with_name("chatd"))
LISTENING = re.compile(rb"listening on ([\d.]+):(\d+)")


class ServeProcess:
    """`chatd serve` in a subprocess; knows its address once it logs `listening on`."""

    def __init__(
        self, *args: str, env: dict[str, str], deadline: float = 20, cwd: Path | None = None
    ) -> None:
        self.proc = subprocess.Popen(
            [CHATD, "serve", "--port", "0", "--bcrypt-rounds", "4", "--send-rate", "0", *args],
            env=env,
            cwd=cwd,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        self.log = b""
        self.address = self._wait_listening(deadline)

    def _wait_listening(self, deadline: float) -> tuple[str, int]:
        assert self.proc.stderr is not None
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stderr, selectors.EVENT_READ)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if selector.select(timeout=0.2):
                chunk = os.read(self.proc.stderr.fileno(), 65536)
                if not chunk:
                    break
                self.log += chunk
                match = LISTENING.search(self.log)
                if match:
                    return match.group(1).decode(), int(match.group(2))
        self.proc.kill()
        raise AssertionError(f"chatd serve did not start: {self.log.decode(errors='replace')}")

    def finish(self, timeout: float = 20) -> tuple[int, str]:
        _out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, (self.log + err).decode(errors="replace")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHATD_")}
    environ["XDG_DATA_HOME"] = str(tmp_path / "data")
    return environ


def login(address: tuple[str, int], name: str, *, register: bool = True) -> WireClient:
    client = WireClient(address)
    if register:
        client.ok("register", username=name, password=PASSWORD)
    client.ok("login", username=name, password=PASSWORD)
    return client


def test_serve_creates_the_default_database_and_stops_cleanly_on_sigterm(env, tmp_path):
    server = ServeProcess(env=env)
    assert (tmp_path / "data" / "chatd" / "chatd.db").exists()
    alice = login(server.address, "alice")
    alice.ok("join", room="general")
    sent = alice.ok("send", room="general", text="before the stop")["message"]
    server.proc.send_signal(signal.SIGTERM)
    assert alice.next_event("shutdown")["reason"]
    status, log = server.finish()
    assert status == 0
    assert log.count("listening on") == 1
    again = ServeProcess(env=env)
    back = login(again.address, "alice", register=False)
    assert back.ok("join", room="general")["history"] == [sent]
    again.proc.send_signal(signal.SIGINT)
    assert again.finish()[0] == 0


def test_passwords_never_reach_the_log(env):
    server = ServeProcess("--log-level", "debug", env=env)
    secret = "hunter2-hunter2"
    client = WireClient(server.address)
    client.ok("register", username="alice", password=secret)
    client.error("login", username="alice", password=secret + "x")
    client.ok("login", username="alice", password=secret)
    client.send_raw(b'{"op":"login","username":"alice","password":"' + secret.encode() + b'"\n')
    client.next_reply()
    server.proc.send_signal(signal.SIGTERM)
    status, log = server.finish()
    assert status == 0 and "alice" in log
    assert secret not in log


def test_every_acknowledged_message_survives_kill_9(env):
    server = ServeProcess(env=env)
    senders = [login(server.address, f"writer{i}") for i in range(3)]
    for client in senders:
        client.ok("join", room="durable")
    acked: list[int] = []
    for n in range(60):
        for client in senders:
            acked.append(client.ok("send", room="durable", text=f"n{n}")["message"]["id"])
    for client in senders:
        client.send_frame({"op": "send", "id": "unacked", "room": "durable", "text": "maybe"})
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    again = ServeProcess(env=env)
    reader = login(again.address, "writer0", register=False)
    stored = reader.ok("history", room="durable", limit=500)["messages"]
    stored_ids = [m["id"] for m in stored]
    assert set(acked) <= set(stored_ids)
    assert stored_ids == sorted(set(stored_ids))
    again.proc.send_signal(signal.SIGTERM)
    assert again.finish()[0] == 0


def test_init_db_twice_then_serve_refuses_an_outdated_database(env, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    assert main(["init-db", "--db", url], env) == 0
    assert main(["init-db", "--db", url], env) == 0
    from alembic import command

    from chatd.db import alembic_config, head_revision

    assert f"revision {head_revision(alembic_config(url))}" in capsys.readouterr().out

    command.downgrade(alembic_config(url), "base")
    status = main(["serve", "--db", url, "--port", "0"], env)
    assert status == 1
    assert "chatd init-db" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "environ_extra", "says"),
    [
        (["serve", "--port", "99999"], {}, "--port"),
        (["serve", "--history-size", "0"], {}, "--history-size"),
        (["serve"], {"CHATD_PORT": "seven"}, "CHATD_PORT"),
        (["serve", "--log-level", "loud"], {}, "--log-level"),
        (["serve", "--bus", "redis://127.0.0.1:1/0"], {}, "--bus needs a PostgreSQL database"),
        (["serve"], {"CHATD_BUS": "redis://127.0.0.1:1/0"}, "--bus needs a PostgreSQL"),
        (["serve", "--bus", "http://cache"], {}, "--bus must be a Redis URL"),
    ],
)
def test_bad_settings_are_one_line_and_status_2(env, capsys, argv, environ_extra, says):
    assert main(argv, {**env, **environ_extra}) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and err.count("\n") == 1


def test_environment_settings_apply(env, tmp_path):
    env = {**env, "CHATD_HISTORY_SIZE": "3", "CHATD_DB": f"sqlite:///{tmp_path / 'env.db'}"}
    server = ServeProcess(env=env)
    client = WireClient(server.address)
    assert client.welcome["history_size"] == 3
    assert (tmp_path / "env.db").exists()
    server.proc.send_signal(signal.SIGTERM)
    assert server.finish()[0] == 0


def test_kill_9_during_concurrent_sends_loses_no_acknowledged_message(env, tmp_path):
    db = tmp_path / "crash.db"
    env = {**env, "CHATD_DB": f"sqlite:///{db}"}
    server = ServeProcess(env=env)
    writers = [login(server.address, f"writer{i}") for i in range(4)]
    for client in writers:
        client.ok("join", room="crash")
    acked: dict[int, str] = {}
    lock = threading.Lock()

    def write(client: WireClient) -> None:
        try:
            for n in range(2000):
                text = f"{client.welcome['version']} {id(client)} {n}"
                message = client.ok("send", room="crash", text=text)["message"]
                with lock:
                    acked[message["id"]] = message["text"]
        except (ConnectionError, OSError, AssertionError):
            return

    threads = [threading.Thread(target=write, args=(client,)) for client in writers]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    for thread in threads:
        thread.join(20)
    assert len(acked) >= 300

    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    again = ServeProcess(env=env)
    reader = login(again.address, "writer0", register=False)
    stored: list[dict] = []
    before = None
    while True:
        page = reader.ok("history", room="crash", limit=500, before=before)["messages"]
        if not page:
            break
        stored[:0] = page
        before = page[0]["id"]
    ids = [m["id"] for m in stored]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    texts = {m["id"]: m["text"] for m in stored}
    assert all(texts.get(i) == text for i, text in acked.items())
    assert len({m["text"] for m in stored}) == len(stored)
    again.proc.send_signal(signal.SIGTERM)
    assert again.finish()[0] == 0


def test_db_takes_a_plain_path_everywhere(env, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    transcript = tmp_path / "general.transcript"
    transcript.write_bytes(
        dumps_transcript(
            Transcript("general", "", 0, (TranscriptMessage(1, "alice", "hi", 1000, None),))
        )
    )
    for given, where in [
        ("relative.db", tmp_path / "relative.db"),
        ("~/home.db", tmp_path / "home" / "home.db"),
        (str(tmp_path / "absolute.db"), tmp_path / "absolute.db"),
    ]:
        for argv in (
            ["init-db"],
            ["user", "add", "alice"],
            ["backup", str(tmp_path / f"{where.name}.backup")],
            ["import", str(transcript)],
            ["export", "--room", "general", str(tmp_path / f"{where.name}.transcript")],
        ):
            monkeypatch.setattr(
                "sys.stdin", io.TextIOWrapper(io.BytesIO(PASSWORD.encode() + b"\n"))
            )
            assert main([*argv, "--db", given], env) == 0, capsys.readouterr().err
        assert where.exists()
        capsys.readouterr()
        assert main(["user", "list"], {**env, "CHATD_DB": given}) == 0
        assert capsys.readouterr().out.startswith("alice ")

    server = ServeProcess(env={**env, "CHATD_DB": "~/home.db", "HOME": str(tmp_path / "home")})
    login(server.address, "alice", register=False)
    server.proc.send_signal(signal.SIGTERM)
    assert server.finish()[0] == 0
    for given in (str(tmp_path / "absolute.db"), "relative.db"):
        server = ServeProcess("--db", given, env=env, cwd=tmp_path)
        login(server.address, "alice", register=False)
        server.proc.send_signal(signal.SIGTERM)
        assert server.finish()[0] == 0


def test_the_default_database_follows_the_environment_given_to_main(tmp_path):
    assert main(["init-db"], {"XDG_DATA_HOME": str(tmp_path / "given")}) == 0
    assert (tmp_path / "given" / "chatd" / "chatd.db").exists()


def test_a_db_that_is_neither_a_url_nor_a_path_is_a_usage_error(env, capsys):
    assert main(["init-db", "--db", "postgresql://chatd@host:port/x"], env) == 2
    err = capsys.readouterr().err
    assert err.startswith("chatd: --db") and err.count("\n") == 1


def serve_failure(*args: str, env: dict[str, str], prefix: Sequence[str] = ()) -> tuple[int, str]:
    """`chatd serve` that is expected to stop at once: its status and stderr."""
    done = subprocess.run(
        [*prefix, CHATD, "serve", *args], env=env, capture_output=True, timeout=30, check=False
    )
    return done.returncode, done.stderr.decode()


def test_a_taken_port_is_one_plain_line_before_the_database_is_touched(env, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        db = tmp_path / "fresh.db"
        status, err = serve_failure("--port", str(port), "--db", str(db), env=env)
    assert (status, err) == (1, f"chatd: port {port} is in use on 127.0.0.1\n")
    assert not db.exists()


def unprivileged_port_start() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())


@pytest.mark.skipif(unprivileged_port_start() == 0, reason="every port is unprivileged here")
def test_a_privileged_port_says_permission_denied(env, tmp_path):
    # why: root may bind any port; without CAP_NET_BIND_SERVICE it may not, as a user.
    prefix = ["setpriv", "--bounding-set", "-net_bind_service"] if os.geteuid() == 0 else []
    port = unprivileged_port_start() - 1
    status, err = serve_failure(
        "--port", str(port), "--db", str(tmp_path / "x.db"), env=env, prefix=prefix
    )
    assert status == 1
    assert err == (
        f"chatd: permission denied to listen on port {port} of 127.0.0.1: ports below "
        f"{port + 1} need root or CAP_NET_BIND_SERVICE\n"
    )


def test_an_unreadable_key_is_named(env, tmp_path, tls_files):
    # why: root reads any file; without CAP_DAC_OVERRIDE it obeys the mode, as a user does.
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    key = tmp_path / "key.pem"
    key.chmod(0)
    status, err = serve_failure(
        "--port",
        "0",
        "--db",
        str(tmp_path / "x.db"),
        "--tls-cert",
        tls_files[0],
        "--tls-key",
        str(key),
        env=env,
        prefix=prefix if os.geteuid() == 0 else [],
    )
    assert (status, err) == (2, f"chatd: --tls-key {key}: cannot be read: Permission denied\n")


def migration_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "schema" in line or "alembic" in line]


def test_migrations_are_logged_only_when_they_run(env, tmp_path):
    db = tmp_path / "new.db"
    first = ServeProcess("--db", str(db), env=env)
    first.proc.send_signal(signal.SIGTERM)
    status, log = first.finish()
    assert status == 0
    scripts = ScriptDirectory.from_config(alembic_config(f"sqlite:///{db}"))
    steps = reversed(list(scripts.walk_revisions()))
    assert [line.split(": ", 1)[1] for line in migration_lines(log)] == [
        f"upgrading the database schema: {step.down_revision or 'none'} -> {step.revision} "
        f"({step.doc.splitlines()[0]})"
        for step in steps
    ]
    assert "Context impl" not in log and "Will assume" not in log
    again = ServeProcess("--db", str(db), env=env)
    again.proc.send_signal(signal.SIGTERM)
    status, log = again.finish()
    assert status == 0 and migration_lines(log) == []
    assert log.count("\n") == 3  # listening on, received SIGTERM, stopped


@pytest.fixture
def other_cert(certificate_authority, tmp_path):
    cert = certificate_authority.issue_cert("localhost")
    path = tmp_path / "other-cert.pem"
    cert.cert_chain_pems[0].write_to_path(str(path))
    return str(path)


@pytest.mark.parametrize(
    ("cert", "key", "says"),
    [
        ("key", "key", "--tls-cert {key}: it holds a private key, not a certificate"),
        ("other", "other", "--tls-key {other}: it holds no PEM private key"),
        ("missing", "key", "--tls-cert {missing}: no such file"),
        ("cert", "directory", "--tls-key {directory}: it is a directory"),
        ("garbage", "key", "--tls-cert {garbage}: it holds no PEM certificate"),
        ("other", "key", "--tls-key {key} does not match the certificate in --tls-cert {other}"),
    ],
)
def test_a_bad_certificate_or_key_is_named_in_one_line(
    env, tmp_path, tls_files, other_cert, capsys, cert, key, says
):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
    files = {
        "cert": tls_files[0],
        "key": tls_files[1],
        "missing": str(tmp_path / "missing.pem"),
        "directory": str(tmp_path),
        "garbage": str(garbage),
        "other": other_cert,
    }
    db = tmp_path / "untouched.db"
    argv = ["serve", "--port", "0", "--db", str(db), "--tls-cert", files[cert]]
    assert main([*argv, "--tls-key", files[key]], env) == 2
    err = capsys.readouterr().err
    assert err == f"chatd: {says.format(**files)}\n"
    assert not db.exists()
