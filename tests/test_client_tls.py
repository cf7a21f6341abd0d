"""`chat --tls`: verifies the server, refuses a certificate it cannot trust."""

from __future__ import annotations

from conftest import CLIENT_SUITE
from test_client_cli import console, err, out, run

pytestmark = CLIENT_SUITE


def test_register_and_script_over_tls(start_server, tls_files, certificate_authority, tmp_path):
    cert_file, key_file = tls_files
    server = start_server(tls_cert=cert_file, tls_key=key_file)
    ca_file = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(ca_file))
    con = console()
    assert run(server, "register", "--tls", "--ca", str(ca_file), "--user", "alice", con=con) == 0
    assert "registered alice" in out(con)
    con = console("/join secure\nhello over tls\n/quit\n")
    assert run(server, "login", "--ca", str(ca_file), "--user", "alice", con=con) == 0
    assert "hello over tls" in out(con)


def test_untrusted_certificate_is_refused_with_a_clear_message(start_server, tls_files):
    cert_file, key_file = tls_files
    server = start_server(tls_cert=cert_file, tls_key=key_file)
    con = console()
    assert run(server, "register", "--tls", "--user", "alice", con=con) == 1
    assert "certificate is not trusted" in err(con)
    assert "--ca" in err(con)


def test_a_missing_ca_file_is_a_usage_error(server, tmp_path):
    con = console()
    missing = str(tmp_path / "nope.pem")
    assert run(server, "login", "--ca", missing, "--user", "alice", con=con) == 2
    assert "--ca" in err(con)
