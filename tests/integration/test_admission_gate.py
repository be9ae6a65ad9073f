"""The one admission gate, seen through every listener with real clients: SSH (paramiko; a raw
socket for what a refused client sees before the banner), FTP (ftplib) and HTTPS
(http.client over TLS). A banned network is refused by each with the same `connection.refused`
record; `max_per_ip` and `max_connections` refuse the extra connection on each, recorded with
its cause; and a closed connection gives its place back, so a new one is admitted.

What other files already check is not repeated here: the first bytes of every listener under a
ban (test_bans.py), SSH's and FTP's `max_connections` (test_ssh_service.py, test_ftp.py),
`max_per_ip` on SSH, FTP and HTTPS and a freed SSH slot (test_access.py,
test_security_connections.py). New here: HTTPS's `max_connections`, freed places on FTP and
HTTPS, and the records of all three compared field by field."""

import base64
import ftplib
import http.client
import socket
import ssl
import time

import paramiko
import pytest

from raw_sockets import first_bytes

PASSWORD = "correct horse battery staple"
FTP_SERVICE = "ftp-plain"


def set_option(server, old, new):
    config = server.root / "wharf.toml"
    text = config.read_text()
    assert text.count(old) == 1, old
    config.write_text(text.replace(old, new))


def tight_limits(server):
    """max_connections = 2 and max_per_ip = 1 on the SSH, plain FTP and HTTPS services."""
    set_option(server, "max_connections = 256\nmax_per_ip = 20               #",
               "max_connections = 2\nmax_per_ip = 1               #")
    set_option(server, "max_connections = 256\nmax_per_ip = 20\nmax_upload_size",
               "max_connections = 2\nmax_per_ip = 1\nmax_upload_size")
    server.add_ftp_service(extra="max_connections = 2\nmax_per_ip = 1")


def source_of(host):
    return (host, 0)


# -- one real client per protocol: `open_*` returns a logged-in client holding its connection,
# or raises when the connection is refused --------------------------------------------------

def open_ssh(server, host, source):
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.settimeout(10)
    sock.bind(source_of(source))
    sock.connect((host, server.port))
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(host, port=server.port, username="alice", password=PASSWORD, sock=sock,
                       allow_agent=False, look_for_keys=False, timeout=10, banner_timeout=10)
    except Exception:
        client.close()
        sock.close()
        raise
    return client


def open_ftp(server, host, source):
    client = ftplib.FTP(source_address=source_of(source))
    client.connect(host, server.ftp_port, timeout=10)
    client.login("alice", PASSWORD)
    return client


def open_https(server, host, source):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(host, server.https_port, timeout=10, context=context,
                                       source_address=source_of(source))
    auth = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    try:
        conn.request("GET", "/api/v1/files", headers={"Authorization": f"Basic {auth}"})
        response = conn.getresponse()
        response.read()
    except Exception:
        conn.close()
        raise
    assert response.status == 200, response.status
    return conn  # kept alive: the connection stays open and holds its place


def refused_ssh(server, host, source, why):
    # Closed before the banner: the client gets no byte, and paramiko no SSH server.
    assert first_bytes(host, server.port, source) == b""
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):
        open_ssh(server, host, source)


def refused_ftp(server, host, source, why):
    # FTP says why (421) before closing.
    with pytest.raises(ftplib.error_temp, match=f"^421 {why}"):
        open_ftp(server, host, source)


def refused_https(server, host, source, why):
    # Closed before the TLS handshake.
    assert first_bytes(host, server.https_port, source) == b""
    with pytest.raises((ssl.SSLError, OSError, http.client.HTTPException)):
        open_https(server, host, source)


def close(client):
    client.close()


LISTENERS = {
    # service name: (open, refused, protocol)
    "ssh": (open_ssh, refused_ssh, "ssh"),
    FTP_SERVICE: (open_ftp, refused_ftp, "ftp"),
    "https": (open_https, refused_https, "https"),
}


def refusals(server, service, cause):
    return [e for e in server.events() if e["name"] == "connection.refused"
            and e["service"] == service and e["attrs"]["cause"] == cause]


