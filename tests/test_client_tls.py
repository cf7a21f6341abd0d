"""`chat --tls`: verifies the server, and says plainly what is wrong when TLS does not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from conftest import CLIENT_SUITE, PASSWORD
from test_client_cli import console, err, out, run

from chatd.server import Server
from client.cli import main

pytestmark = CLIENT_SUITE


@pytest.fixture
def ca_file(certificate_authority: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "our ca.pem"
    certificate_authority.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_server(start_server, tls_files) -> Server:
    cert_file, key_file = tls_files
    return start_server(tls_cert=cert_file, tls_key=key_file)


def where(server: Server) -> str:
    return "{}:{}".format(*server.address)


def test_register_and_script_over_tls(tls_server, ca_file):
    con = console()
    assert run(tls_server, "register", "--tls", "--ca", ca_file, "--user", "alice", con=con) == 0
    # a hint that works when pasted: the TLS flags again, the path quoted for the shell
    assert f"now: chat login --tls --ca '{ca_file}' --user alice" in out(con)
    con = console("/join secure\nhello over tls\n/quit\n")
    assert run(tls_server, "login", "--ca", ca_file, "--user", "alice", con=con) == 0
    assert "hello over tls" in out(con)


def test_untrusted_certificate_is_refused_with_a_clear_message(tls_server):
    con = console()
    assert run(tls_server, "register", "--tls", "--user", "alice", con=con) == 1
    assert "certificate is not trusted" in err(con)
    assert "for a private CA use --ca FILE" in err(con)


def test_a_missing_ca_file_is_a_usage_error(server, tmp_path):
    con = console()
    missing = str(tmp_path / "nope.pem")
    assert run(server, "login", "--ca", missing, "--user", "alice", con=con) == 2
    assert err(con) == f"chat: cannot use --ca {missing}: no such file or directory\n"


def test_a_plain_client_is_told_the_server_speaks_tls(tls_server):
    con = console()
    assert run(tls_server, "register", "--user", "alice", con=con) == 1
    assert err(con) == (
        f"chat: cannot talk to {where(tls_server)}: this looks like a TLS server: add --tls\n"
    )


@pytest.mark.parametrize(
    ("argv", "env", "advice"),
    [
        (["--tls"], {}, "leave out --tls"),
        (["--ca", "CA"], {}, "leave out --ca"),
        ([], {"CHAT_TLS": "yes"}, "unset CHAT_TLS"),
    ],
)
def test_tls_against_a_plain_server_says_it_does_not_speak_tls(
    server, ca_file, argv: list[str], env: dict[str, str], advice: str
):
    con = console()
    argv = [ca_file if arg == "CA" else arg for arg in argv]
    env = {"CHAT_SERVER": where(server), "CHAT_PASSWORD": PASSWORD, **env}
    assert main(["register", "--user", "alice", *argv], env, con) == 1
    assert err(con) == (
        f"chat: cannot talk to {where(server)}: the server does not speak TLS ({advice})\n"
    )


def test_a_certificate_for_another_name_names_both(
    start_server, certificate_authority: trustme.CA, ca_file, tmp_path: Path
):
    cert = certificate_authority.issue_cert("chat.example.org")
    cert_file, key_file = tmp_path / "other.pem", tmp_path / "other.key"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    server = start_server(tls_cert=str(cert_file), tls_key=str(key_file))
    con = console()
    assert run(server, "register", "--ca", ca_file, "--user", "alice", con=con) == 1
    port = server.address[1]
    assert err(con) == (
        "chat: the server's TLS certificate is for chat.example.org, not 127.0.0.1: "
        f"connect by that name (--server chat.example.org:{port})\n"
    )


@pytest.mark.parametrize("value", ["yes", "TRUE", "On", "1"])
def test_chat_tls_accepts_the_usual_words_for_yes(tls_server, ca_file, monkeypatch, value: str):
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # the "system" CAs trust our test CA
    con = console()
    env = {"CHAT_SERVER": where(tls_server), "CHAT_PASSWORD": PASSWORD, "CHAT_TLS": value}
    assert main(["register", "--user", "alice"], env, con) == 0, err(con)


@pytest.mark.parametrize("value", ["no", "FALSE", "off", "0", ""])
def test_chat_tls_accepts_the_usual_words_for_no(server, value: str):
    con = console()
    env = {"CHAT_SERVER": where(server), "CHAT_PASSWORD": PASSWORD, "CHAT_TLS": value}
    assert main(["register", "--user", "alice"], env, con) == 0, err(con)


def test_chat_tls_refuses_anything_else(server):
    con = console()
    env = {"CHAT_SERVER": where(server), "CHAT_PASSWORD": PASSWORD, "CHAT_TLS": "maybe"}
    assert main(["register", "--user", "alice"], env, con) == 2
    assert "CHAT_TLS" in err(con) and "maybe" in err(con)
