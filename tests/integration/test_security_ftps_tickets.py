"""A stranger on an FTPS passive port gets nothing, now or later: the handshake of a data
connection that is then refused must not hand it a TLS ticket the server would accept on the
account's next data connection (data connections issue no tickets at all)."""

import ftplib
import re
import socket
import ssl
import threading
import time

import pytest

from conftest import ReusingFTP_TLS, tls_client_context

PASSWORD = "tickets-Pass-5150"
SECRET = b"alice-secret\n" * 1000


def passive_port(client):
    numbers = re.search(r"\((.*)\)", client.sendcmd("PASV")).group(1).split(",")
    return int(numbers[4]) * 256 + int(numbers[5])


def steal(port, context, session, got):
    """Connects to the passive port first, as a thief at the client's address would, and
    reads whatever the server sends; keeps the TLS session it ends with."""
    try:
        tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=15),
                                  server_hostname="127.0.0.1", session=session)
        data = b""
        while True:
            try:
                chunk = tls.recv(65536)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
        got["bytes"] = data
        got["session"] = tls.session
    except (OSError, ssl.SSLError) as e:
        got["error"] = repr(e)


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_a_refused_data_handshake_yields_no_ticket_for_the_next_transfer(server, version):
    home = server.add_account("alice", password=PASSWORD)
    server.start()
    home.mkdir(parents=True, exist_ok=True)
    (home / "secret.txt").write_bytes(SECRET)
    alice = ReusingFTP_TLS(context=tls_client_context())
    alice.connect("127.0.0.1", server.ftps_port, timeout=30)
    alice.login("alice", PASSWORD)
    alice.prot_p()
    thief_context = tls_client_context()
    if version == "1.2":
        thief_context.maximum_version = ssl.TLSVersion.TLSv1_2
    else:
        thief_context.minimum_version = ssl.TLSVersion.TLSv1_3
    session = None
    for attempt in range(3):
        got = {}
        thief = threading.Thread(target=steal, args=(passive_port(alice), thief_context, session, got))
        thief.start()
        time.sleep(0.5)
        alice.putcmd("RETR secret.txt")
        try:
            first, second = alice.getresp(), alice.getresp()
        except ftplib.all_errors as e:
            first, second = str(e), ""
        thief.join(20)
        assert SECRET[:100] not in got.get("bytes", b""), f"attempt {attempt}: the thief got the file"
        assert "522" in f"{first} {second}", (attempt, first, second)
        if got.get("session") is not None and got["session"].has_ticket:
            session = got["session"]
    # Alice's own data connections still work.
    received = []
    alice.retrbinary("RETR secret.txt", received.append)
    assert b"".join(received) == SECRET
    alice.quit()
    refused = [e for e in server.events() if e["name"] == "tls.failed"]
    assert len(refused) >= 3, refused

