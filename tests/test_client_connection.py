"""client/connection.py: what goes wrong on the network, said in plain words."""

from __future__ import annotations

import errno
import socket
import struct
import threading

import pytest
from client_helpers import SOCKET_TIMEOUT

from chatd.protocol import encode
from client.connection import Connection, ConnectionLost, network_error_text, show_address


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "x"), "connection refused (is chatd running?)"),
        (TimeoutError("timed out"), "no answer in time (timed out)"),
        (OSError(errno.EHOSTUNREACH, "x"), "no route to the host"),
        (OSError(errno.ENETUNREACH, "x"), "the network is unreachable"),
        (socket.gaierror(socket.EAI_NONAME, "x"), "unknown host"),
        (socket.gaierror(socket.EAI_AGAIN, "x"), "the host name could not be looked up"),
        (ConnectionResetError(errno.ECONNRESET, "x"), "the connection was reset"),
        (OSError(errno.EACCES, "Permission denied"), "permission denied"),
    ],
)
def test_network_errors_in_plain_words(error: OSError, text: str) -> None:
    assert network_error_text(error) == text
    assert "errno" not in network_error_text(error).lower()


def test_an_address_is_shown_as_it_is_typed() -> None:
    assert show_address(("127.0.0.1", 7700)) == "127.0.0.1:7700"
    assert show_address(("chat.example.org", 7700)) == "chat.example.org:7700"
    assert show_address(("::1", 7700)) == "[::1]:7700"


def test_a_reset_connection_is_reported_in_plain_words() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(SOCKET_TIMEOUT)
        wire = Connection.open(listener.getsockname()[:2])
        try:
            peer, _ = listener.accept()
            peer.sendall(encode({"event": "welcome", "protocol": 1}))
            assert wire.welcome()["event"] == "welcome"
            # SO_LINGER 0: close() sends a reset instead of a FIN
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()
            with pytest.raises(ConnectionLost) as lost:
                wire.read(SOCKET_TIMEOUT)
            assert str(lost.value) == "the connection was reset"
        finally:
            wire.close()


def test_a_slow_plain_server_is_probed_harmlessly_and_still_greets() -> None:
    """Blank lines are all a silent server gets; a chatd that greets late is still welcome."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(SOCKET_TIMEOUT)
        received: list[bytes] = []

        def greet_late() -> None:
            peer, _ = listener.accept()
            with peer:
                peer.settimeout(SOCKET_TIMEOUT)
                received.append(peer.recv(1024))  # the probe, sent after a second of silence
                peer.sendall(encode({"event": "welcome", "protocol": 1}))
                peer.recv(1024)  # until the client closes

        server = threading.Thread(target=greet_late, daemon=True)
        server.start()
        wire = Connection.open(listener.getsockname()[:2])
        try:
            assert wire.welcome()["event"] == "welcome"
        finally:
            wire.close()
        server.join(SOCKET_TIMEOUT)
        assert received and received[0].strip(b"\n") == b""