def wait_refusal(server, service, cause, host):
    deadline = time.time() + 10
    while time.time() < deadline:
        found = [e for e in refusals(server, service, cause)
                 if e["remote"].rsplit(":", 1)[0].strip("[]") == host]
        if found:
            return found[-1]
        time.sleep(0.2)
    raise AssertionError(f"no connection.refused ({cause}) on {service} from {host}")


def admitted_again(open_client, server, host, source):
    """A new connection from `source` once the server has seen the closed one end."""
    deadline = time.time() + 10
    while True:
        try:
            return open_client(server, host, source)
        except (paramiko.SSHException, EOFError, OSError, ftplib.Error, ssl.SSLError,
                http.client.HTTPException):
            assert time.time() < deadline, "the closed connection's place was not given back"
            time.sleep(0.2)


def ready(server):
    server.add_account("alice", password=PASSWORD)
    server.start()
    # The start-up probe (an SSH connection) holds a place until the server sees it end.
    server.wait_event("connection.closed")


def test_limits_refuse_the_extra_connection_and_a_closed_one_frees_its_place(server):
    tight_limits(server)
    ready(server)
    for service, (open_client, refused, protocol) in LISTENERS.items():
        # One connection from 127.0.0.1: the network's one place.
        first = admitted_again(open_client, server, "127.0.0.1", "127.0.0.1")
        refused(server, "127.0.0.1", "127.0.0.1", "too many connections from your address")
        per_ip = wait_refusal(server, service, "max-per-ip", "127.0.0.1")
        assert per_ip["protocol"] == protocol
        assert per_ip["message"] == "too many connections from this address"
        assert per_ip["attrs"]["network"] == "127.0.0.1/32"
        # ::1 is another network: admitted, and the service is now full.
        other = open_client(server, "::1", "::1")
        refused(server, "127.0.0.1", "127.0.0.2", "too many connections; try again later")
        full = wait_refusal(server, service, "max-connections", "127.0.0.2")
        assert full["protocol"] == protocol
        assert full["message"] == "too many connections"
        assert full["attrs"]["network"] == "127.0.0.2/32"
        assert full["session"] != per_ip["session"]
        # A closed connection gives both its places back: 127.0.0.1 is admitted again.
        close(first)
        again = admitted_again(open_client, server, "127.0.0.1", "127.0.0.1")
        close(again)
        close(other)
    # Admitted connections are recorded under the ids the gate gave them, never a refused one's.
    opened = {e["session"] for e in server.events() if e["name"] == "connection.opened"}
    refused_ids = {e["session"] for e in server.events() if e["name"] == "connection.refused"}
    assert opened and refused_ids and not opened & refused_ids


def test_a_banned_network_is_refused_with_the_same_record_on_every_listener(server):
    server.add_ftp_service()
    with open(server.root / "wharf.toml", "a") as f:
        f.write("\n[ban]\nthreshold = 2\nban_time = 600\n")
    ready(server)
    # Two wrong FTP passwords from 127.0.0.1 reach the threshold.
    for _ in range(2):
        c = ftplib.FTP()
        c.connect("127.0.0.1", server.ftp_port, timeout=10)
        with pytest.raises(ftplib.error_perm, match="530"):
            c.login("alice", "wrong")
        c.close()
    server.wait_event("ban.added")
    records = {}
    for service, (_, refused, protocol) in LISTENERS.items():
        refused(server, "127.0.0.1", "127.0.0.1", "address banned after too many failures")
        records[service] = wait_refusal(server, service, "banned", "127.0.0.1")
        assert records[service]["protocol"] == protocol
    first = records["ssh"]
    assert first["message"].startswith("address banned until"), first
    for record in records.values():
        assert record["outcome"] == first["outcome"] == "failure"
        assert record["message"] == first["message"]
        assert record["attrs"] == {"cause": "banned", "network": "127.0.0.1/32"}
        assert set(record) == set(first)
    # Another network is still served by every listener.
    for open_client, _, _ in LISTENERS.values():
        close(open_client(server, "::1", "::1"))
